"""The model card of a training run: one self-contained HTML file, also logged to the run."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from evaluation.model_card import build_model_card
from training import registry


@pytest.fixture(scope="module")
def member_card(pipeline_home):
    registry.use_store(pipeline_home)
    run_id = registry.champion_version("member").run_id
    path = build_model_card(pipeline_home, run_id, n_boot=20)
    return run_id, path


def test_card_is_written_where_promised_and_self_contained(pipeline_home, member_card):
    run_id, path = member_card
    assert path == pipeline_home.home / "reports" / run_id / "model_card.html"
    assert path.exists()
    text = path.read_text(encoding="utf-8")
    assert text.count('<img src="data:image/png;base64,') >= 4
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    assert run_id in text


def test_card_shows_the_runs_auc_and_every_feature(pipeline_home, member_card):
    run_id, path = member_card
    text = path.read_text(encoding="utf-8")
    registry.use_store(pipeline_home)
    client = MlflowClient()
    # Training logged the pooled backtest AUC on the same applications with the same procedure.
    auc = client.get_run(run_id).data.metrics["backtest_auc"]
    assert f"<td>{auc:.3f} [" in text
    assert "<h2>Backtest by deployment date</h2>" in text and "Calibration slope" in text
    # the gates' verdicts as recorded on the version, and the fairness gaps with their intervals
    assert "<h2>Promotion gates</h2>" in text and "<td>gate.calibration</td>" in text
    assert "<h2>Fairness gaps with intervals</h2>" in text

    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").unwrap_python_model()
    for name in model.features:
        assert f"<td>{name}</td>" in text, name
    assert "Decree 156/2025" in text and "Largest gap" in text


def test_card_is_logged_to_the_run(pipeline_home, member_card):
    run_id, _ = member_card
    registry.use_store(pipeline_home)
    listed = [a.path for a in MlflowClient().list_artifacts(run_id, "model_card")]
    assert "model_card/model_card.html" in listed


def test_unknown_run_is_a_lookup_error(pipeline_home):
    with pytest.raises(LookupError):
        build_model_card(pipeline_home, "0" * 32, n_boot=5)


def test_card_has_lift_and_approval_tables_from_the_out_of_time_data(pipeline_home, member_card):
    """The decile table and the approval table agree with evaluation.metrics on the same model."""
    import re

    from evaluation import metrics
    from evaluation.champion import evaluate_model

    run_id, path = member_card
    text = path.read_text(encoding="utf-8")
    assert "<h2>Lift and capture by decile</h2>" in text
    assert "<h2>Approval rate against default rate</h2>" in text
    registry.use_store(pipeline_home)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    result = evaluate_model(pipeline_home, "member", model, "x", n_boot=20, with_scorecard=False)
    top = metrics.lift_table(result.y, result.pd)["capture"].iloc[0]
    assert f"hold {top:.1%} of the defaults" in text
    half = metrics.approval_curve(result.y, result.pd, [0.5])["bad_rate"].iloc[0]
    assert re.search(rf"<td>50%</td><td>\d+</td><td>[\d.]+%</td><td>{half:.2%} \[", text)

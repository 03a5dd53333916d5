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
    # Training logged the out-of-time AUC on the same applications with the same model.
    auc = client.get_run(run_id).data.metrics["oot_auc"]
    assert f"<td>{auc:.3f} [" in text

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

"""Training: the registered champion loads with plain MLflow, predicts, explains exactly, and
respects the direction of risk."""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.catalogue import FEATURES_BY_NAME, feature_names
from training import registry, scaling
from training.dataset import build_training_set, out_of_time_split


@pytest.fixture(scope="module")
def member_rows(pipeline_home):
    rows = build_training_set(pipeline_home.clean, "member")
    return rows[rows["enough_history"]]


@pytest.fixture(scope="module")
def champion(pipeline_home):
    registry.use_store(pipeline_home)
    return mlflow.pyfunc.load_model("models:/coopscore-member@champion")


def test_split_is_out_of_time(member_rows):
    split = out_of_time_split(member_rows)
    assert split.train["as_of"].max() < split.calibration["as_of"].min()
    assert split.calibration["as_of"].max() < split.oot["as_of"].min()
    assert len(split.train) + len(split.calibration) + len(split.oot) == len(member_rows)


def test_champion_loads_with_plain_mlflow_and_predicts(champion, member_rows):
    out = champion.predict(member_rows[feature_names("member")].head(50))
    assert list(out.columns) == ["pd", "score", "grade", "log_odds"]
    assert out["pd"].between(0, 1).all()
    assert np.allclose(out["score"], np.round(scaling.score_from_log_odds(out["log_odds"]), 1))


def test_model_separates_defaults_in_its_backtest_and_logs_it(pipeline_home):
    import json

    registry.use_store(pipeline_home)
    version = registry.champion_version("member")
    client = MlflowClient()
    run = client.get_run(version.run_id)
    m = run.data.metrics
    assert m["backtest_auc_low"] > 0.5  # far from coin-flipping, even on the labels known at each T
    assert m["backtest_auc_low"] <= m["backtest_auc"] <= m["backtest_auc_high"]
    assert m["backtest_auc"] <= m["backtest_true_pd_auc_high"]
    assert {"backtest_calibration_slope_low", "backtest_scorecard_auc"} <= set(m)
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert {"plots/roc.png", "plots/calibration.png", "plots/importance.png"} <= artifacts
    logged = {a.path for a in client.list_artifacts(version.run_id, "backtest")}
    assert {"backtest/predictions.parquet", "backtest/folds.csv", "backtest/dates.json"} <= logged
    path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="backtest/dates.json")
    with open(path) as f:
        dates = json.load(f)
    assert run.data.params["backtest_dates"] == ",".join(dates["dates"])
    # the model served is refit on every label known by the data end, not only on the backtest's
    assert int(run.data.params["train_rows"]) > int(run.data.params["backtest_rows"])
    assert run.data.params["calibration_method"] in {"holdout", "out-of-fold", "none"}


def test_served_model_learns_from_every_matured_label(pipeline_home, member_rows):
    from training.dataset import data_end, matured

    registry.use_store(pipeline_home)
    params = MlflowClient().get_run(registry.champion_version("member").run_id).data.params
    known = matured(member_rows, data_end(pipeline_home.clean))
    assert int(params["train_rows"]) == len(known)
    assert params["train_to"] == str(known["as_of"].max().date())


def test_explanation_adds_up_exactly_to_the_model_output(champion, member_rows):
    model = champion.unwrap_python_model()
    rows = member_rows.head(200)
    explanation = model.explain(rows)
    direct = model.log_odds(rows)
    assert np.allclose(explanation.base_value + explanation.contributions.sum(axis=1), direct,
                       rtol=0, atol=1e-9)


@pytest.mark.parametrize("feature", ["worst_days_past_due", "cancelled_invoice_rate_365d",
                                     "repayment_on_time_rate", "einvoice_share_365d"])
def test_monotone_in_the_direction_of_risk(champion, member_rows, feature):
    model = champion.unwrap_python_model()
    rows = member_rows.head(100).copy()
    risk = FEATURES_BY_NAME[feature].risk
    grid = np.quantile(member_rows[feature].dropna(), [0.0, 0.25, 0.5, 0.75, 1.0])
    previous = None
    for value in grid:
        rows[feature] = value
        current = model.log_odds(rows)
        if previous is not None:
            assert np.all(risk * (current - previous) >= -1e-12)
        previous = current


def test_training_goes_through_the_promotion_gates(pipeline_home, tmp_path):
    """A version whose gates fail is refused (alias challenger, reasons as tags); the champion stays."""
    import dataclasses
    import shutil

    from governance.pipeline import train_and_promote
    from governance.promotion import CHALLENGER, Gates
    from settings import Paths

    other = Paths(tmp_path / "gated-home")
    shutil.copytree(pipeline_home.clean, other.clean)
    lenient = Gates(max_abs_calibration_in_the_large=1, max_ece=1, max_feature_psi=100,
                    max_approval_rate_gap=1, auc_tolerance=1, max_equal_opportunity_gap=1,
                    max_gap_widening=1, require_pinned_calibration=False)
    first = train_and_promote(other, "member", gates=lenient, n_boot=50)
    assert first.promoted and first.decision.champion_before is None
    strict = dataclasses.replace(lenient, max_feature_psi=0.0)
    second = train_and_promote(other, "member", gates=strict, n_boot=50)
    assert not second.promoted and second.decision.champion_before == first.version
    assert [g.name for g in second.decision.failed()] == ["stability"]
    registry.use_store(other)
    client = MlflowClient()
    assert str(registry.champion_version("member").version) == first.version
    assert str(client.get_model_version_by_alias("coopscore-member", CHALLENGER).version) == second.version
    tags = client.get_model_version("coopscore-member", second.version).tags
    assert tags["gate.stability"].startswith("FAIL") and tags["gate.auc"].startswith("pass")
    assert tags["promotion"] == "refused by the gates"


def test_each_home_keeps_its_own_mlflow_store(pipeline_home, tmp_path):
    """Training in a second COOPSCORE_HOME in the same process must not write to the first's store
    (MLflow exports MLFLOW_TRACKING_URI once a store is chosen; we must not follow it)."""
    import shutil

    from settings import Paths
    from training.train import train_subject

    other = Paths(tmp_path / "other-home")
    shutil.copytree(pipeline_home.clean, other.clean)
    registry.use_store(pipeline_home)
    before = [v.version for v in MlflowClient().search_model_versions("name='coopscore-member'")]
    result = train_subject(other, "member")
    assert result.version == "1"
    registry.use_store(pipeline_home)
    after = [v.version for v in MlflowClient().search_model_versions("name='coopscore-member'")]
    assert sorted(after) == sorted(before)


@pytest.mark.parametrize("subject", ["member", "cooperative"])
def test_no_protected_attribute_is_an_input_of_the_registered_model(pipeline_home, subject):
    from data_contracts.contracts import PROTECTED_ATTRIBUTES

    registry.use_store(pipeline_home)
    model = mlflow.pyfunc.load_model(registry.champion_uri(subject))
    inputs = set(model.metadata.get_input_schema().input_names())
    assert inputs == set(model.unwrap_python_model().features)
    assert not inputs & PROTECTED_ATTRIBUTES
    assert not inputs & {"province", "cooperative_id", "member_id"}  # no proxies by id or place

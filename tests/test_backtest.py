"""As-deployed backtests and calibration with enough evidence, on the shared small data set."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from evaluation import backtest
from evaluation.champion import calibration_verdict
from evaluation.metrics import Estimate
from features.catalogue import feature_names
from training.dataset import NotEnoughData, build_training_set, data_end, label_window_end
from training.fit import fit, out_of_fold_margins


@pytest.fixture(scope="module")
def member_rows(pipeline_home):
    rows = build_training_set(pipeline_home.clean, "member")
    return rows[rows["enough_history"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def end(pipeline_home):
    return data_end(pipeline_home.clean)


@pytest.fixture(scope="module")
def result(pipeline_home, member_rows, end):
    truth = pd.read_parquet(pipeline_home.clean / "true_pd.parquet")
    return backtest.run_backtest(member_rows, feature_names("member"), end, truth, n_boot=30)


def test_no_training_label_is_from_after_its_deployment_date(member_rows, end):
    folds = backtest.plan(member_rows, end)
    assert folds, "the small data set supports at least one deployment date"
    for fold in folds:
        train, test = member_rows.iloc[fold.train], member_rows.iloc[fold.test]
        # every label the model at T learns from (calibration rows included: fit sees only these)
        assert (label_window_end(train["as_of"]) <= fold.date).all(), fold.date
        assert not set(train["application_id"]) & set(test["application_id"]), fold.date
        assert test["as_of"].between(fold.date, fold.date + pd.DateOffset(months=6),
                                     inclusive="left").all()
        assert int(train["label"].sum()) >= backtest.MIN_TRAIN_DEFAULTS
        assert (label_window_end(test["as_of"]) <= end).all()  # outcomes known by the data end
    dates = [f.date for f in folds]
    assert dates == sorted(dates) and all(d.month in (1, 4, 7, 10) and d.day == 1 for d in dates)


def test_pooled_rows_are_scored_by_the_model_deployed_when_they_arrived(result, member_rows):
    frame = result.frame
    assert frame["application_id"].is_unique
    assert list(frame.columns) == ["application_id", "entity_id", "as_of", "deployed", "label", "pd",
                                   "scorecard_pd", "ceiling_pd", "true_pd"]
    dates = pd.Series(result.dates)
    latest = frame["as_of"].map(lambda d: dates[dates <= d].max())
    assert (frame["deployed"] == latest).all()
    assert frame.equals(frame.sort_values(["as_of", "application_id"]).reset_index(drop=True))
    assert frame["pd"].between(0, 1).all() and frame["true_pd"].notna().all()


def test_every_date_and_the_pooled_set_have_metrics_with_intervals(result):
    assert set(result.pooled) == {"model", "scorecard", "ceiling", "true_pd"}
    for source, measured in result.pooled.items():
        assert set(measured) >= {"auc", "ks", "brier", "calibration_in_the_large",
                                 "calibration_slope", "ece"}, source
        for name, est in measured.items():
            assert est.low <= est.high, (source, name)
            if name != "ece":  # binning noise biases a resampled ECE upward: its percentile
                # interval may lie above the point value, so only the ordering is checked for it
                assert est.low <= est.value <= est.high, (source, name)
    assert set(zip(result.folds["date"], result.folds["source"])) == {
        (d, s) for d in result.dates for s in backtest.SOURCES}
    assert (result.folds["n_test"] > 0).all()
    # the model learns something real even from the few labels known at each date
    assert result.pooled["model"]["auc"].low > 0.5


def test_a_data_set_without_enough_matured_labels_says_so(member_rows, end):
    early = member_rows[member_rows["as_of"] < member_rows["as_of"].min() + pd.DateOffset(months=3)]
    with pytest.raises(NotEnoughData, match="matured defaults"):
        backtest.plan(early, end)
    with pytest.raises(NotEnoughData, match="label window closed"):
        backtest.plan(member_rows, member_rows["as_of"].min())


def test_calibration_method_follows_the_defaults_available(member_rows):
    features = feature_names("member")
    defaults = int(member_rows["label"].sum())
    held = member_rows[member_rows["as_of"].dt.to_period("M")
                       >= member_rows["as_of"].dt.to_period("M").max() - 2]
    few = fit(member_rows, features, min_calibration_defaults=defaults + 1)
    assert few.calibration["method"] == "none" and (few.slope, few.intercept) == (1.0, 0.0)
    oof = fit(member_rows, features, min_calibration_defaults=int(held["label"].sum()) + 1)
    assert oof.calibration["method"] == "out-of-fold"
    assert oof.calibration["defaults"] >= int(held["label"].sum()) + 1 and oof.slope > 0
    holdout = fit(member_rows, features, min_calibration_defaults=max(1, int(held["label"].sum())))
    assert holdout.calibration == {**holdout.calibration, "method": "holdout",
                                   "rows": len(held), "defaults": int(held["label"].sum())}
    with pytest.raises(ValueError, match="min_calibration_defaults"):
        fit(member_rows, features, min_calibration_defaults=0)


def test_out_of_fold_margins_score_each_block_from_its_past_only(member_rows):
    rows = member_rows.sort_values("as_of", kind="stable")
    oof = out_of_fold_margins(rows, feature_names("member"), folds=3)
    first_block = np.linspace(0, len(rows), 5).astype(int)[1]
    assert len(oof) == len(rows) - first_block  # the first block has no past and is not scored
    assert oof["label"].tolist() == rows["label"].iloc[first_block:].tolist()


def test_calibration_verdict_needs_a_slope_pinned_away_from_zero():
    assert calibration_verdict(Estimate(1.0, 0.7, 1.3))[0]
    pinned, reason = calibration_verdict(Estimate(1.1, -0.9, 3.1))
    assert not pinned and "includes 0" in reason
    pinned, reason = calibration_verdict(Estimate(1.1, 0.2, 2.5))
    assert not pinned and "wider than" in reason


def test_evaluate_json_prints_one_parsable_object(pipeline_home):
    env = {**os.environ, "COOPSCORE_HOME": str(pipeline_home.home)}
    env.pop("COOPSCORE_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "coopscore.cli", "evaluate", "--json",
                           "--bootstrap", "50"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)  # stdout is the object and nothing else
    for key in ("auc", "auc_ci", "true_pd_auc", "ceiling_auc", "scorecard_auc", "calibration_slope",
                "calibration_slope_ci", "backtest_dates", "n_test", "n_defaults", "gates"):
        assert key in out, key
    assert out["auc_ci"][0] <= out["auc"] <= out["auc_ci"][1]
    assert out["n_test"] > out["n_defaults"] > 0 and out["backtest_dates"]
    assert isinstance(out["calibration_pinned"], bool)
    assert 0.5 < out["ceiling_auc"] < 1 and out["ceiling_auc_ci"][0] <= out["ceiling_auc"]  # synthetic data
    bad = subprocess.run([sys.executable, "-m", "coopscore.cli", "evaluate", "--json", "--subject",
                          "nobody"], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and bad.stdout == "" and "nobody" in bad.stderr


def test_the_feature_ceiling_is_fitted_on_each_ts_training_rows_only(result, member_rows, end, pipeline_home):
    """The ceiling (true log-odds regressed on the features) follows the backtest's own rules: at T
    it sees only the rows the model saw; its pooled AUC and the driver table come with the result."""
    from coopscore.synthetic import DRIVERS
    from evaluation.ceiling import fit_ceiling

    truth = pd.read_parquet(pipeline_home.clean / "true_pd.parquet")
    first = backtest.plan(member_rows, end)[0]
    train = member_rows.iloc[first.train].merge(truth[["application_id", "true_pd"]], on="application_id")
    test = member_rows.iloc[first.test]
    expected = fit_ceiling(train, feature_names("member")).pd(test)
    got = result.frame.set_index("application_id")["ceiling_pd"]
    pooled_first = [a for a in test["application_id"] if a in got.index and
                    result.frame.set_index("application_id").loc[a, "deployed"] == first.date]
    assert pooled_first, "the first T serves some pooled rows"
    by_id = dict(zip(test["application_id"], expected))
    np.testing.assert_allclose(got.loc[pooled_first].to_numpy(), [by_id[a] for a in pooled_first], rtol=1e-12)
    assert "ceiling" in result.pooled and result.pooled["ceiling"]["auc"].low < result.pooled["ceiling"]["auc"].high
    assert list(result.drivers["driver"]) == [*DRIVERS, "all"]
    assert result.drivers["share"].iloc[:-1].sum() > 0.5

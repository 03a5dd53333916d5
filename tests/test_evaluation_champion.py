"""The champion's evaluation (its as-deployed backtest) on the shared small data set."""
from __future__ import annotations

import pytest

from evaluation.champion import FAIRNESS_GROUPS, evaluate_champion
from features.catalogue import feature_names


@pytest.fixture(scope="module")
def result(pipeline_home):
    return evaluate_champion(pipeline_home, "member", n_boot=100)


def test_metrics_have_intervals_around_them(result):
    for name, est in result.model.items():
        assert est.low <= est.value <= est.high, name
    assert 0.5 < result.model["auc"].value < 1


def test_true_pd_is_reported_and_ranks_at_least_about_as_well(result):
    assert result.true_pd is not None
    assert result.true_pd["auc"].high >= result.model["auc"].low


def test_psi_covers_the_score_and_every_feature(result):
    assert set(result.psi["column"]) == {"score", *feature_names("member")}
    assert set(result.psi["band"]) <= {"stable", "watch", "act"}


def test_fairness_is_measured_for_every_group_and_counts_add_up(result):
    assert set(result.fairness) == set(FAIRNESS_GROUPS)
    for column, table in result.fairness.items():
        assert table["count"].sum() == result.oot_rows, column
    assert set(result.fairness["household_head_gender"]["group"]) == {"female", "male"}
    column, metric, value = result.largest_fairness_gap()
    assert column in FAIRNESS_GROUPS and value >= 0


def test_the_transparent_scorecard_is_compared_on_the_same_applications(result):
    assert result.scorecard is not None and set(result.scorecard) == set(result.model)
    card = result.scorecard["auc"]
    assert 0.5 < card.value < 1 and card.low <= card.value <= card.high


def test_frame_has_one_row_per_test_application_in_a_fixed_order(result):
    frame = result.frame
    assert len(frame) == result.oot_rows and frame["application_id"].is_unique
    assert {"application_id", "as_of", "label", "pd", "true_pd", *FAIRNESS_GROUPS} <= set(frame.columns)
    assert frame.equals(frame.sort_values(["as_of", "application_id"]).reset_index(drop=True))
    assert set(frame["label"].unique()) == {0, 1} and frame["true_pd"].notna().all()
    assert result.backtest_dates and set(result.backtest["source"]) == {"model", "scorecard", "ceiling", "true_pd"}


def test_a_challenger_gets_the_same_rows_as_the_champion(pipeline_home, result):
    """Recomputed (no logged backtest for version "x") or read from the run: the same rows."""
    import mlflow

    from evaluation.champion import evaluate_model
    from training import registry

    registry.use_store(pipeline_home)
    model = mlflow.pyfunc.load_model(registry.champion_uri("member"))
    other = evaluate_model(pipeline_home, "member", model, "x", n_boot=20, with_scorecard=False)
    assert other.frame["application_id"].tolist() == result.frame["application_id"].tolist()
    # the same procedure on the same data: the recomputed backtest is the logged one
    assert abs(other.frame["pd"] - result.frame["pd"]).max() < 1e-9


def test_calibration_slope_and_its_verdict_are_reported(result):
    slope = result.calibration_slope
    assert slope.low <= slope.value <= slope.high
    assert isinstance(result.calibration_pinned, bool)
    assert f"{slope.low:.2f}" in result.calibration_reason

"""The champion's out-of-time evaluation on the shared small data set."""
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

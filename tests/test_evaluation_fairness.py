"""Fairness tables on small synthetic frames whose answers are known by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evaluation.fairness import (
    TOO_FEW_NOTE, fairness_report, fairness_table, gaps, largest_gap, region_of,
)

THRESHOLD = 0.2


def _group(name: str, n_approved: int, n_refused: int, bad_approved: int, bad_refused: int,
           pd_approved: float = 0.1, pd_refused: float = 0.5) -> pd.DataFrame:
    """A group with a known number of approved/refused members and bads in each."""
    labels = ([1] * bad_approved + [0] * (n_approved - bad_approved)
              + [1] * bad_refused + [0] * (n_refused - bad_refused))
    pds = [pd_approved] * n_approved + [pd_refused] * n_refused
    return pd.DataFrame({"g": name, "label": labels, "pd": pds})


@pytest.fixture
def a_more_than_b() -> pd.DataFrame:
    # A: 80 of 100 approved, 4 bads among approved, 10 among refused.
    # B: 40 of 100 approved, 4 bads among approved, 30 among refused.
    return pd.concat([_group("A", 80, 20, 4, 10), _group("B", 40, 60, 4, 30)], ignore_index=True)


def test_approval_rates_gap_and_four_fifths_ratio(a_more_than_b):
    table = fairness_table(a_more_than_b, "g", threshold=THRESHOLD).set_index("group")
    assert table.loc["A", "approval_rate"] == pytest.approx(0.8)
    assert table.loc["B", "approval_rate"] == pytest.approx(0.4)
    assert table.loc["A", "bad_rate_among_approved"] == pytest.approx(4 / 80)
    assert table.loc["B", "bad_rate_among_approved"] == pytest.approx(4 / 40)
    assert table.loc["B", "bads"] == 34 and table.loc["B", "count"] == 100
    g = gaps(table.reset_index())
    assert g["approval_rate"] == pytest.approx(0.4)
    assert g["approval_rate_ratio"] == pytest.approx(0.5)  # fails the four-fifths rule
    assert g["bad_rate_among_approved"] == pytest.approx(4 / 40 - 4 / 80)


def test_threshold_is_inclusive():
    frame = pd.DataFrame({"g": ["A"] * 2, "label": [0, 1], "pd": [0.2, 0.21]})
    assert fairness_table(frame, "g", threshold=0.2)["approval_rate"].iloc[0] == pytest.approx(0.5)


def test_small_group_gets_nan_auc_and_note(a_more_than_b):
    small = _group("C", 5, 5, 1, 3)
    table = fairness_table(pd.concat([a_more_than_b, small]), "g", threshold=THRESHOLD).set_index("group")
    assert math.isnan(table.loc["C", "auc"])
    assert table.loc["C", "note"] == TOO_FEW_NOTE
    assert not math.isnan(table.loc["A", "auc"]) and table.loc["A", "note"] == ""


def test_single_class_group_gets_nan_auc():
    frame = _group("A", 50, 50, 0, 0)
    row = fairness_table(frame, "g", threshold=THRESHOLD).iloc[0]
    assert math.isnan(row["auc"]) and row["note"] == TOO_FEW_NOTE


def test_calibration_gap_sign():
    # Over-stated: mean PD 0.5, observed bad rate 0.1 -> +0.4. Under-stated: 0.05 vs 0.3 -> -0.25.
    over = pd.DataFrame({"g": "over", "label": [1] * 10 + [0] * 90, "pd": 0.5})
    under = pd.DataFrame({"g": "under", "label": [1] * 30 + [0] * 70, "pd": 0.05})
    table = fairness_table(pd.concat([over, under]), "g", threshold=THRESHOLD).set_index("group")
    assert table.loc["over", "calibration_gap"] == pytest.approx(0.4)
    assert table.loc["under", "calibration_gap"] == pytest.approx(-0.25)
    g = gaps(table.reset_index())
    assert g["calibration_gap"] == pytest.approx(0.65)
    assert g["worst_abs_calibration_gap"] == pytest.approx(0.4)


def test_identical_groups_have_zero_gaps():
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"label": rng.integers(0, 2, 200), "pd": rng.uniform(0, 0.6, 200)})
    frame = pd.concat([base.assign(g="A"), base.assign(g="B")], ignore_index=True)
    g = gaps(fairness_table(frame, "g", threshold=THRESHOLD))
    for metric in ("approval_rate", "auc", "calibration_gap", "bad_rate_among_approved"):
        assert g[metric] == pytest.approx(0.0), metric
    assert g["approval_rate_ratio"] == pytest.approx(1.0)


def test_report_and_largest_gap(a_more_than_b):
    frame = a_more_than_b.assign(same="x", flag=a_more_than_b["g"] == "A")
    report = fairness_report(frame, ["g", "flag"], threshold=THRESHOLD)
    assert set(report) == {"g", "flag"}
    column, metric, value = largest_gap(report)
    assert metric == "approval_rate" and value == pytest.approx(0.4)
    assert column in {"g", "flag"}


def test_missing_group_value_is_its_own_row():
    frame = pd.DataFrame({"g": ["A", None, "A"], "label": [0, 1, 0], "pd": [0.1, 0.1, 0.5]})
    table = fairness_table(frame, "g", threshold=THRESHOLD)
    assert set(table["group"]) == {"A", "(missing)"} and table["count"].sum() == 3


def test_region_of():
    regions = region_of(pd.Series(["Lào Cai", "Cà Mau", "Hà Nội"]))
    assert list(regions) == ["north_mountain", "mekong_delta", "red_river_delta"]
    with pytest.raises(ValueError, match="unknown province"):
        region_of(pd.Series(["Atlantis"]))


@pytest.mark.parametrize("threshold", [0, 1, -0.1, 1.5, True])
def test_threshold_outside_unit_interval_raises(a_more_than_b, threshold):
    with pytest.raises(ValueError, match="threshold"):
        fairness_table(a_more_than_b, "g", threshold=threshold)


def test_missing_column_raises(a_more_than_b):
    with pytest.raises(ValueError, match="missing column.*ethnic_minority"):
        fairness_table(a_more_than_b, "ethnic_minority", threshold=THRESHOLD)
    with pytest.raises(ValueError, match="missing column.*pd"):
        fairness_table(a_more_than_b.drop(columns="pd"), "g", threshold=THRESHOLD)


def test_empty_frame_raises():
    with pytest.raises(ValueError, match="non-empty"):
        fairness_table(pd.DataFrame(columns=["g", "label", "pd"]), "g", threshold=THRESHOLD)


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score  # only here: cross-check of the hand-rolled AUC

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    pds = np.round(rng.uniform(0, 1, 300) * 0.5 + labels * 0.2, 2)  # rounded: ties exercised
    frame = pd.DataFrame({"g": "A", "label": labels, "pd": pds})
    auc = fairness_table(frame, "g", threshold=THRESHOLD)["auc"].iloc[0]
    assert auc == pytest.approx(roc_auc_score(labels, pds))


def test_model_gap_intervals_measures_the_groups_present_and_nothing_without_groups():
    from evaluation.fairness import INTERVAL_COLUMNS, model_gap_intervals

    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"application_id": range(n), "label": (rng.random(n) < 0.1).astype(int),
                          "pd": rng.uniform(0, 0.2, n), "true_pd": rng.uniform(0, 0.2, n),
                          "ethnic_minority": rng.random(n) < 0.5, "member_type": "household"})
    table = model_gap_intervals(frame, 0.08, champion_pd=rng.uniform(0, 0.2, n), n_boot=50)
    assert set(table["group_column"]) == {"ethnic_minority"}  # member_type is not a fairness group
    assert set(zip(table["scorer"], table["versus"])) == {
        ("model", ""), ("champion", ""), ("true_pd", ""), ("model", "champion"), ("model", "true_pd")}
    cooperatives = frame.drop(columns=["ethnic_minority"])
    empty = model_gap_intervals(cooperatives, 0.08, n_boot=10)
    assert empty.empty and list(empty.columns) == INTERVAL_COLUMNS
    with pytest.raises(ValueError, match="one PD per row"):
        model_gap_intervals(frame, 0.08, champion_pd=np.zeros(10), n_boot=10)

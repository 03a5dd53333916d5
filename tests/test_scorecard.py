"""The WoE scorecard challenger: it discriminates out of time, its points table is the whole
model, and its score is the champion's scaling of its own PD (higher score = lower PD)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from features.catalogue import feature_names
from training import scaling
from training.dataset import build_training_set, out_of_time_split
from training.scorecard import fit_scorecard


@pytest.fixture(scope="module")
def fitted(pipeline_home):
    rows = build_training_set(pipeline_home.clean, "member")
    split = out_of_time_split(rows[rows["enough_history"]])
    model = fit_scorecard(split.train, feature_names("member"), seed=0)
    return model, split


def test_oot_auc(fitted):
    model, split = fitted
    auc = roc_auc_score(split.oot["label"], model.pd(split.oot))
    print(f"scorecard OOT AUC = {auc:.4f}")
    assert auc > 0.6


def test_points_table_has_a_row_per_bin(fitted):
    model, _ = fitted
    table = model.points_table()
    assert list(table.columns) == ["feature", "bin_id", "bin", "points"]
    assert set(table["feature"]) == set(feature_names("member"))
    assert np.issubdtype(table["points"].dtype, np.floating)
    assert np.isfinite(table["points"]).all()
    for feature, part in table.groupby("feature"):
        n_bins = len(model.scorecard.binning_process_.get_binned_variable(feature).binning_table.build(
            add_totals=False))
        assert len(part) == n_bins
        assert sorted(part["bin_id"]) == list(range(n_bins))
        assert {"Missing", "Special"} <= set(part["bin"])


def test_points_sum_to_score_and_score_maps_to_pd(fitted):
    model, split = fitted
    frame = split.oot.head(300)
    table = model.points_table().set_index(["feature", "bin_id"])["points"]
    bins = model.bins(frame)
    summed = np.zeros(len(frame))
    for feature in model.features:
        summed += table.loc[[(feature, int(b)) for b in bins[feature]]].to_numpy()
    np.testing.assert_allclose(summed, model.score(frame), atol=1e-6)

    pd_ = model.pd(frame)
    expected = scaling.score_from_log_odds(np.log(pd_ / (1 - pd_)))
    np.testing.assert_allclose(summed, expected, atol=1e-6)
    # higher score = lower PD
    order = np.argsort(summed)
    assert np.all(np.diff(pd_[order]) <= 1e-12)

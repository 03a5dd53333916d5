"""The feature ceiling: what the features carry of the true risk, driver by driver."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.ceiling import driver_table, fit_ceiling


def _world(n: int, seed: int) -> pd.DataFrame:
    """Two features; the true log-odds = a driver the features see + one they cannot see."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    hidden = rng.normal(size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "driver_seen": 1.5 * x1, "driver_hidden": 1.0 * hidden,
                          "driver_constant": 0.0})
    log_odds = -3 + frame[["driver_seen", "driver_hidden", "driver_constant"]].sum(axis=1)
    frame["true_pd"] = 1 / (1 + np.exp(-log_odds))
    frame["label"] = (rng.random(n) < frame["true_pd"]).astype(int)
    return frame


def test_the_ceiling_recovers_what_the_features_carry_and_no_more():
    train, test = _world(6000, 1), _world(4000, 2)
    ceiling = fit_ceiling(train, ["x1", "x2"])
    y = test["label"]
    auc_true = roc_auc_score(y, test["true_pd"])
    auc_ceiling = roc_auc_score(y, ceiling.pd(test))
    auc_seen_only = roc_auc_score(y, test["x1"])  # the best possible on these features
    assert auc_ceiling < auc_true - 0.03  # the hidden driver is information the features lack
    assert abs(auc_ceiling - auc_seen_only) < 0.01


def test_driver_table_names_the_driver_the_features_cannot_see():
    table = driver_table(_world(6000, 3), _world(4000, 4), ["x1", "x2"]).set_index("driver")
    assert table.loc["seen", "r2_from_features"] > 0.95
    assert table.loc["hidden", "r2_from_features"] < 0.05
    assert table.loc["seen", "share"] == pytest.approx(1.5 ** 2 / (1.5 ** 2 + 1), abs=0.05)
    assert table.loc["hidden", "unexplained"] == pytest.approx(table.loc["hidden", "share"], abs=0.05)
    assert np.isnan(table.loc["constant", "r2_from_features"])
    assert table.loc["all", "unexplained"] == pytest.approx(table.loc["hidden", "share"], abs=0.05)


def test_the_ceiling_refuses_data_without_a_true_pd():
    frame = _world(100, 5).drop(columns=["true_pd"])
    with pytest.raises(ValueError, match="synthetic"):
        fit_ceiling(frame, ["x1", "x2"])

"""Tests for evaluation.metrics and evaluation.stability, checked against sklearn/scipy where they overlap."""
from __future__ import annotations

import numpy as np
import pandas
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.metrics import log_loss as sk_log_loss

from evaluation import metrics as m
from evaluation.stability import band, psi, psi_table


def informative(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated, informative PD: y ~ Bernoulli(pd)."""
    rng = np.random.default_rng(seed)
    pd = 1 / (1 + np.exp(-(rng.normal(size=n) * 1.5 - 2.0)))
    y = (rng.random(n) < pd).astype(int)
    return y, pd


def test_auc_gini_match_sklearn_including_ties():
    y, pd = informative(3000)
    assert m.auc(y, pd) == pytest.approx(roc_auc_score(y, pd), abs=1e-12)
    rounded = np.round(pd, 2)  # many ties
    assert m.auc(y, rounded) == pytest.approx(roc_auc_score(y, rounded), abs=1e-12)
    assert m.gini(y, pd) == pytest.approx(2 * m.auc(y, pd) - 1, abs=1e-12)


def test_ks_matches_scipy_ks_2samp():
    y, pd = informative(3000, seed=1)
    for scores in (pd, np.round(pd, 2)):
        expected = ks_2samp(scores[y == 1], scores[y == 0]).statistic
        assert m.ks(y, scores) == pytest.approx(expected, abs=1e-12)


def test_perfect_ranking_gives_auc_and_ks_one():
    y = np.array([0, 0, 0, 1, 1])
    pd = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert m.auc(y, pd) == 1.0
    assert m.ks(y, pd) == 1.0
    assert m.auc(y, 1 - pd) == 0.0


def test_brier_and_log_loss_match_sklearn():
    y, pd = informative(2000, seed=2)
    assert m.brier(y, pd) == pytest.approx(brier_score_loss(y, pd))
    assert m.log_loss(y, pd) == pytest.approx(sk_log_loss(y, pd))


def test_calibrated_pd_has_small_ece_and_citl_miscalibrated_does_not():
    y, pd = informative(20000, seed=3)
    assert abs(m.calibration_in_the_large(y, pd)) < 0.01
    assert m.expected_calibration_error(y, pd) < 0.02
    doubled = np.clip(pd * 2, 0, 1)
    assert m.calibration_in_the_large(y, doubled) > 0.08
    assert m.expected_calibration_error(y, doubled) > 4 * m.expected_calibration_error(y, pd)


def test_reliability_curve_shape():
    y, pd = informative(5000, seed=4)
    curve = m.reliability_curve(y, pd, bins=10)
    assert list(curve.columns) == ["bin", "mean_pd", "bad_rate", "count"]
    assert len(curve) == 10 and curve["count"].sum() == 5000
    assert curve["mean_pd"].is_monotonic_increasing


def test_bootstrap_ci_contains_point_and_narrows_with_more_data():
    small = informative(400, seed=5)
    large = informative(6000, seed=5)
    est_small = m.bootstrap(m.auc, *small, n=200, seed=0)
    est_large = m.bootstrap(m.auc, *large, n=200, seed=0)
    for est in (est_small, est_large):
        assert est.low <= est.value <= est.high
    assert (est_large.high - est_large.low) < 0.5 * (est_small.high - est_small.low)


def test_bootstrap_skips_single_class_resamples():
    y = np.zeros(30, dtype=int)
    y[0] = 1  # one bad in 30: ~36% of resamples have no bad
    pd = np.linspace(0.01, 0.5, 30)[::-1]
    est = m.bootstrap(m.auc, y, pd, n=100, seed=0)
    assert est.value == 1.0 and np.isfinite(est.low)


def test_evaluate_returns_all_metrics_with_cis():
    y, pd = informative(1000, seed=6)
    result = m.evaluate(y, pd, n_boot=50, seed=0)
    assert set(result) == {"auc", "gini", "ks", "brier", "log_loss", "calibration_in_the_large", "ece",
                           "calibration_slope"}
    for est in result.values():
        assert isinstance(est, m.Estimate) and est.low <= est.high
    assert result["gini"].value == pytest.approx(2 * result["auc"].value - 1)


def test_calibration_slope_matches_sklearn_and_sees_over_and_under_confidence():
    from sklearn.linear_model import LogisticRegression

    y, pd = informative(4000, seed=3)
    logit = np.log(pd / (1 - pd))
    reference = LogisticRegression(C=1e9, max_iter=10000, tol=1e-12).fit(logit.reshape(-1, 1), y).coef_[0, 0]
    assert m.calibration_slope(y, pd) == pytest.approx(reference, abs=1e-4)
    assert 0.85 < m.calibration_slope(y, pd) < 1.15  # calibrated by construction
    too_extreme = 1 / (1 + np.exp(-2 * logit))  # log-odds doubled: the slope halves
    assert m.calibration_slope(y, too_extreme) == pytest.approx(m.calibration_slope(y, pd) / 2, rel=1e-3)
    backwards = 1 - pd
    assert m.calibration_slope(y, backwards) < 0


def test_lift_table_capture_and_top_decile_lift():
    y, pd = informative(5000, seed=7)
    table = m.lift_table(y, pd)
    assert len(table) == 10 and table["count"].sum() == 5000
    assert table["capture"].iloc[-1] == pytest.approx(1.0)
    assert table["capture"].is_monotonic_increasing
    assert table["lift"].iloc[0] > 2  # riskiest decile first
    assert table["min_pd"].iloc[0] >= table["max_pd"].iloc[1]


def test_approval_curve_bad_rate_rises_with_approval_rate():
    y, pd = informative(20000, seed=8)
    curve = m.approval_curve(y, pd)
    assert curve["approval_rate"].iloc[0] == pytest.approx(0.05)
    assert curve["approval_rate"].iloc[-1] == pytest.approx(1.0)
    assert curve["approved"].iloc[-1] == 20000
    assert curve["bad_rate"].iloc[-1] == pytest.approx(y.mean())
    assert np.all(np.diff(curve["bad_rate"]) >= -1e-3)
    assert curve["bad_rate"].iloc[-1] > 3 * curve["bad_rate"].iloc[0]
    assert curve["pd_threshold"].is_monotonic_increasing


@pytest.mark.parametrize(
    "y, pd, message",
    [
        ([0, 1, 1], [0.1, 0.2], "same length"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "only 0"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "one class"),
        ([0, 1, 1], [0.1, 1.2, 0.3], r"\[0, 1\]"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN"),
        ([0, np.nan, 1], [0.1, 0.2, 0.3], "NaN"),
    ],
)
def test_bad_input_raises_clear_errors(y, pd, message):
    with pytest.raises(ValueError, match=message):
        m.auc(y, pd)
    with pytest.raises(ValueError, match=message):
        m.evaluate(y, pd, n_boot=5)


def test_psi_identical_is_zero_and_shift_is_act():
    rng = np.random.default_rng(9)
    base = rng.normal(size=5000)
    assert psi(base, base) == pytest.approx(0.0, abs=1e-12)
    assert psi(base, rng.normal(size=5000)) < 0.1
    shifted = psi(base, rng.normal(loc=1.0, size=5000))
    assert shifted > 0.25 and band(shifted) == "act"


def test_psi_nan_bin_and_empty_bins():
    rng = np.random.default_rng(10)
    base = rng.normal(size=4000)
    with_nan = base.copy()
    with_nan[:1200] = np.nan  # 30% missing appears in production
    value = psi(base, with_nan)
    assert np.isfinite(value) and value > 0.25
    # Same missing share on both sides: stable.
    assert psi(with_nan, with_nan) == pytest.approx(0.0, abs=1e-12)
    # All actual values beyond expected's range: empty bins floored, PSI finite and large.
    far = psi(base, base + 100)
    assert np.isfinite(far) and far > 1


def test_band_thresholds():
    assert band(0.0) == "stable"
    assert band(0.099) == "stable"
    assert band(0.1) == "watch"
    assert band(0.25) == "watch"
    assert band(0.2501) == "act"


def test_psi_table_sorted_descending():
    rng = np.random.default_rng(11)
    expected = pandas.DataFrame({"a": rng.normal(size=3000), "b": rng.normal(size=3000)})
    actual = pandas.DataFrame({"a": rng.normal(size=3000), "b": rng.normal(loc=1, size=3000)})
    table = psi_table(expected, actual, ["a", "b"])
    assert list(table.columns) == ["column", "psi", "band"]
    assert list(table["column"]) == ["b", "a"]
    assert list(table["band"]) == ["act", "stable"]
    with pytest.raises(ValueError, match="lacks column"):
        psi_table(expected, actual, ["c"])

"""A model judged on every applicant who came through the door, not only on the funded.

A lender sees outcomes of the loans it funded; the synthetic generator also knows what every
declined applicant would have done (`true_pd.outcome_if_funded`) and their true PD. On that
through-the-door (TTD) population this module measures, each with a bootstrap 95% interval
(evaluation.metrics.bootstrap):

- AUC against the would-be outcomes;
- calibration-in-the-large: mean predicted PD minus the would-be default rate (negative: the model
  under-predicts), and minus the mean true PD (the same, without the outcomes' own noise);
- the approval rate at a fixed bad rate: the largest share of applicants, taken from the lowest PD
  up, whose would-be bad rate stays at or below the target.

`halving` says, on paired resamples, how the calibration error of a method compares with the
funded-only model's: the ratio |CITL(method)| / |CITL(baseline)| with its interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation import metrics
from evaluation.metrics import Estimate

TARGET_BAD_RATE = 0.04  # the bad rate a lender accepts among those it approves


def approval_rate_at_bad_rate(y, pd_values, bad_rate: float = TARGET_BAD_RATE) -> float:
    """The largest share approved, lowest PD first, with a bad rate among the approved <= bad_rate."""
    y, pd_values = np.asarray(y, dtype=float), np.asarray(pd_values, dtype=float)
    order = np.argsort(pd_values, kind="stable")
    running = np.cumsum(y[order]) / np.arange(1, len(y) + 1)
    ok = np.flatnonzero(running <= bad_rate)
    return float((ok[-1] + 1) / len(y)) if len(ok) else 0.0


@dataclass(frozen=True)
class ThroughTheDoor:
    """One model's measures on the TTD population."""

    rows: int
    would_be_bad_rate: float
    auc: Estimate
    calibration_in_the_large: Estimate  # against the would-be outcomes
    calibration_vs_true_pd: Estimate  # against the mean true PD
    approval_rate: Estimate  # at `bad_rate`
    bad_rate: float


def evaluate(outcome, pd_values, true_pd, bad_rate: float = TARGET_BAD_RATE, n_boot: int = 500,
             seed: int = 0) -> ThroughTheDoor:
    """The TTD measures of `pd_values` against the would-be `outcome` (0/1) and the `true_pd`."""
    y = np.asarray(outcome, dtype=float)
    p = np.asarray(pd_values, dtype=float)
    truth = np.asarray(true_pd, dtype=float)
    if not (len(y) == len(p) == len(truth)):
        raise ValueError(f"outcome, pd and true_pd must have one value per applicant, got "
                         f"{len(y)}, {len(p)} and {len(truth)}")
    # The true PD travels with the predicted one through metrics.bootstrap's resampling: encode
    # both in one array (the PD's index), decoded inside the metric.
    index = np.arange(len(p)) / max(len(p) - 1, 1)

    def vs_truth(_yb, ib):
        rows = np.rint(ib * max(len(p) - 1, 1)).astype(int)
        return float(p[rows].mean() - truth[rows].mean())

    return ThroughTheDoor(
        rows=len(y), would_be_bad_rate=float(y.mean()),
        auc=metrics.bootstrap(metrics.auc, y, p, n=n_boot, seed=seed),
        calibration_in_the_large=metrics.bootstrap(metrics.calibration_in_the_large, y, p, n=n_boot,
                                                   seed=seed),
        calibration_vs_true_pd=metrics.bootstrap(vs_truth, y, index, n=n_boot, seed=seed),
        approval_rate=metrics.bootstrap(lambda yb, pb: approval_rate_at_bad_rate(yb, pb, bad_rate),
                                        y, p, n=n_boot, seed=seed),
        bad_rate=bad_rate)


def halving(reference, baseline_pd, method_pd, n_boot: int = 500, seed: int = 0) -> Estimate:
    """|mean(method PD) - mean(reference)| / |mean(baseline PD) - mean(reference)| on the same
    resamples of applicants: below 0.5 at the interval's top, the method at least halved the
    baseline's calibration error. `reference` is the would-be outcome or the true PD."""
    ref = np.asarray(reference, dtype=float)
    base, meth = np.asarray(baseline_pd, dtype=float), np.asarray(method_pd, dtype=float)

    def ratio(idx: np.ndarray) -> float:
        denominator = abs(base[idx].mean() - ref[idx].mean())
        return abs(meth[idx].mean() - ref[idx].mean()) / max(denominator, 1e-12)

    rng = np.random.default_rng(seed)  # the resampling of metrics.bootstrap, on three arrays
    values = [ratio(rng.integers(0, len(ref), len(ref))) for _ in range(n_boot)]
    low, high = np.percentile(values, [2.5, 97.5])
    return Estimate(value=ratio(np.arange(len(ref))), low=float(low), high=float(high))


def table(results: dict[str, ThroughTheDoor]) -> pd.DataFrame:
    """One row per model: the measures and their intervals, for a report."""
    out = []
    for name, r in results.items():
        row = {"model": name, "rows": r.rows, "would_be_bad_rate": r.would_be_bad_rate}
        for measure in ("auc", "calibration_in_the_large", "calibration_vs_true_pd", "approval_rate"):
            est = getattr(r, measure)
            row.update({measure: est.value, f"{measure}_low": est.low, f"{measure}_high": est.high})
        out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- comparing methods


@dataclass
class Comparison:
    """Every reject-inference method fitted on the earlier applicants and measured on the later
    ones, all of them, through the door."""

    subject: str
    train_rows: int
    train_funded: int
    train_declined: int
    train_random_accepts: int
    test_rows: int
    test_from: str
    test_to: str
    results: dict[str, ThroughTheDoor]
    halving_vs_outcome: dict[str, Estimate]
    halving_vs_true_pd: dict[str, Estimate]
    funded_test: dict[str, Estimate]  # AUC of each method on the funded test applicants alone

    @property
    def best(self) -> str:
        """The method with the smallest through-the-door calibration error against the true PD,
        judged on the top of its interval (a method that is close only by luck does not win)."""
        def worst_case(name: str) -> float:
            est = self.results[name].calibration_vs_true_pd
            return max(abs(est.low), abs(est.high))
        return min(self.results, key=worst_case)


def compare(clean_dir, subject: str = "member", methods: list[str] | None = None, test_months: int = 6,
            bad_rate: float = TARGET_BAD_RATE, n_boot: int = 500, seed: int = 0,
            progress=lambda _: None) -> Comparison:
    """Fit each method (training.reject_inference.METHODS by default) on the applicants of every
    month but the latest `test_months`, and measure each on every applicant of those months
    against the generator's truth (`true_pd.parquet` of `clean_dir`: outcome_if_funded, true_pd)."""
    from pathlib import Path

    from features.catalogue import feature_names
    from training import reject_inference
    from training.dataset import build_applicant_set

    truth_path = Path(clean_dir) / "true_pd.parquet"
    if not truth_path.exists():
        raise FileNotFoundError(f"{truth_path} is missing: a through-the-door comparison needs the "
                                "synthetic generator's truth")
    truth = pd.read_parquet(truth_path, columns=["application_id", "true_pd", "outcome_if_funded"])
    progress("building every applicant's features")
    applicants = build_applicant_set(clean_dir, subject)
    applicants = applicants[applicants["enough_history"]]
    month = applicants["as_of"].dt.to_period("M")
    first_test = month.max() - (test_months - 1)
    train, test = applicants[month < first_test], applicants[month >= first_test]
    test = test.merge(truth, on="application_id", how="inner", validate="one_to_one")
    if test["outcome_if_funded"].isna().any():
        raise ValueError("the truth lacks outcome_if_funded for some test applicants")
    features = feature_names(subject)
    names = list(reject_inference.METHODS) if methods is None else methods
    predictions: dict[str, np.ndarray] = {}
    baseline = None
    for name in names:
        progress(f"fitting {name}")
        model = reject_inference.method(name).fit(train, features, baseline=baseline)
        if name == "funded_only":
            baseline = model  # the methods that start from it reuse it
        predictions[name] = model.pd(test)
    y, true_pd = test["outcome_if_funded"].to_numpy(), test["true_pd"].to_numpy()
    is_funded = test["label"].notna().to_numpy()
    results = {n: evaluate(y, p, true_pd, bad_rate, n_boot, seed) for n, p in predictions.items()}
    base = predictions.get("funded_only")
    decision = train["decision"]
    return Comparison(
        subject=subject, train_rows=len(train), train_funded=int(train["label"].notna().sum()),
        train_declined=int((decision == "declined").sum()),
        train_random_accepts=int((decision == "random_accept").sum()), test_rows=len(test),
        test_from=str(test["as_of"].min().date()), test_to=str(test["as_of"].max().date()),
        results=results,
        halving_vs_outcome={} if base is None else {n: halving(y, base, p, n_boot, seed)
                                                     for n, p in predictions.items()},
        halving_vs_true_pd={} if base is None else {n: halving(true_pd, base, p, n_boot, seed)
                                                     for n, p in predictions.items()},
        funded_test={n: metrics.bootstrap(metrics.auc, y[is_funded], p[is_funded], n=n_boot, seed=seed)
                     for n, p in predictions.items()})

"""Reject inference: learning the through-the-door risk when only funded loans have outcomes.

A lender that declined part of its applicants knows outcomes for the funded ones only. A model
fitted on them (FundedOnly) learns P(default | features, funded); when the lender's decisions used
something the features do not fully carry (an older score, an officer's knowledge), the declined
are riskier than funded applicants with the same features, and that model under-predicts the
risk of every applicant who comes through the door. Each object here is one way of building the
training rows from the applicants of `training.dataset.build_applicant_set` (funded with labels,
declined without), and all of them fit with the same `training.fit.fit`:

- FundedOnly: the funded loans (policy-funded and random accepts), as they are. The baseline.
- InverseAcceptanceWeighting: each funded loan weighted by 1 / P(funded | the lender's recorded
  score), so that the funded represent every applicant. Consistent when acceptance depends only on
  what is recorded (here the older score, plus noise independent of the outcome).
- Parcelling: the declined get labels drawn from a PD: the bad rate of funded applicants with the
  same older score (a logistic regression on the score); then the model is fitted on the funded
  and the parcelled declined together.
- RandomAcceptanceCalibration: the funded-only model, its intercept re-fitted on the random-
  acceptance sample (would-be declines funded at random, each standing for all of them) together
  with the policy-funded loans: the bound lenders buy by lending a little at random.

Fuzzy augmentation (each declined applicant twice, as bad and as good, weighted by the funded-only
model's own PD) is not here: it leaves a maximum-likelihood model where it was (Ehrhardt et al.,
"Reject inference methods in credit scoring", 2021), so it cannot help.

`training.fit.fit` takes no row weights, so weights are applied by replication: a row of weight w
appears floor(w) times, plus once more with probability w - floor(w) (seeded): the expected
weighted sample, with the fitting code unchanged.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from training.dataset import DEFAULT_GRADE, NotEnoughData
from training.fit import FittedModel, fit

DECLINED, RANDOM_ACCEPT = "declined", "random_accept"
# `coopscore train`'s default: the method benchmarks/reject_inference.py measured best through the
# door (written to CHOICE_FILE) when the data records declined applications, funded-only otherwise.
MEASURED = "measured"
CHOICE_FILE = Path(__file__).with_name("reject_inference_choice.json")
MIN_PROPENSITY = 0.02  # an acceptance probability is never taken below this (weights at most 50)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def funded(applicants: pd.DataFrame) -> pd.DataFrame:
    """The applicants with a known outcome: funded by the policy or at random."""
    return applicants[applicants["label"].notna()]


def replicate(rows: pd.DataFrame, weights: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Rows repeated by their weights (floor(w) times, once more with probability w - floor(w))."""
    w = np.asarray(weights, dtype=float)
    if len(w) != len(rows) or (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite, non-negative and one per row")
    base = np.floor(w)
    counts = (base + (np.random.default_rng(seed).random(len(w)) < w - base)).astype(int)
    return rows.iloc[np.repeat(np.arange(len(rows)), counts)].reset_index(drop=True)


def _require_decisions(applicants: pd.DataFrame, method: str) -> None:
    if "decision" not in applicants or applicants["decision"].isna().all():
        raise ValueError(f"{method} needs the lender's recorded decisions (loan_applications.decision); "
                         "this data records none: train funded-only (reject_inference='funded_only')")


def _with_label_int(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows["label"] = rows["label"].astype(int)
    return rows


class FundedOnly:
    """The baseline: the funded loans only, unweighted."""

    name = "funded_only"
    population = "funded loans only"

    def training_rows(self, applicants: pd.DataFrame) -> pd.DataFrame:
        return _with_label_int(funded(applicants))

    def fit(self, applicants: pd.DataFrame, features: list[str], baseline: FittedModel | None = None,
            **fit_args) -> FittedModel:
        """`baseline` (the funded-only model) is unused here; the methods that start from it take it."""
        return fit(self.training_rows(applicants), features, **fit_args)


class InverseAcceptanceWeighting(FundedOnly):
    """Funded loans weighted by 1 / P(funded | policy score), the acceptance probability fitted
    by a logistic regression on the lender's recorded older score over every applicant."""

    name = "inverse_acceptance_weighting"
    population = "every applicant, by inverse acceptance weighting on the lender's older score"

    def __init__(self, min_propensity: float = MIN_PROPENSITY, seed: int = 0):
        self.min_propensity, self.seed = min_propensity, seed

    def acceptance(self, applicants: pd.DataFrame) -> np.ndarray:
        """P(funded | policy score) of each applicant."""
        _require_decisions(applicants, self.name)
        score = applicants["policy_score"].to_numpy(dtype=float)
        if np.isnan(score).any():
            raise ValueError(f"{int(np.isnan(score).sum())} applicants have no recorded policy_score")
        x = ((score - score.mean()) / score.std()).reshape(-1, 1)
        accepted = applicants["label"].notna().to_numpy()
        model = LogisticRegression(C=1e6, max_iter=1000).fit(x, accepted)
        return model.predict_proba(x)[:, 1]

    def weights(self, applicants: pd.DataFrame) -> np.ndarray:
        """1 / P(funded) of each funded applicant (capped at 1 / min_propensity)."""
        p = self.acceptance(applicants)
        return 1.0 / np.maximum(p, self.min_propensity)[applicants["label"].notna().to_numpy()]

    def training_rows(self, applicants: pd.DataFrame) -> pd.DataFrame:
        rows = funded(applicants)
        return _with_label_int(replicate(rows, self.weights(applicants), self.seed))


class Parcelling(FundedOnly):
    """The declined labelled by draws from a PD (parcelled in proportion to it), then the model
    fitted on the funded and the parcelled declined together.

    The PD of a declined applicant is the bad rate of funded applicants with the same older score:
    a logistic regression of the outcome on the lender's score, fitted on the funded (random
    accepts included). Given the score, the decision depended on the officer's noise only, so the
    funded are like the declined of the same score; the straight line in the score reaches the
    worst scores, where almost no one was funded. What we tried first and dropped, both measured
    on seed 42: each band of the score taking its funded's bad rate (the worst band's funded are
    that band's best scores, so its declined were worse than them), and adding the funded-only
    model's log-odds to the regression (on the funded it was fitted on, those log-odds know their
    outcomes too well: its weight came out inflated and the declined's PD too low, 0.12 where the
    truth was 0.15; the score alone gave 0.14). Goods drawn take the arrears grade of a random
    funded good."""

    name = "parcelling"
    population = "every applicant, the declined parcelled by the bad rate at their older score"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def declined_pd(self, applicants: pd.DataFrame) -> pd.Series:
        """The PD each declined applicant is parcelled with."""
        _require_decisions(applicants, self.name)
        score = applicants["policy_score"].to_numpy(dtype=float)
        if np.isnan(score).any():
            raise ValueError(f"{int(np.isnan(score).sum())} applicants have no recorded policy_score")
        x = ((score - score.mean()) / score.std()).reshape(-1, 1)
        known = applicants["label"].notna().to_numpy()
        y = applicants["label"].to_numpy(dtype=float)
        outcome = LogisticRegression(C=1e6, max_iter=1000).fit(x[known], y[known].astype(int))
        return pd.Series(outcome.predict_proba(x[~known])[:, 1], index=applicants.index[~known])

    def training_rows(self, applicants: pd.DataFrame) -> pd.DataFrame:
        declined = applicants[applicants["label"].isna()].copy()
        if declined.empty:
            raise NotEnoughData("no declined applicants to parcel")
        p = self.declined_pd(applicants)
        rng = np.random.default_rng(self.seed)
        bad = rng.random(len(declined)) < p.to_numpy()
        declined["label"] = bad.astype(float)
        goods = funded(applicants)
        goods = goods[goods["label"] == 0]["arrears_grade"].to_numpy(dtype=float)
        if len(goods) == 0:
            raise NotEnoughData("no funded goods to draw the arrears grade of parcelled goods from")
        declined["arrears_grade"] = np.where(bad, float(DEFAULT_GRADE),
                                             goods[rng.integers(0, len(goods), len(declined))])
        declined["parcelled"] = True
        rows = funded(applicants).assign(parcelled=False)
        return _with_label_int(pd.concat([rows, declined], ignore_index=True))


class RandomAcceptanceCalibration(FundedOnly):
    """The funded-only model with its intercept re-fitted on the design-weighted funded loans:
    policy-funded weight 1, each random accept weight (declined + random accepts) / random
    accepts, so that together they stand for every applicant. One parameter from a small,
    unbiased sample: the ranking is the funded-only model's."""

    name = "random_acceptance_calibration"
    population = "every applicant, the intercept calibrated on the random-acceptance sample"

    def design_weights(self, applicants: pd.DataFrame) -> np.ndarray:
        _require_decisions(applicants, self.name)
        decision = applicants["decision"]
        lucky = int((decision == RANDOM_ACCEPT).sum())
        if lucky == 0:
            raise NotEnoughData("no random accepts: the lender funded no would-be decline at random")
        stand_for = (int((decision == DECLINED).sum()) + lucky) / lucky
        rows = funded(applicants)
        return np.where(rows["decision"] == RANDOM_ACCEPT, stand_for, 1.0)

    def adjust(self, model: FittedModel, applicants: pd.DataFrame) -> FittedModel:
        rows = funded(applicants)
        w = self.design_weights(applicants)
        y, logit = rows["label"].to_numpy(dtype=float), model.log_odds(rows)
        target = np.sum(w * y) / w.sum()
        lo, hi = -4.0, 4.0
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.sum(w * _sigmoid(logit + mid)) / w.sum() < target else (lo, mid)
        shift = (lo + hi) / 2
        calibration = {**model.calibration, "random_acceptance_shift": shift,
                       "random_accepts": int((rows["decision"] == RANDOM_ACCEPT).sum())}
        return dataclasses.replace(model, intercept=model.intercept + shift, calibration=calibration)

    def fit(self, applicants: pd.DataFrame, features: list[str], baseline: FittedModel | None = None,
            **fit_args) -> FittedModel:
        """`baseline`: the funded-only model of the same applicants, if already fitted."""
        return self.adjust(baseline or FundedOnly().fit(applicants, features, **fit_args), applicants)


METHODS = {m.name: m for m in (FundedOnly, InverseAcceptanceWeighting, Parcelling,
                                RandomAcceptanceCalibration)}


def method(name: str):
    """The reject-inference method of that name, with its default parameters."""
    if name not in METHODS:
        raise ValueError(f"reject_inference must be one of {sorted(METHODS)}, not {name!r}")
    return METHODS[name]()


class NoMeasuredMethod(ValueError):
    """Declined applications are recorded but no reject-inference method has been measured."""


def measured_choice(path: Path = CHOICE_FILE) -> dict | None:
    """The benchmark's record (benchmarks/reject_inference.py): `method`, the one whose through-the-
    door calibration error was smallest at the far end of its interval on every seed measured, and
    per seed each method's evidence. None when the benchmark has not been run."""
    if not Path(path).exists():
        return None
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if record.get("method") not in METHODS:
        raise ValueError(f"{path} names an unknown reject-inference method {record.get('method')!r}; "
                         "run `make benchmark-reject-inference` again")
    return record


def resolve(name: str, declined: int, path: Path = CHOICE_FILE) -> tuple[str, str]:
    """(method name, why) for `coopscore train --reject-inference NAME` on data with `declined`
    declined applications. `measured` (the default) is funded-only when nothing was declined (no
    method has anything to infer then) and else the benchmark's measured best; a named method is
    taken as asked."""
    if name != MEASURED:
        method(name)  # refuses an unknown name with the list
        return name, "asked for by name"
    if declined == 0:
        return FundedOnly.name, "the data records no declined applications, so only funded loans exist"
    record = measured_choice(path)
    if record is None:
        raise NoMeasuredMethod(f"the data records {declined:,} declined applications but no reject-inference "
                         f"method has been measured ({path} is missing): run `make "
                         "benchmark-reject-inference`, or name a method with --reject-inference")
    seeds = ", ".join(str(s) for s in record.get("seeds", []))
    return record["method"], (f"measured best through the door on generator seeds {seeds} "
                              f"(benchmarks/reject_inference.py, {record.get('written', '?')})")

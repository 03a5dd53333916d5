"""Nested cross-validation: which candidate, with which hyper-parameters, and how good it is.

For every outer split (validation.py) the training rows alone are cut again (`inner_splits`), every
point of every candidate's grid (candidates.GRIDS) is fitted on the inner training rows and scored
on the inner test rows, and each candidate keeps the parameters with the best mean inner AUC. Only
then are the candidates fitted on the outer training rows with those parameters and scored on the
outer test rows, which played no part in the choice: the reported figure is not tuned on itself.

* gbm, scorecard, blend: each candidate's outer-fold predictions with its inner-chosen parameters;
  the blend mixes the chosen GBM and the chosen scorecard (its weight chosen inside too);
* logistic: the baseline, fitted on exactly the same outer folds (no search: it is the yardstick);
* nested: the whole procedure, choosing the candidate too inside each fold (the one with the best
  inner AUC), i.e. the figure to expect from what `train` deploys.

Figures: the AUC of the pooled out-of-fold predictions with a 95% interval. Out of time, every row
is tested at most once, and the interval is evaluation.metrics.bootstrap over the pooled rows. With
repeated random cross-validation a row is tested once per repeat: the figure is the mean over
repeats of each repeat's pooled AUC, and the interval resamples rows (the same rows in every
repeat) and recomputes that mean. All candidates use the same resamples, so their intervals are
comparable.

Finally the inner search is run once more on all rows: the candidate and parameters it picks are
what the caller refits on every row (`Selection.chosen`, `chosen_params`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.special import expit

from evaluation.metrics import auc as auc_of
from evaluation.metrics import bootstrap
from loan_book.candidates import BASELINE, CANDIDATES, GRIDS, BlendCandidate, ScorecardCandidate, make
from loan_book.validation import Split, inner_splits

NESTED = "nested"
INNER_FOLDS = 3
BOOTSTRAP = 500


@dataclass
class CandidateResult:
    """One candidate's out-of-fold AUC (pooled) with its 95% interval, per-fold AUCs and choices."""

    name: str
    auc: float
    auc_low: float
    auc_high: float
    fold_aucs: list[float]
    params_chosen: list[dict]  # per outer fold; for "nested": {"candidate": name, "params": {...}}
    inner_aucs: list[float] = field(default_factory=list)  # best mean inner AUC per outer fold


@dataclass
class Selection:
    """What nested cross-validation found: every candidate's figure and the choice for the refit."""

    chosen: str  # the candidate the inner search picks on all rows
    chosen_params: dict  # its parameters, picked by the same inner search on all rows
    candidates: dict[str, CandidateResult]  # gbm, scorecard, blend, logistic, nested
    validation: str  # "out of time: 4 expanding folds, 12-month gap" | "random: 5 folds x 2"
    splits: list[Split]
    oof: pd.DataFrame  # position, fold, repeat, y, one PD column per candidate (out of fold)
    inner: list[list[Split]] = field(default_factory=list)  # per outer fold, positions into all rows
    inner_auc_all_rows: dict[str, float] = field(default_factory=dict)  # the final search's AUCs


def _inner_auc(y: np.ndarray, log_odds_by_split: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean AUC over inner splits of (test positions, log-odds)."""
    return float(np.mean([auc_of(y[test], expit(lo)) for test, lo in log_odds_by_split]))


def search(X: pd.DataFrame, y: np.ndarray, inner: list[Split], grids: dict[str, list[dict]],
           seed: int = 0) -> tuple[dict[str, dict], dict[str, float]]:
    """Best parameters and best mean inner AUC of each candidate (gbm, scorecard, blend).

    Every grid point is fitted on each inner split's training rows and scored on its test rows;
    nothing outside X, y (the outer training rows) is seen. The blend combines the chosen GBM and
    the chosen scorecard's inner predictions for each weight of its grid (no extra fit)."""
    gbm_preds = {i: [] for i in range(len(grids["gbm"]))}
    card_preds = {i: [] for i in range(len(grids["scorecard"]))}
    for split in inner:
        X_fit, y_fit, X_test = X.iloc[split.train], y[split.train], X.iloc[split.test]
        for i, params in enumerate(grids["gbm"]):
            model = make("gbm", **params, seed=seed).fit(X_fit, y_fit)
            gbm_preds[i].append((split.test, model.log_odds(X_test)))
        binning = ScorecardCandidate().fit_binning(X_fit, y_fit)  # shared by the whole C grid
        for i, params in enumerate(grids["scorecard"]):
            model = ScorecardCandidate(**params, seed=seed).fit(X_fit, y_fit, binning=binning)
            card_preds[i].append((split.test, model.log_odds(X_test)))
    gbm_auc = [_inner_auc(y, gbm_preds[i]) for i in gbm_preds]
    card_auc = [_inner_auc(y, card_preds[i]) for i in card_preds]
    g, c = int(np.argmax(gbm_auc)), int(np.argmax(card_auc))
    blend_auc = []
    for params in grids["blend"]:
        w = params["weight"]
        mixed = [(test, w * lg + (1 - w) * lc)
                 for (test, lg), (_, lc) in zip(gbm_preds[g], card_preds[c])]
        blend_auc.append(_inner_auc(y, mixed))
    b = int(np.argmax(blend_auc))
    params = {"gbm": dict(grids["gbm"][g]), "scorecard": dict(grids["scorecard"][c]),
              "blend": {"gbm": dict(grids["gbm"][g]), "scorecard": dict(grids["scorecard"][c]),
                        **grids["blend"][b]}}
    aucs = {"gbm": gbm_auc[g], "scorecard": card_auc[c], "blend": blend_auc[b]}
    return params, aucs


def _choose(aucs: dict[str, float]) -> str:
    """The candidate with the best inner AUC (ties: the first in CANDIDATES order)."""
    return max(CANDIDATES, key=lambda name: (aucs[name], -CANDIDATES.index(name)))


def _gap_of(splits: list[Split]) -> int | None:
    return splits[0].gap_months if splits else None


def _outer_fold(X, y, dates, split: Split, grids, seed: int) -> dict:
    """Search on the fold's training rows, then fit and score every candidate on its test rows."""
    gap = _gap_of([split])
    train_dates = None if gap is None or dates is None else dates.iloc[split.train]
    X_train, y_train, X_test = X.iloc[split.train], y[split.train], X.iloc[split.test]
    inner = inner_splits(train_dates, y_train, folds=INNER_FOLDS,
                         gap_months=gap if gap is not None else 12, seed=seed)
    params, inner_aucs = search(X_train, y_train, inner, grids, seed)
    gbm = make("gbm", **params["gbm"], seed=seed).fit(X_train, y_train)
    card = make("scorecard", **params["scorecard"], seed=seed).fit(X_train, y_train)
    blend = BlendCandidate.from_fitted(gbm, card, weight=params["blend"]["weight"])
    baseline = make(BASELINE, seed=seed).fit(X_train, y_train)
    log_odds = {"gbm": gbm.log_odds(X_test), "scorecard": card.log_odds(X_test),
                "blend": blend.log_odds(X_test), BASELINE: baseline.log_odds(X_test)}
    picked = _choose(inner_aucs)
    log_odds[NESTED] = log_odds[picked]
    # Inner positions are into the fold's training rows: map them to positions into all rows.
    inner_all = [Split(train=split.train[s.train], test=split.train[s.test], name=s.name,
                       repeat=s.repeat, gap_months=s.gap_months) for s in inner]
    return {"log_odds": log_odds, "params": params, "inner_aucs": inner_aucs, "picked": picked,
            "inner": inner_all}


def _pooled_auc(y: np.ndarray, oof: pd.DataFrame, column: str, seed: int) -> tuple[float, float, float]:
    """Pooled out-of-fold AUC and its 95% interval (see the module docstring)."""
    repeats = sorted(oof["repeat"].unique())
    if len(repeats) == 1:
        est = bootstrap(auc_of, oof["y"].to_numpy(), oof[column].to_numpy(), n=BOOTSTRAP, seed=seed)
        return est.value, est.low, est.high
    # One PD per (repeat, row); rows resampled once and used in every repeat.
    wide = oof.pivot(index="position", columns="repeat", values=column)
    rows = wide.index.to_numpy()
    pds = wide.to_numpy().T  # repeat x row
    labels = y[rows]
    value = float(np.mean([auc_of(labels, p) for p in pds]))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(rows), len(rows))
        if labels[idx].min() == labels[idx].max():
            continue
        values.append(np.mean([auc_of(labels[idx], p[idx]) for p in pds]))
    low, high = np.percentile(values, [2.5, 97.5])
    return value, float(low), float(high)


def _describe(splits: list[Split]) -> str:
    gap = _gap_of(splits)
    if gap is not None:
        return f"out of time: {len(splits)} expanding folds, {gap}-month gap"
    repeats = len({s.repeat for s in splits})
    return f"random: {len(splits) // repeats} folds x {repeats}"


def _workers(n_splits: int) -> int:
    return max(1, min(n_splits, os.cpu_count() or 1))


def select(X: pd.DataFrame, y: np.ndarray, dates: pd.Series | None, splits: list[Split],
           seed: int = 0, progress: Callable[[str], None] = lambda msg: None,
           grids: dict[str, list[dict]] | None = None, n_jobs: int | None = None) -> Selection:
    """Nested cross-validation of every candidate on `splits`; the choice to refit on all rows.

    Parameters: X the prepared features (roles.prepare), y 0/1 (1 = default), dates one per row
    (used for out-of-time inner splits when the outer splits are out of time; None otherwise),
    splits from validation.time_splits or random_splits; `grids` overrides candidates.GRIDS (tests
    use smaller ones); `n_jobs` outer folds run in parallel (default: one per CPU).
    """
    grids = {**GRIDS, **(grids or {})}
    y = np.asarray(y).astype(int)
    if dates is not None:
        dates = pd.Series(dates).reset_index(drop=True)
    X = X.reset_index(drop=True)
    progress(f"{len(splits)} outer folds ({_describe(splits)}), {INNER_FOLDS} inner folds each")

    jobs = Parallel(n_jobs=n_jobs or _workers(len(splits)), return_as="generator")(
        delayed(_outer_fold)(X, y, dates, split, grids, seed) for split in splits)
    folds = []
    for k, (split, fold) in enumerate(zip(splits, jobs)):
        folds.append(fold)
        progress(f"fold {k + 1}/{len(splits)} ({split.name}): inner search chose {fold['picked']}; "
                 + ", ".join(f"{name} {auc_of(y[split.test], expit(lo)):.3f}"
                             for name, lo in fold["log_odds"].items()))

    names = [*CANDIDATES, BASELINE, NESTED]
    oof = pd.concat([pd.DataFrame({"position": split.test, "fold": k, "repeat": split.repeat,
                                   "y": y[split.test],
                                   **{name: expit(fold["log_odds"][name]) for name in names}})
                     for k, (split, fold) in enumerate(zip(splits, folds))], ignore_index=True)

    results = {}
    for name in names:
        value, low, high = _pooled_auc(y, oof, name, seed)
        fold_aucs = [auc_of(y[split.test], expit(fold["log_odds"][name]))
                     for split, fold in zip(splits, folds)]
        if name == NESTED:
            chosen = [{"candidate": f["picked"], "params": f["params"][f["picked"]]} for f in folds]
            inner = [f["inner_aucs"][f["picked"]] for f in folds]
        elif name == BASELINE:
            chosen, inner = [dict(grids[BASELINE][0]) for _ in folds], []
        else:
            chosen = [f["params"][name] for f in folds]
            inner = [f["inner_aucs"][name] for f in folds]
        results[name] = CandidateResult(name=name, auc=value, auc_low=low, auc_high=high,
                                        fold_aucs=fold_aucs, params_chosen=chosen, inner_aucs=inner)

    # The same search on all rows decides what is refitted for serving.
    gap = _gap_of(splits)
    progress("inner search on all rows for the refit")
    inner_all = inner_splits(dates if gap is not None else None, y, folds=INNER_FOLDS,
                             gap_months=gap if gap is not None else 12, seed=seed)
    params, aucs = search(X, y, inner_all, grids, seed)
    chosen = _choose(aucs)
    progress(f"chosen: {chosen} {params[chosen]} (inner AUC {aucs[chosen]:.3f})")
    return Selection(chosen=chosen, chosen_params=params[chosen], candidates=results,
                     validation=_describe(splits), splits=list(splits), oof=oof,
                     inner=[f["inner"] for f in folds], inner_auc_all_rows=aucs)

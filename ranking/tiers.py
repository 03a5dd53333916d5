"""Five tiers of the member's digital ranking, Vietnamese names first, and how they sit on the grades.

Fixed cut-offs, never percentiles: a tier means the same PD whatever the population and whatever
model version is champion. The scale is training/scaling.py's (600 points at odds of 50 good to 1
bad, PDO = 20 points to double the odds), so score s means odds 50 * 2^((s - 600) / 20):

    Kim cương / Diamond  score >= 605    odds >= 59.5:1  PD <= ~1.65%  the best this platform sees
    Vàng / Gold          score >= 599.4  odds >= 49:1    PD <= ~2.00%  exactly where grade B starts
    Bạc / Silver         score >= 590    odds >= 35.4:1  PD <= ~2.75%  half the platform's default rate
    Đồng / Bronze        score >= 570    odds >= 17.7:1  PD <= ~5.35%  no riskier than the average member
    Khởi đầu / Starter   below 570                                     riskier than average, or new

**Tiers and grades agree.** The grades A-F are defined once, by PD, in
`training.scaling.GRADE_UPPER_PD` (A: PD <= 1%, B <= 2%, C <= 4%, D <= 8%, E <= 16%, F above). A
tier cut-off is either a grade's own bound, taken from there and never copied (Gold: `"grade":
"B"`, PD <= 2%, i.e. score >= 599.417), or a whole score strictly inside one grade, at least
`MIN_GAP_POINTS` away from every grade bound (Diamond 605 inside B, Silver 590 inside C, Bronze 570
inside D). A tier is assigned by comparing the PD with the tier's PD bound exactly as a grade is
(`PD <= bound`, `tier_from_pd`; `tier_index` turns scores into PDs first), so at a shared bound the
two can never fall on different sides. The intended mapping (`TIER_GRADES`, derived from the two
tables and checked on a fine grid of scores around every bound by tests/test_ranking.py):

    Diamond  -> A or B      (a grade-A member is always Diamond)
    Gold     -> B
    Silver   -> C
    Bronze   -> C or D
    Starter  -> D, E or F   (a grade-E or -F member is always Starter)

so "Gold or better" is exactly "grade A or B": a member the bank sees as grade B is never shown
as Silver (before this, Gold started at 600 while grade B starts at 599.4, and 404 grade-B members
of a demo run showed as Silver). The ranking (`ranking.rank`) assigns tiers from the unrounded
PD, the very number the grade is computed from, not from the score rounded to 0.1 point.

Why these, not one PDO per tier from 620 down: the platform's members default at 5-6% a year, and
the champion's calibrated PDs for them (reference application of ranking.rank) bottom out near
1.5%: nobody scores 620 (PD 1%), so a Diamond tier there would be a promise no member can keep.
The cut-offs are instead read off this population's PDs: Bronze is the platform's default rate,
Silver half of it, Gold the 2% bound of grade B (the scale's anchor, 600 points, is PD 1.96%),
Diamond the best band the calibrated PDs reach (a quarter PDO above the anchor). Measured at the
demo size (20,000 members, docs/ranking.md) with Gold from 600: Diamond 8%, Gold 14%, Silver 20%,
Bronze 21%, Starter 37%; Gold from 599.4 moves the 0.6 points below 600 from Silver to Gold.
The lowest tier is named "getting started", not "bad": a member there usually has a short or thin
history, which time on the platform fixes.
"""
from __future__ import annotations

import math

import numpy as np

from training import scaling

MIN_GAP_POINTS = 1.0  # a tier cut-off that is not a grade's bound stays this far from every one

GRADE_UPPER_PD: dict[str, float] = dict(scaling.GRADE_UPPER_PD)  # the grades' own table, not a copy


def score_of_pd(pd_value: float) -> float:
    """The score that stands for a PD on the scale (the inverse of `pd_of_score`)."""
    return float(scaling.score_from_log_odds(math.log(pd_value / (1.0 - pd_value))))


def pd_of_score(scores) -> np.ndarray:
    """The PD a score stands for on the scale (vectorised)."""
    scores = np.asarray(scores, dtype=float)
    return scaling.pd_from_log_odds((scaling.OFFSET - scores) / scaling.FACTOR)


def max_pd(min_score: float) -> float:
    """The PD a score cut-off stands for (the highest PD a member of the tier can have)."""
    return float(pd_of_score(min_score))


# best first. Either "grade": the tier starts exactly where that grade starts (its PD bound), or
# "min_score": a whole score strictly inside one grade. "max_pd" and "min_score" are filled below.
_DEFINED: list[dict] = [
    {"code": "DIAMOND", "vi": "Kim cương", "en": "Diamond", "min_score": 605.0},
    {"code": "GOLD", "vi": "Vàng", "en": "Gold", "grade": "B"},
    {"code": "SILVER", "vi": "Bạc", "en": "Silver", "min_score": 590.0},
    {"code": "BRONZE", "vi": "Đồng", "en": "Bronze", "min_score": 570.0},
    {"code": "STARTER", "vi": "Khởi đầu", "en": "Starter", "min_score": float("-inf")},
]


def _complete(tier: dict) -> dict:
    tier = dict(tier)
    if "grade" in tier:  # the grade's own PD bound: the same float the grade is compared with
        tier["max_pd"] = GRADE_UPPER_PD[tier["grade"]]
        tier["min_score"] = score_of_pd(tier["max_pd"])
    elif math.isinf(tier["min_score"]):
        tier["max_pd"] = 1.0
    else:
        tier["max_pd"] = max_pd(tier["min_score"])
    tier["cut_off"] = ("" if math.isinf(tier["min_score"]) else f"{tier['min_score']:.0f}"
                       if tier["min_score"] == int(tier["min_score"]) else f"{tier['min_score']:.1f}")
    return tier


TIERS: list[dict] = [_complete(t) for t in _DEFINED]  # best first; min_score inclusive
TIERS_BY_CODE: dict[str, dict] = {t["code"]: t for t in TIERS}
_UPPER_PD = np.array([t["max_pd"] for t in TIERS[:-1]])  # ascending: Diamond's is the lowest


def _grades_in(low_pd: float, high_pd: float) -> tuple[str, ...]:
    """The grades a PD in (low_pd, high_pd] can have."""
    out, below = [], 0.0
    for grade, upper in scaling.GRADE_UPPER_PD:
        if below < high_pd and low_pd < upper:
            out.append(grade)
        below = upper
    return tuple(out)


TIER_GRADES: dict[str, tuple[str, ...]] = {
    t["code"]: _grades_in(TIERS[i - 1]["max_pd"] if i else 0.0, t["max_pd"]) for i, t in enumerate(TIERS)}
"""The grades each tier can hold (derived from the two tables; see the module's docstring)."""


def _check_cut_offs() -> None:
    """Every cut-off is a grade's own bound or a whole score >= MIN_GAP_POINTS from every bound,
    and a better tier stands for a lower PD; checked when the module loads."""
    bounds = [score_of_pd(u) for _, u in scaling.GRADE_UPPER_PD[:-1]]
    for t in TIERS[:-1]:
        if "grade" in t:
            continue
        if t["min_score"] != int(t["min_score"]) or \
                min(abs(t["min_score"] - b) for b in bounds) < MIN_GAP_POINTS:
            raise ValueError(f"tier {t['code']} starts at {t['min_score']}: a tier cut-off is a grade's bound "
                             f"(\"grade\": ...) or a whole score at least {MIN_GAP_POINTS} points from "
                             f"every grade bound ({', '.join(f'{b:.1f}' for b in bounds)}).")
    if not np.all(np.diff(_UPPER_PD) > 0):
        raise ValueError("a better tier must stand for a lower PD")


_check_cut_offs()


def tier_index_from_pd(pd_values) -> np.ndarray:
    """Index into TIERS for each PD (vectorised), with the grades' rule (PD <= the tier's bound);
    NaN PDs get the last tier's index."""
    pd_values = np.asarray(pd_values, dtype=float)
    return np.searchsorted(_UPPER_PD, np.nan_to_num(pd_values, nan=np.inf), side="left").astype(int)


def tier_index(scores) -> np.ndarray:
    """Index into TIERS for each score (vectorised), through the PD the score stands for, so that
    the tier and the grade of a score never disagree; NaN scores get the last tier's index."""
    return tier_index_from_pd(pd_of_score(scores))


def tier_from_pd(pd_values) -> np.ndarray:
    """The tier code of each PD."""
    return np.array([t["code"] for t in TIERS], dtype=object)[tier_index_from_pd(pd_values)]


def tier_of(scores) -> np.ndarray:
    """The tier code of each score."""
    return np.array([t["code"] for t in TIERS], dtype=object)[tier_index(scores)]

"""Five tiers of the member's digital ranking, Vietnamese names first.

Fixed score cut-offs, never percentiles: a tier means the same PD whatever the population and
whatever model version is champion. The scale is training/scaling.py's (600 points at odds of 50
good to 1 bad, PDO = 20 points to double the odds), so score s means odds 50 * 2^((s - 600) / 20):

    Kim cương / Diamond  score >= 605  odds >= 59.5:1  PD <= ~1.65%  the best this platform sees
    Vàng / Gold          score >= 600  odds >= 50:1    PD <= ~1.96%  the scale's anchor, PD 2%
    Bạc / Silver         score >= 590  odds >= 35.4:1  PD <= ~2.75%  half the platform's default rate
    Đồng / Bronze        score >= 570  odds >= 17.7:1  PD <= ~5.35%  no riskier than the average member
    Khởi đầu / Starter   below 570                                   riskier than average, or new

Why these, not one PDO per tier from 620 down: the platform's members default at 5-6% a year, and
the champion's calibrated PDs for them (reference application of ranking.rank) bottom out near
1.5%: nobody scores 620 (PD 1%), so a Diamond tier there would be a promise no member can keep.
The cut-offs are instead read off this population's PDs: Bronze is the platform's default rate,
Silver half of it, Gold the 2% anchor of the scale (grades A-B), Diamond the best band the
calibrated PDs reach (a quarter PDO above the anchor). Measured at the demo size (20,000
members, docs/ranking.md): Diamond 8%, Gold 14%, Silver 20%, Bronze 21%, Starter 37%.
The lowest tier is named "getting started", not "bad": a member there usually has a short or thin
history, which time on the platform fixes.
"""
from __future__ import annotations

import numpy as np

from training import scaling

TIERS: list[dict] = [  # best first; min_score inclusive, whole scores
    {"code": "DIAMOND", "vi": "Kim cương", "en": "Diamond", "min_score": 605.0},
    {"code": "GOLD", "vi": "Vàng", "en": "Gold", "min_score": 600.0},
    {"code": "SILVER", "vi": "Bạc", "en": "Silver", "min_score": 590.0},
    {"code": "BRONZE", "vi": "Đồng", "en": "Bronze", "min_score": 570.0},
    {"code": "STARTER", "vi": "Khởi đầu", "en": "Starter", "min_score": float("-inf")},
]
TIERS_BY_CODE: dict[str, dict] = {t["code"]: t for t in TIERS}


def max_pd(min_score: float) -> float:
    """The PD a score cut-off stands for (the highest PD a member of the tier can have)."""
    log_odds_bad = (scaling.OFFSET - min_score) / scaling.FACTOR
    return float(scaling.pd_from_log_odds(log_odds_bad))


def tier_index(scores) -> np.ndarray:
    """Index into TIERS for each score (vectorised); NaN scores get the last tier's index."""
    scores = np.asarray(scores, dtype=float)
    # ascending cut-offs for searchsorted: -inf, 570, 590, 600, 605
    ascending = np.array([t["min_score"] for t in reversed(TIERS)])
    pos = np.searchsorted(ascending, np.nan_to_num(scores, nan=-np.inf), side="right") - 1
    return (len(TIERS) - 1 - pos.clip(0, len(TIERS) - 1)).astype(int)


def tier_of(scores) -> np.ndarray:
    """The tier code of each score."""
    return np.array([t["code"] for t in TIERS], dtype=object)[tier_index(scores)]

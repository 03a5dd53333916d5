"""Five tiers of the member's digital ranking, Vietnamese names first.

The cut-offs come from the scorecard scale of training/scaling.py (600 points at odds of 50 good to
1 bad, PDO = 20 points to double the odds), so each cut-off is a round number of "odds doublings"
from the anchor and means the same PD whatever model version is champion:

    Kim cương / Diamond  score >= 620  odds >= 100:1  PD <= ~0.99%  (grade A territory)
    Vàng / Gold          score >= 600  odds >=  50:1  PD <= ~1.96%  (grade B)
    Bạc / Silver         score >= 580  odds >=  25:1  PD <= ~3.85%  (grade C)
    Đồng / Bronze        score >= 560  odds >= 12.5:1 PD <= ~7.41%  (grade D)
    Khởi đầu / Starter   below 560                                  (grades E-F, and anyone new)

Why these: the grades of training/scaling.py double the PD at each boundary, i.e. they are one PDO
(20 points) wide, so tiers one PDO wide line up with the grades a bank sees (tier boundaries sit
within a point of grade boundaries A/B, B/C, C/D, D/E) while keeping round scores a member can
remember. The lowest tier is named "getting started", not "bad": a member there usually has a
short or thin history, which time on the platform fixes.
"""
from __future__ import annotations

import numpy as np

from training import scaling

_ANCHOR, _PDO = scaling.BASE_SCORE, scaling.PDO

TIERS: list[dict] = [  # best first; min_score inclusive
    {"code": "DIAMOND", "vi": "Kim cương", "en": "Diamond", "min_score": _ANCHOR + _PDO},
    {"code": "GOLD", "vi": "Vàng", "en": "Gold", "min_score": _ANCHOR},
    {"code": "SILVER", "vi": "Bạc", "en": "Silver", "min_score": _ANCHOR - _PDO},
    {"code": "BRONZE", "vi": "Đồng", "en": "Bronze", "min_score": _ANCHOR - 2 * _PDO},
    {"code": "STARTER", "vi": "Khởi đầu", "en": "Starter", "min_score": float("-inf")},
]
TIERS_BY_CODE: dict[str, dict] = {t["code"]: t for t in TIERS}


def tier_index(scores) -> np.ndarray:
    """Index into TIERS for each score (vectorised); NaN scores get the last tier's index."""
    scores = np.asarray(scores, dtype=float)
    # ascending cut-offs for searchsorted: -inf, 560, 580, 600, 620
    ascending = np.array([t["min_score"] for t in reversed(TIERS)])
    pos = np.searchsorted(ascending, np.nan_to_num(scores, nan=-np.inf), side="right") - 1
    return (len(TIERS) - 1 - pos.clip(0, len(TIERS) - 1)).astype(int)


def tier_of(scores) -> np.ndarray:
    """The tier code of each score."""
    return np.array([t["code"] for t in TIERS], dtype=object)[tier_index(scores)]

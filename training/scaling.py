"""From probability of default to score and grade.

No official score scale exists in Viet Nam (the national credit bureau publishes none), so ours is
the classic points-to-double-the-odds scaling, written down here and in docs/scoring.md:

    score = OFFSET + FACTOR * ln(odds_good)         odds_good = (1 - PD) / PD
    FACTOR = PDO / ln 2 ,  OFFSET = BASE_SCORE - FACTOR * ln(BASE_ODDS)

600 points at odds of 50 good to 1 bad (PD ~ 1.96%), 20 points more each time the odds double.
The score is linear in the model's log-odds, so every feature's contribution to the log-odds is
also a number of points. Scores are not clipped to a range: a PD is never hidden behind a floor.
"""
from __future__ import annotations

import math

import numpy as np

BASE_SCORE = 600.0
BASE_ODDS = 50.0
PDO = 20.0
FACTOR = PDO / math.log(2)
OFFSET = BASE_SCORE - FACTOR * math.log(BASE_ODDS)

# Grades by PD; each boundary doubles the last, so each grade is about PDO points wide.
GRADE_UPPER_PD: tuple[tuple[str, float], ...] = (
    ("A", 0.01), ("B", 0.02), ("C", 0.04), ("D", 0.08), ("E", 0.16), ("F", 1.0),
)


def score_from_log_odds(log_odds_bad):
    """Score from the log-odds of default (ln(PD / (1 - PD)))."""
    return OFFSET - FACTOR * np.asarray(log_odds_bad, dtype=float)


def points_from_log_odds(contribution):
    """Points a log-odds contribution is worth (a contribution that raises risk costs points)."""
    return -FACTOR * np.asarray(contribution, dtype=float)


def pd_from_log_odds(log_odds_bad):
    """PD from log-odds of default (the logistic function)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(log_odds_bad, dtype=float)))


def grade_from_pd(pd_values) -> np.ndarray:
    """The letter grade of each PD (GRADE_UPPER_PD gives each grade's upper bound)."""
    pd_values = np.asarray(pd_values, dtype=float)
    uppers = np.array([u for _, u in GRADE_UPPER_PD])
    names = np.array([g for g, _ in GRADE_UPPER_PD])
    return names[np.searchsorted(uppers, pd_values, side="left").clip(0, len(names) - 1)]

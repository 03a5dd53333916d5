import math

import numpy as np
import pytest

from training import scaling


def log_odds_bad(pd_value):
    return math.log(pd_value / (1 - pd_value))


def test_base_odds_give_the_base_score():
    pd_at_base = 1 / (1 + scaling.BASE_ODDS)  # odds good:bad = 50:1
    assert scaling.score_from_log_odds(log_odds_bad(pd_at_base)) == pytest.approx(600.0)


def test_doubling_the_odds_adds_pdo_points():
    pd1 = 1 / (1 + 50)
    pd2 = 1 / (1 + 100)
    diff = scaling.score_from_log_odds(log_odds_bad(pd2)) - scaling.score_from_log_odds(log_odds_bad(pd1))
    assert diff == pytest.approx(scaling.PDO)


def test_points_of_contributions_add_up_to_the_score():
    base, contributions = -3.0, np.array([0.4, -0.25, 0.1])
    total = scaling.score_from_log_odds(base + contributions.sum())
    parts = scaling.score_from_log_odds(base) + scaling.points_from_log_odds(contributions).sum()
    assert total == pytest.approx(parts)


@pytest.mark.parametrize("pd_value,grade", [(0.005, "A"), (0.01, "A"), (0.0101, "B"), (0.03, "C"),
                                            (0.05, "D"), (0.1, "E"), (0.5, "F"), (0.999, "F")])
def test_grades_follow_pd_bands(pd_value, grade):
    assert scaling.grade_from_pd([pd_value])[0] == grade


def test_pd_and_log_odds_round_trip():
    values = np.array([0.001, 0.02, 0.3, 0.9])
    assert scaling.pd_from_log_odds(np.log(values / (1 - values))) == pytest.approx(values)

"""The token bucket: a burst passes, a flood waits, each bank has its own bucket."""
import math

import pytest

from serving.rate_limit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_burst_then_wait_then_refill():
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes back in half a second
    assert limiter.take("b") == 0  # another bank has its own bucket
    clock.now += 0.5
    assert limiter.take("a") == 0


def test_a_cost_above_the_burst_can_never_pass_and_per_bank_terms_apply():
    limiter = RateLimiter(rate=10, burst=20, per_bank={"big": (100, 1000)}, clock=Clock())
    assert math.isinf(limiter.take("small", cost=21))
    assert limiter.take("big", cost=1000) == 0


def test_bad_settings_are_refused_with_advice(monkeypatch):
    from settings import reset_settings

    monkeypatch.setenv("COOPSCORE_RATE_LIMIT", "fast")
    reset_settings()
    with pytest.raises(ValueError, match="for example 300/1200"):
        RateLimiter.from_settings()
    monkeypatch.setenv("COOPSCORE_RATE_LIMIT", "5")
    monkeypatch.setenv("COOPSCORE_RATE_LIMITS", "slow=1/2")
    reset_settings()
    limiter = RateLimiter.from_settings()
    assert (limiter.rate, limiter.burst, limiter.per_bank) == (5, 10, {"slow": (1, 2)})

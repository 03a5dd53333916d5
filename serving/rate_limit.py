"""Requests per bank, limited with a token bucket: a burst is allowed, a flood gets 429.

Each bank's bucket holds up to `burst` tokens and refills at `rate` tokens a second; a request
takes one token (a batch takes one per application). With no token left the answer is 429 with
Retry-After: the seconds until enough tokens are back. The buckets live in the process: with N
replicas behind a load balancer each bank gets N times the rate, so set the rate per replica
(docs/api.md says how).
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

DEFAULT_RATE = 300.0  # requests a second per bank and replica
DEFAULT_BURST = 1200.0  # room for a full batch of 1,000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate`/`burst` for every bank, unless `per_bank` gives a bank its own (a contract's terms)."""

    def __init__(self, rate: float, burst: float, per_bank: dict[str, tuple[float, float]] | None = None,
                 clock=time.monotonic):
        for r, b in [(rate, burst), *(per_bank or {}).values()]:
            if r <= 0 or b < 1:
                raise ValueError(f"rate must be > 0 and burst >= 1, got rate={r}, burst={b}")
        self.rate, self.burst, self._clock = float(rate), float(burst), clock
        self.per_bank = dict(per_bank or {})
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, processes: int = 1) -> "RateLimiter":
        """COOPSCORE_RATE_LIMIT="rate[/burst]" (e.g. "300/1200") for every bank, and
        COOPSCORE_RATE_LIMITS="bank=rate/burst,..." for banks with their own terms. Each of the
        service's `processes` worker processes keeps its own buckets, so each gets 1/processes of
        the rate (the burst stays whole: a full batch must still fit)."""
        rate, burst = _parse("COOPSCORE_RATE_LIMIT",
                             os.environ.get("COOPSCORE_RATE_LIMIT", f"{DEFAULT_RATE:g}/{DEFAULT_BURST:g}"))
        per_bank = {}
        for part in filter(None, os.environ.get("COOPSCORE_RATE_LIMITS", "").split(",")):
            bank, _, limit = part.partition("=")
            b_rate, b_burst = _parse("COOPSCORE_RATE_LIMITS", limit)
            per_bank[bank.strip()] = (b_rate / processes, b_burst)
        return cls(rate / processes, burst, per_bank)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens for `key`; returns 0 when allowed, else the seconds to wait."""
        rate, burst = self.per_bank.get(key, (self.rate, self.burst))
        if cost > burst:
            return math.inf  # can never fit: the caller must split the request
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / rate


def _parse(name: str, text: str) -> tuple[float, float]:
    try:
        rate, _, burst = text.strip().partition("/")
        rate_f = float(rate)
        return rate_f, float(burst) if burst else rate_f * 2
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a rate: write requests a second per bank, "
                         "optionally /burst, for example 300/1200") from None

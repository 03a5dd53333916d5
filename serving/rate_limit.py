"""Requests per bank, limited with a token bucket: a burst is allowed, a flood gets 429.

Each bank's bucket holds up to `burst` tokens and refills at `rate` tokens a second; a request
takes one token (a batch takes one per application). With no token left the answer is 429 with
Retry-After: the seconds until enough tokens are back. The buckets live in the process: with N
replicas behind a load balancer each bank gets N times the rate, so set the rate per replica
(docs/api.md says how).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from settings import get_settings

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
    def from_settings(cls, processes: int = 1) -> "RateLimiter":
        """COOPSCORE_RATE_LIMIT="rate[/burst]" (e.g. "300/1200") for every bank, and
        COOPSCORE_RATE_LIMITS="bank=rate/burst,..." for banks with their own terms, as parsed by
        the settings. Each of the service's `processes` worker processes keeps its own buckets, so
        each gets 1/processes of the rate (the burst stays whole: a full batch must still fit)."""
        s = get_settings()
        per_bank = {bank: (limit.rate / processes, limit.burst) for bank, limit in s.rate_limits.items()}
        return cls(s.rate_limit.rate / processes, s.rate_limit.burst, per_bank)

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

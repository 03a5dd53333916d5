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
    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate, self.burst, self._clock = float(rate), float(burst), clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "RateLimiter":
        """COOPSCORE_RATE_LIMIT="rate[/burst]", for example "300/1200"."""
        text = os.environ.get("COOPSCORE_RATE_LIMIT", f"{DEFAULT_RATE:g}/{DEFAULT_BURST:g}")
        try:
            rate, _, burst = text.partition("/")
            return cls(float(rate), float(burst or float(rate) * 2))
        except ValueError as exc:
            raise ValueError(f"COOPSCORE_RATE_LIMIT={text!r} is not valid: write requests a second "
                             f"per bank, optionally /burst, for example 300/1200 ({exc})") from None

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens for `key`; returns 0 when allowed, else the seconds to wait."""
        if cost > self.burst:
            return math.inf  # can never fit: the caller must split the request
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate

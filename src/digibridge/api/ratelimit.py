"""Per-consumer request rate limits: one token bucket per consumer, in this process.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; a request takes one.
The buckets live in memory, so with several gateway instances each enforces the limit on its own
(the effective limit is the per-instance one times the instances behind the load balancer).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """`per_second` tokens refill per second (0: unlimited), up to `burst` at once."""

    per_second: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by consumer id.

    At most `max_buckets` are kept (least recently used go first), so callers keyed by something
    an attacker chooses (an address) cannot grow the table without bound; a dropped bucket comes
    back full, which only ever errs on the caller's side.
    """

    def __init__(
        self, *, max_buckets: int = 10_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max = max_buckets
        self._monotonic = monotonic

    def take(self, key: str, rate: Rate) -> float | None:
        """Take one token from `key`'s bucket: None when allowed, else the seconds until a token
        is available (what `Retry-After` says)."""
        if rate.unlimited:
            return None
        now = self._monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(rate.burst), updated=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(rate.burst), bucket.tokens + elapsed * rate.per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate.per_second


def retry_after(wait: float) -> str:
    """`Retry-After` in whole seconds, never 0 (a client told 0 retries at once and fails again)."""
    return str(max(1, math.ceil(wait)))

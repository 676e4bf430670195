"""When to try a failed delivery again, and when to give up (the delivery becomes dead).

`delays[n]` is the wait before attempt n+1, so `delays[0]` (normally 0) is the first attempt and
`delays[attempts_done]` the wait after a failure. Jitter spreads retries of many deliveries that
failed together; a `Retry-After` from the sink is a floor that jitter never undercuts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

#: Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then every 12 h (until `max_age`).
DEFAULT_DELAYS: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=12),
)
DEFAULT_MAX_AGE = timedelta(hours=72)

#: Jitter needs spread, not unpredictability.
_RNG = random.Random()  # noqa: S311

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


@dataclass(frozen=True)
class RetryPolicy:
    """A retry schedule with a deadline relative to the delivery's creation.

    `RetryPolicy()` is the default schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
    then every 12 h until 72 h after the delivery was created.
    """

    delays: Sequence[timedelta] = DEFAULT_DELAYS
    max_age: timedelta = DEFAULT_MAX_AGE
    jitter: float = 0.1
    #: A `Retry-After` longer than this is cut to it (a sink cannot park a delivery for weeks).
    max_retry_after: timedelta = timedelta(hours=12)
    #: Keep using the last delay after the list runs out (until `max_age`).
    repeat_last: bool = True

    def __post_init__(self) -> None:
        if not self.delays:
            raise ValueError("a retry policy needs at least one delay")
        if any(delay < timedelta(0) for delay in self.delays):
            raise ValueError("retry delays cannot be negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        object.__setattr__(self, "delays", tuple(self.delays))

    @classmethod
    def default(cls) -> RetryPolicy:
        return cls()

    @classmethod
    def parse(
        cls,
        spec: str,
        *,
        max_age: timedelta | None = None,
        repeat_last: bool = False,
        jitter: float = 0.1,
    ) -> RetryPolicy:
        """From `"0,0.2,0.5"` or `"0,5s,5m,2h"` (bare numbers are seconds): one attempt per
        delay, unless `repeat_last`.

        Without `max_age` the deadline is loose enough for every delay in the list (the sum,
        stretched by jitter, plus a minute for the attempts themselves).
        """
        delays: list[timedelta] = []
        for part in spec.split(","):
            match = _DELAY.match(part)
            if match is None:
                raise ValueError(f"not a delay: {part!r} (use e.g. 0.5, 5s, 5m, 2h)")
            delays.append(timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"]))
        if max_age is None:
            max_age = sum(delays, timedelta(0)) * (1 + jitter) + timedelta(minutes=1)
        return cls(delays, max_age, jitter=jitter, repeat_last=repeat_last)

    def next_attempt(
        self,
        attempts_done: int,
        created_at: datetime,
        now: datetime,
        retry_after: timedelta | None = None,
        rng: random.Random | None = None,
    ) -> datetime | None:
        """When to try again after `attempts_done` attempts, or None to give up."""
        if attempts_done < len(self.delays):
            delay = self.delays[attempts_done]
        elif self.repeat_last:
            delay = self.delays[-1]
        else:
            return None
        if self.jitter:
            spread = (rng or _RNG).uniform(-self.jitter, self.jitter)
            delay *= 1 + spread
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        at = now + delay
        if at > created_at + self.max_age:
            return None
        return at


def parse_retry_after(value: str, now: datetime) -> timedelta | None:
    """`Retry-After` (delta-seconds or HTTP-date) as a wait from `now`; None if unusable."""
    text = value.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))

"""The retry schedule: default steps, the 72-hour deadline, jitter, and Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from digibridge.delivery.retry import RetryPolicy, parse_retry_after

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_default_schedule_without_jitter() -> None:
    policy = RetryPolicy(jitter=0)
    created = now = T0
    waits: list[timedelta] = []
    attempts = 1
    while (at := policy.next_attempt(attempts, created, now)) is not None:
        waits.append(at - now)
        now = at
        attempts += 1

    hours = timedelta(hours=1)
    assert waits[:6] == [
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        2 * hours,
        5 * hours,
        10 * hours,
    ]
    assert set(waits[6:]) == {12 * hours}
    assert now <= created + 72 * hours < now + 12 * hours


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(jitter=0.1)
    rng = random.Random(7)

    waits = {policy.next_attempt(2, T0, T0, rng=rng) for _ in range(50)}

    assert all(
        T0 + timedelta(minutes=4.5) <= at <= T0 + timedelta(minutes=5.5) for at in waits if at
    )
    assert len(waits) > 1


def test_retry_after_is_a_floor_and_is_clamped() -> None:
    policy = RetryPolicy(jitter=0.1)
    rng = random.Random(1)

    longer = policy.next_attempt(1, T0, T0, timedelta(seconds=120), rng)
    shorter = policy.next_attempt(2, T0, T0, timedelta(seconds=1), rng)
    huge = policy.next_attempt(1, T0, T0, timedelta(days=30), rng)

    assert longer == T0 + timedelta(seconds=120)
    assert shorter is not None
    assert shorter >= T0 + timedelta(minutes=4.5)
    assert huge == T0 + timedelta(hours=12)


def test_gives_up_past_max_age() -> None:
    policy = RetryPolicy(jitter=0)

    assert policy.next_attempt(9, T0, T0 + timedelta(hours=61)) is None
    assert policy.next_attempt(9, T0, T0 + timedelta(hours=59)) == T0 + timedelta(hours=71)


def test_parsed_policy_has_one_attempt_per_delay() -> None:
    policy = RetryPolicy.parse("0,0.2,0.5")

    assert policy.delays == (timedelta(0), timedelta(seconds=0.2), timedelta(seconds=0.5))
    assert policy.max_age >= timedelta(seconds=0.7)
    assert policy.next_attempt(1, T0, T0, rng=random.Random(0)) is not None
    assert policy.next_attempt(3, T0, T0) is None


def test_parse_accepts_units_and_rejects_nonsense() -> None:
    policy = RetryPolicy.parse("0, 5s, 5m, 2h, 250ms", repeat_last=True, max_age=timedelta(1))

    assert policy.delays[1:] == (
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(hours=2),
        timedelta(milliseconds=250),
    )
    assert policy.repeat_last
    with pytest.raises(ValueError, match="not a delay"):
        RetryPolicy.parse("0,soon")
    with pytest.raises(ValueError, match="at least one"):
        RetryPolicy(delays=())


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 0 ", timedelta(0)),
        ("Sun, 01 Mar 2026 12:02:00 GMT", timedelta(minutes=2)),
        ("Sun, 01 Mar 2026 11:00:00 GMT", timedelta(0)),
        ("later", None),
        ("-5", None),
    ],
)
def test_parse_retry_after(header: str, expected: timedelta | None) -> None:
    assert parse_retry_after(header, T0) == expected

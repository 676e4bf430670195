"""`Store.queue_stats` (every backend): what `/metrics` reports of the delivery queue."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from digibridge.metrics import Metrics
from digibridge.store.types import CircuitState, Outcome, OutcomeKind, QueueStats, Store
from tests.store.test_delivery_queue import health, ingest
from tests.store.test_store_contract import attempt_for, claim, subscription

if TYPE_CHECKING:
    from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio


async def test_an_empty_store_has_an_empty_queue(store: Store, clock: FakeClock) -> None:
    assert await store.queue_stats(now=clock.now()) == QueueStats(0, 0, 0, None, {})


async def test_pending_in_flight_dead_oldest_and_circuits_are_counted(
    store: Store, clock: FakeClock
) -> None:
    created = clock.now()
    await store.create_subscription(subscription("a"))
    await ingest(store, "ev-1", "ev-2", "ev-3", "ev-4")
    clock.advance(timedelta(minutes=5))
    now = clock.now()
    first, second = await claim(store, now, limit=2)
    await store.complete(
        first, attempt_for(first, 400), Outcome(OutcomeKind.DEAD, reason="400 Bad Request")
    )
    failed = Outcome(OutcomeKind.RETRY, retry_at=now, endpoint_failed=True)
    rules = health(min_requests=1)

    stats = await store.queue_stats(now=now)
    assert stats == QueueStats(pending=3, in_flight=1, dead=1, oldest_pending_since=created)

    await store.complete(second, attempt_for(second, 503), failed, rules)
    stats = await store.queue_stats(now=now)
    assert (stats.pending, stats.in_flight, stats.dead) == (3, 0, 1)
    assert stats.circuits == {CircuitState.OPEN: 1}


async def test_an_expired_lease_is_no_longer_in_flight(store: Store, clock: FakeClock) -> None:
    await store.create_subscription(subscription("a"))
    await ingest(store, "ev-1")
    await claim(store, clock.now())
    assert (await store.queue_stats(now=clock.now())).in_flight == 1
    clock.advance(timedelta(hours=1))
    assert (await store.queue_stats(now=clock.now())).in_flight == 0


async def test_the_gauges_show_the_stats_and_the_age_of_the_oldest(
    store: Store, clock: FakeClock
) -> None:
    await store.create_subscription(subscription("a"))
    await ingest(store, "ev-1")
    clock.advance(timedelta(seconds=90))
    metrics = Metrics()
    metrics.set_queue(await store.queue_stats(now=clock.now()), clock.now())
    text = metrics.render()[0].decode()
    assert 'digibridge_delivery_queue{state="pending"} 1.0' in text
    assert "digibridge_delivery_oldest_pending_age_seconds 90.0" in text
    assert 'digibridge_circuits{state="open"} 0.0' in text

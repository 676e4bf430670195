"""The store's side of the delivery engine (every backend): per-endpoint limits, circuits,
ordering, operator actions, paging and retention."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from digibridge.store.types import (
    CircuitPolicy,
    CircuitState,
    Completion,
    DeliveryStatus,
    EndpointHealth,
    NewEvent,
    Outcome,
    OutcomeKind,
    Store,
    StoreConflict,
    Subscription,
    SubscriptionStatus,
)
from tests.store.test_store_contract import (
    LEASE,
    attempt_for,
    claim,
    event,
    match_all,
    message,
    subscription,
)

if TYPE_CHECKING:
    from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio


async def ingest(store: Store, *event_ids: str, subject: str = "obj-1") -> None:
    for event_id in event_ids:
        ev = replace(event(event_id), subject=subject)
        await store.ingest(message(f"uuid:{event_id}", f"K-{event_id}"), [ev], match_all)


def health(**policy: object) -> EndpointHealth:
    def notice(sub: Subscription, reason: str, at: object) -> NewEvent:
        return replace(event(f"notice-{sub.id}"), type="nl.digibridge.subscription.disabled")

    return EndpointHealth(CircuitPolicy(**policy), notice, match_all)  # type: ignore[arg-type]


async def test_claims_respect_the_per_endpoint_limit(store: Store, clock: FakeClock) -> None:
    await store.create_subscription(subscription("a", sink="https://one.example/a"))
    await store.create_subscription(subscription("b", sink="https://one.example/b"))
    await store.create_subscription(subscription("c", sink="https://two.example/c"))
    await ingest(store, "ev-1", "ev-2", "ev-3")
    now = clock.now()

    first = await store.claim_due(
        now=now, limit=10, lease_until=now + LEASE, owner="w1", per_endpoint=2
    )
    again = await store.claim_due(
        now=now, limit=10, lease_until=now + LEASE, owner="w2", per_endpoint=3
    )

    endpoints = [job.subscription.endpoint for job in first]
    assert endpoints.count("https://one.example") == 2
    assert endpoints.count("https://two.example") == 2
    # one.example: 2 leased + 1 more under its limit of 3; two.example has 1 left.
    assert sorted(job.subscription.endpoint for job in again) == [
        "https://one.example",
        "https://two.example",
    ]


async def test_ordered_subscriptions_get_one_delivery_per_subject_at_a_time(
    store: Store, clock: FakeClock
) -> None:
    ordered = subscription("o")
    await store.create_subscription(
        replace(ordered, delivery=replace(ordered.delivery, ordered=True))
    )
    await ingest(store, "ev-1", "ev-2")
    await ingest(store, "ev-3", subject="obj-2")

    jobs = await claim(store, clock.now())
    assert sorted(job.event.id for job in jobs) == ["ev-1", "ev-3"]
    first = next(job for job in jobs if job.event.id == "ev-1")
    await store.complete(first, attempt_for(first, 204), Outcome(OutcomeKind.SUCCEEDED))
    assert [job.event.id for job in await claim(store, clock.now(), owner="w2")] == ["ev-2"]


async def test_an_open_circuit_holds_deliveries_then_lets_one_probe_through(
    store: Store, clock: FakeClock
) -> None:
    await store.create_subscription(subscription("a"))
    await ingest(store, "ev-1", "ev-2", "ev-3")
    rules = health(min_requests=1, pause=timedelta(seconds=30))
    job, *_rest = await claim(store, clock.now(), limit=1)
    failed = Outcome(OutcomeKind.RETRY, retry_at=clock.now(), endpoint_failed=True)
    await store.complete(job, attempt_for(job, 503), failed, rules)

    circuit = await store.get_circuit("http://127.0.0.1:9")
    assert circuit is not None
    assert circuit.state is CircuitState.OPEN
    assert await claim(store, clock.now()) == []
    assert await store.next_due_at() == clock.now() + timedelta(seconds=30)

    clock.advance(timedelta(seconds=30))
    probe = await claim(store, clock.now())
    assert len(probe) == 1
    half = await store.get_circuit("http://127.0.0.1:9")
    assert half is not None
    assert half.state is CircuitState.HALF_OPEN
    assert await claim(store, clock.now(), owner="w2") == []
    succeeded = Outcome(OutcomeKind.SUCCEEDED, endpoint_failed=False)
    await store.complete(probe[0], attempt_for(probe[0], 204), succeeded, rules)
    assert len(await claim(store, clock.now(), owner="w3")) == 2


async def test_operator_actions_retry_replay_enable(store: Store, clock: FakeClock) -> None:
    await store.create_subscription(subscription("a"))
    await ingest(store, "ev-1", "ev-2")
    jobs = await claim(store, clock.now())
    for job in jobs:
        dead = Outcome(OutcomeKind.DEAD, reason="400 Bad Request", disable_subscription="gone")
        await store.complete(job, attempt_for(job, 400), dead)
    disabled = await store.get_subscription("a")
    assert disabled is not None
    assert disabled.status is SubscriptionStatus.DISABLED
    assert disabled.disabled_at == clock.now()
    enabled = await store.enable_subscription("a")
    assert enabled is not None
    assert (enabled.status, enabled.status_reason) == (SubscriptionStatus.ACTIVE, None)
    await ingest(store, "ev-3")
    [leased] = await claim(store, clock.now())
    with pytest.raises(StoreConflict):
        await store.retry_delivery(leased.delivery.id)  # in flight

    clock.advance(timedelta(hours=100))
    retried = await store.retry_delivery(jobs[0].delivery.id)
    assert retried is not None
    assert retried.status is DeliveryStatus.PENDING
    assert (retried.schedule_start, retried.schedule_offset) == (clock.now(), 1)
    assert await store.retry_delivery("nope") is None

    assert await store.replay("a", start=None, end=None, matcher=match_all) == 3
    assert await store.replay("a", start=clock.now(), end=None, matcher=match_all) == 0
    assert await store.replay("nope", start=None, end=None, matcher=match_all) is None


async def test_deliveries_page_by_cursor_and_status(store: Store, clock: FakeClock) -> None:
    await store.create_subscription(subscription("a"))
    for n in range(5):
        await ingest(store, f"ev-{n}")
        clock.advance(timedelta(seconds=1))
    everything = await store.list_deliveries()

    first = await store.list_deliveries(limit=2)
    rest = await store.list_deliveries(after=(first[-1].created_at, first[-1].id), limit=10)

    assert first + rest == everything
    [job] = await claim(store, clock.now(), limit=1)
    retry = Outcome(OutcomeKind.RETRY, retry_at=clock.now())
    await store.complete(job, attempt_for(job, 503), retry)
    assert [d.id for d in await store.list_deliveries(retrying=True)] == [job.delivery.id]
    assert len(await store.list_deliveries(retrying=False)) == 4


async def test_purge_keeps_dead_letters_and_drops_old_deliveries(
    store: Store, clock: FakeClock
) -> None:
    await store.create_subscription(subscription("a"))
    await ingest(store, "ev-ok", "ev-dead")
    for job in await claim(store, clock.now()):
        outcome = (
            Outcome(OutcomeKind.SUCCEEDED)
            if job.event.id == "ev-ok"
            else Outcome(OutcomeKind.DEAD, reason="400")
        )
        await store.complete(job, attempt_for(job, 200), outcome)

    assert (await store.purge(delivered_before=clock.now())).deliveries == 0
    clock.advance(timedelta(days=31))
    result = await store.purge(delivered_before=clock.now() - timedelta(days=30))

    assert (result.deliveries, result.events, result.messages) == (1, 1, 1)
    assert await store.get_event("ev-ok") is None
    assert await store.get_event("ev-dead") is not None
    [kept] = await store.list_deliveries()
    assert kept.status is DeliveryStatus.DEAD


async def test_an_endpoint_at_its_limit_does_not_hide_the_others_behind_its_backlog(
    store: Store, clock: FakeClock
) -> None:
    """A hanging receiver's backlog is the oldest part of the due queue; a claim must still
    reach the deliveries of other endpoints behind it, however long that backlog is."""
    await store.create_subscription(subscription("stuck", sink="https://stuck.example/hook"))
    await ingest(store, *(f"ev-{n}" for n in range(100)))
    now = clock.now()
    [held] = await store.claim_due(
        now=now, limit=1, lease_until=now + LEASE, owner="w1", per_endpoint=1
    )
    await store.create_subscription(subscription("calm", sink="https://calm.example/hook"))
    await ingest(store, "ev-late")

    [job] = await store.claim_due(
        now=now, limit=1, lease_until=now + LEASE, owner="w1", per_endpoint=1
    )

    assert held.subscription.id == "stuck"
    assert (job.subscription.id, job.event.id) == ("calm", "ev-late")


async def test_an_endpoint_that_fills_up_during_a_claim_does_not_hide_the_others(
    store: Store, clock: FakeClock
) -> None:
    """The endpoint at the front of the queue reaches its limit within the claim, its backlog
    longer than the claim would look through one row at a time: the claim goes on to the
    other endpoints' deliveries behind it, and to a rate-limited subscription's one request."""
    await store.create_subscription(subscription("busy", sink="https://busy.example/hook"))
    await ingest(store, *(f"ev-{n}" for n in range(400)))
    await store.create_subscription(subscription("calm", sink="https://calm.example/hook"))
    paced = subscription("paced", sink="https://paced.example/hook")
    await store.create_subscription(
        replace(paced, delivery=replace(paced.delivery, allowed_rate=60))
    )
    await ingest(store, "ev-late-1", "ev-late-2")
    now = clock.now()

    jobs = await store.claim_due(
        now=now, limit=5, lease_until=now + LEASE, owner="w1", per_endpoint=2
    )

    taken = sorted((job.subscription.id, job.event.id) for job in jobs)
    assert taken == [
        ("busy", "ev-0"),
        ("busy", "ev-1"),
        ("calm", "ev-late-1"),
        ("calm", "ev-late-2"),
        ("paced", "ev-late-1"),
    ]


async def test_outcomes_recorded_together_count_one_by_one_in_the_circuit(
    store: Store, clock: FakeClock
) -> None:
    """A claim records the outcomes of several sends at once: each counts in its endpoint's
    circuit as if recorded alone. One success and three failures are four outcomes, under the
    five it takes to open; one more failure in the next claim (four of five failed) opens it.
    The other endpoint's success counts in its own circuit only."""
    await store.create_subscription(subscription("a", sink="https://one.example/a"))
    await store.create_subscription(subscription("b", sink="https://two.example/b"))
    await ingest(store, *(f"ev-{n}" for n in range(4)))
    rules = health(min_requests=5, failure_ratio=0.7)
    now = clock.now()
    jobs = await claim(store, now, limit=8)
    ones = [job for job in jobs if job.subscription.id == "a"]
    two = next(job for job in jobs if job.subscription.id == "b")
    failed = Outcome(OutcomeKind.RETRY, retry_at=now, endpoint_failed=True)
    succeeded = Outcome(OutcomeKind.SUCCEEDED, endpoint_failed=False)
    outcomes = [(ones[0], succeeded), (ones[1], failed), (ones[2], failed), (ones[3], failed)]
    together = [Completion(job, attempt_for(job, 503), out, rules) for job, out in outcomes]
    together.append(Completion(two, attempt_for(two, 204), succeeded, rules))

    await store.claim_due(now=now, limit=0, lease_until=now + LEASE, owner="w1", completed=together)

    one = await store.get_circuit("https://one.example")
    other = await store.get_circuit("https://two.example")
    assert one is not None
    assert other is not None
    assert (one.state, one.successes, one.failures) == (CircuitState.CLOSED, 1, 3)
    assert (other.successes, other.failures) == (1, 0)
    retried = await claim(store, now, limit=1, owner="w2")
    assert retried[0].subscription.id == "a"
    last = Completion(retried[0], attempt_for(retried[0], 503), failed, rules)
    await store.claim_due(now=now, limit=0, lease_until=now + LEASE, owner="w2", completed=[last])
    opened = await store.get_circuit("https://one.example")
    assert opened is not None
    assert opened.state is CircuitState.OPEN


async def test_behind_an_endpoint_at_its_limit_an_ordered_subscription_keeps_its_order(
    store: Store, clock: FakeClock
) -> None:
    """The claim that passes over a full endpoint still gives an ordered subscription one
    delivery per subject at a time."""
    await store.create_subscription(subscription("busy", sink="https://busy.example/hook"))
    await ingest(store, *(f"ev-{n}" for n in range(30)))
    now = clock.now()
    held = await store.claim_due(
        now=now, limit=2, lease_until=now + LEASE, owner="w1", per_endpoint=2
    )
    ordered = subscription("ordered", sink="https://calm.example/hook")
    await store.create_subscription(
        replace(ordered, delivery=replace(ordered.delivery, ordered=True))
    )
    await ingest(store, "ev-a1", "ev-a2", subject="obj-a")
    await ingest(store, "ev-b1", subject="obj-b")

    jobs = await store.claim_due(
        now=now, limit=5, lease_until=now + LEASE, owner="w1", per_endpoint=2
    )

    assert [job.subscription.id for job in held] == ["busy", "busy"]
    taken = sorted((job.subscription.id, job.event.id) for job in jobs)
    assert taken == [("ordered", "ev-a1"), ("ordered", "ev-b1")]

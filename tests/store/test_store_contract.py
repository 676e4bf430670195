"""The `Store` contract: every backend must pass these (see `conftest.py` for the backends)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from digibridge.store.types import (
    Attempt,
    Completion,
    DeliveryJob,
    DeliverySettings,
    DeliveryStatus,
    InboundMessage,
    NewEvent,
    Outcome,
    OutcomeKind,
    Store,
    Subscription,
    SubscriptionStatus,
)

if TYPE_CHECKING:
    from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=60)
#: The `sequence` the store gives the first event of a source.
FIRST = "00000000000000000001"


def subscription(sub_id: str = "sub-1", **changes: object) -> Subscription:
    fields: dict[str, object] = {
        "id": sub_id,
        "sink": f"http://127.0.0.1:9/{sub_id}",
        "delivery": DeliverySettings(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "created_at": datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
    }
    fields.update(changes)
    return Subscription(**fields)  # type: ignore[arg-type]


def message(message_id: str = "uuid:msg-1", kenmerk: str = "KNM-1") -> InboundMessage:
    return InboundMessage(
        message_id=message_id,
        kenmerk=kenmerk,
        basisregistratie="BRP",
        gebeurtenissoort="verhuizing",
        received_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        sender_oin="00000001823288444000",
        raw=b"<soap/>",
    )


def event(event_id: str, event_type: str = "nl.brp.verhuizing") -> NewEvent:
    body = f'{{"specversion":"1.0","id":"{event_id}","type":"{event_type}"}}'.encode()
    return NewEvent(
        id=event_id,
        type=event_type,
        source="urn:nld:oin:00000001823288444000:systeem:BRP",
        subject="obj-1",
        time=datetime(2026, 3, 1, 11, 59, tzinfo=UTC),
        attributes={"type": event_type, "id": event_id},
        body=body,
    )


def match_all(_sub: Subscription, _event: NewEvent) -> bool:
    return True


async def ingest_one(store: Store, *subs: Subscription, event_id: str = "ev-1") -> str:
    """Store the subscriptions and one event for them; the id of the first delivery."""
    for sub in subs:
        await store.create_subscription(sub)
    await store.ingest(message(f"uuid:{event_id}", f"K-{event_id}"), [event(event_id)], match_all)
    deliveries = await store.list_deliveries(subscription_id=subs[0].id)
    return deliveries[0].id


def attempt_for(job: DeliveryJob, status_code: int | None, error: str | None = None) -> Attempt:
    return Attempt(
        delivery_id=job.delivery.id,
        number=job.delivery.attempts + 1,
        started_at=datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
        duration_ms=12.5,
        status_code=status_code,
        error=error,
        response_excerpt="ok" if status_code else None,
    )


async def claim(
    store: Store, now: datetime, owner: str = "w1", limit: int = 10
) -> list[DeliveryJob]:
    return await store.claim_due(now=now, limit=limit, lease_until=now + LEASE, owner=owner)


# -- ingest ------------------------------------------------------------------------------------


async def test_ingest_stores_message_events_and_one_delivery_per_match(
    store: Store, clock: FakeClock
) -> None:
    await store.create_subscription(subscription("sub-a"))
    await store.create_subscription(subscription("sub-b", types=("nl.other",)))

    def wants(sub: Subscription, ev: NewEvent) -> bool:
        return not sub.types or ev.type in sub.types

    result = await store.ingest(message(), [event("ev-1"), event("ev-2")], wants)

    assert not result.duplicate
    assert result.event_ids == ("ev-1", "ev-2")
    assert result.original_message_id == "uuid:msg-1"
    assert result.deliveries_created == 2
    stored = await store.get_event("ev-1")
    assert stored is not None
    assert json.loads(stored.body) == {**json.loads(event("ev-1").body), "sequence": FIRST}
    assert stored.message_id == "uuid:msg-1"
    assert stored.time == datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    deliveries = await store.list_deliveries()
    assert {d.subscription_id for d in deliveries} == {"sub-a"}
    assert all(d.status is DeliveryStatus.PENDING for d in deliveries)
    assert all(d.next_attempt_at == clock.now() and d.attempts == 0 for d in deliveries)


async def test_duplicate_message_id_writes_nothing_and_returns_first_events(store: Store) -> None:
    await store.create_subscription(subscription())
    await store.ingest(message("uuid:a", "K1"), [event("ev-1")], match_all)

    again = await store.ingest(message("uuid:a", "K-other"), [event("ev-9")], match_all)

    assert again.duplicate
    assert again.event_ids == ("ev-1",)
    assert again.original_message_id == "uuid:a"
    assert again.deliveries_created == 0
    assert await store.get_event("ev-9") is None
    assert len(await store.list_deliveries()) == 1


async def test_duplicate_kenmerk_under_new_message_id_is_recognised(store: Store) -> None:
    await store.ingest(message("uuid:first", "K1"), [event("ev-1")], match_all)

    again = await store.ingest(message("uuid:resent", "K1"), [event("ev-1")], match_all)

    assert again.duplicate
    assert again.event_ids == ("ev-1",)
    assert again.original_message_id == "uuid:first"


async def test_matcher_failing_mid_ingest_leaves_nothing_written(store: Store) -> None:
    await store.create_subscription(subscription("sub-a"))
    calls = 0

    def flaky(_sub: Subscription, _ev: NewEvent) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("matcher broke")
        return True

    with pytest.raises(RuntimeError, match="matcher broke"):
        await store.ingest(message(), [event("ev-1"), event("ev-2")], flaky)

    assert await store.get_event("ev-1") is None
    assert await store.list_deliveries() == []
    # Nothing was recorded, so the same message is not a duplicate afterwards.
    retried = await store.ingest(message(), [event("ev-1"), event("ev-2")], match_all)
    assert not retried.duplicate
    assert retried.deliveries_created == 2


async def test_disabled_subscriptions_get_no_deliveries(store: Store) -> None:
    await store.create_subscription(subscription("off", status=SubscriptionStatus.DISABLED))

    result = await store.ingest(message(), [event("ev-1")], match_all)

    assert result.deliveries_created == 0


# -- subscriptions -----------------------------------------------------------------------------


async def test_subscription_round_trips_every_field(store: Store) -> None:
    sub = subscription(
        "sub-full",
        protocol="HTTP",
        types=("nl.brp.a", "nl.brp.b"),
        source="urn:nld:oin:1:systeem:BRP",
        filters=({"exact": {"type": "nl.brp.a"}}, {"not": {"prefix": {"subject": "x"}}}),
        protocolsettings={"headers": {"X-Tenant": "gemeente"}},
        sinkcredential="token-123",
        delivery=DeliverySettings(
            secret="whsec_abc", mode="binary", ordered=True, form="informatiearm"
        ),
        status=SubscriptionStatus.DISABLED,
        status_reason="410 Gone from sink",
    )
    await store.create_subscription(sub)

    assert await store.get_subscription("sub-full") == sub
    assert await store.list_subscriptions() == [sub]
    assert await store.get_subscription("nope") is None


async def test_delete_subscription_removes_it_and_its_deliveries(store: Store) -> None:
    await ingest_one(store, subscription("sub-a"), subscription("sub-b"))

    assert await store.delete_subscription("sub-a")
    assert not await store.delete_subscription("sub-a")
    assert await store.get_subscription("sub-a") is None
    assert {d.subscription_id for d in await store.list_deliveries()} == {"sub-b"}


# -- claiming ----------------------------------------------------------------------------------


async def test_claim_leases_a_due_delivery_once(store: Store, clock: FakeClock) -> None:
    delivery_id = await ingest_one(store, subscription())

    jobs = await claim(store, clock.now(), owner="w1")
    second = await claim(store, clock.now(), owner="w2")

    assert [job.delivery.id for job in jobs] == [delivery_id]
    assert jobs[0].lease_owner == "w1"
    assert jobs[0].lease_until == clock.now() + LEASE
    assert jobs[0].subscription.id == "sub-1"
    assert json.loads(jobs[0].event.body) == {**json.loads(event("ev-1").body), "sequence": FIRST}
    assert second == []


async def test_claim_takes_only_due_ones_oldest_first_up_to_limit(
    store: Store, clock: FakeClock
) -> None:
    await store.create_subscription(subscription())
    for n in range(3):
        await store.ingest(message(f"uuid:{n}", f"K{n}"), [event(f"ev-{n}")], match_all)
        clock.advance(timedelta(seconds=1))

    early = await claim(store, clock.now() - timedelta(seconds=3), limit=10)
    rest = await claim(store, clock.now(), limit=1)

    assert [job.event.id for job in early] == ["ev-0"]
    assert [job.event.id for job in rest] == ["ev-1"]


async def test_expired_lease_returns_the_delivery(store: Store, clock: FakeClock) -> None:
    delivery_id = await ingest_one(store, subscription())
    await claim(store, clock.now(), owner="crashed")

    later = clock.now() + LEASE
    jobs = await claim(store, later, owner="w2")

    assert [job.delivery.id for job in jobs] == [delivery_id]


async def test_release_leases_returns_them_at_once(store: Store, clock: FakeClock) -> None:
    await ingest_one(store, subscription())
    await claim(store, clock.now(), owner="old")

    assert await store.release_leases("someone-else") == 0
    assert await store.release_leases() == 1
    assert len(await claim(store, clock.now(), owner="new")) == 1


async def test_disabled_subscription_is_not_claimed(store: Store, clock: FakeClock) -> None:
    await ingest_one(store, subscription("sub-a"), subscription("sub-b"))
    job_b = next(j for j in await claim(store, clock.now()) if j.subscription.id == "sub-b")
    gone = Outcome(OutcomeKind.DEAD, reason="410 Gone", disable_subscription="410 Gone from sink")
    await store.complete(job_b, attempt_for(job_b, 410), gone)
    await store.ingest(message("uuid:2", "K2"), [event("ev-2")], match_all)

    jobs = await claim(store, clock.now())

    assert {job.subscription.id for job in jobs} == {"sub-a"}


# -- completing --------------------------------------------------------------------------------


async def test_complete_succeeded_records_attempt_and_clears_lease(
    store: Store, clock: FakeClock
) -> None:
    await ingest_one(store, subscription())
    [job] = await claim(store, clock.now())

    await store.complete(job, attempt_for(job, 204), Outcome(OutcomeKind.SUCCEEDED))

    delivery = await store.get_delivery(job.delivery.id)
    assert delivery is not None
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 204
    assert delivery.next_attempt_at is None
    assert await store.list_attempts(job.delivery.id) == [attempt_for(job, 204)]
    assert await store.next_due_at() is None


async def test_complete_retry_reschedules(store: Store, clock: FakeClock) -> None:
    await ingest_one(store, subscription())
    [job] = await claim(store, clock.now())
    retry_at = clock.now() + timedelta(minutes=5)

    await store.complete(
        job, attempt_for(job, 503, "503 Service Unavailable"), Outcome(OutcomeKind.RETRY, retry_at)
    )

    delivery = await store.get_delivery(job.delivery.id)
    assert delivery is not None
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.next_attempt_at == retry_at
    assert delivery.last_error == "503 Service Unavailable"
    assert await claim(store, clock.now()) == []
    assert await store.next_due_at() == retry_at
    [again] = await claim(store, retry_at)
    assert again.delivery.attempts == 1


async def test_complete_dead_keeps_reason(store: Store, clock: FakeClock) -> None:
    await ingest_one(store, subscription())
    [job] = await claim(store, clock.now())

    await store.complete(
        job, attempt_for(job, 400), Outcome(OutcomeKind.DEAD, reason="400 Bad Request")
    )

    dead = await store.list_deliveries(status=DeliveryStatus.DEAD)
    assert [(d.id, d.last_error, d.last_status_code) for d in dead] == [
        (job.delivery.id, "400 Bad Request", 400)
    ]
    assert await store.get_subscription("sub-1") == subscription()


async def test_complete_410_disables_the_subscription(store: Store, clock: FakeClock) -> None:
    await ingest_one(store, subscription())
    [job] = await claim(store, clock.now())

    await store.complete(
        job,
        attempt_for(job, 410),
        Outcome(OutcomeKind.DEAD, reason="410 Gone", disable_subscription="410 Gone from sink"),
    )

    sub = await store.get_subscription("sub-1")
    assert sub is not None
    assert sub.status is SubscriptionStatus.DISABLED
    assert sub.status_reason == "410 Gone from sink"


async def test_complete_after_takeover_records_nothing(store: Store, clock: FakeClock) -> None:
    await ingest_one(store, subscription())
    [stale] = await claim(store, clock.now(), owner="slow")
    [fresh] = await claim(store, clock.now() + LEASE, owner="fast")

    await store.complete(stale, attempt_for(stale, 204), Outcome(OutcomeKind.SUCCEEDED))

    assert await store.list_attempts(stale.delivery.id) == []
    delivery = await store.get_delivery(stale.delivery.id)
    assert delivery is not None
    assert delivery.status is DeliveryStatus.PENDING
    await store.complete(fresh, attempt_for(fresh, 204), Outcome(OutcomeKind.SUCCEEDED))
    assert len(await store.list_attempts(fresh.delivery.id)) == 1


async def test_claim_records_completed_outcomes_first_in_the_same_call(
    store: Store, clock: FakeClock
) -> None:
    """The freed lease counts for the same claim: with a per-endpoint limit of one, the next
    delivery to the endpoint is handed out in the call that records the previous outcome."""
    await store.create_subscription(subscription())
    for n in range(2):
        await store.ingest(message(f"uuid:{n}", f"K{n}"), [event(f"ev-{n}")], match_all)
    now = clock.now()
    [first] = await store.claim_due(
        now=now, limit=5, lease_until=now + LEASE, owner="w1", per_endpoint=1
    )
    done = Completion(first, attempt_for(first, 204), Outcome(OutcomeKind.SUCCEEDED))

    [second] = await store.claim_due(
        now=now, limit=5, lease_until=now + LEASE, owner="w1", per_endpoint=1, completed=[done]
    )

    assert (first.event.id, second.event.id) == ("ev-0", "ev-1")
    recorded = await store.get_delivery(first.delivery.id)
    assert recorded is not None
    assert recorded.status is DeliveryStatus.SUCCEEDED
    assert await store.list_attempts(first.delivery.id) == [attempt_for(first, 204)]


async def test_claim_with_limit_zero_only_records_and_skips_taken_over_leases(
    store: Store, clock: FakeClock
) -> None:
    await store.create_subscription(subscription())
    for n in range(2):
        await store.ingest(message(f"uuid:{n}", f"K{n}"), [event(f"ev-{n}")], match_all)
        clock.advance(timedelta(seconds=1))
    taken_over, kept = await claim(store, clock.now(), owner="slow")
    later = clock.now() + LEASE
    [fresh] = await store.claim_due(now=later, limit=1, lease_until=later + LEASE, owner="fast")
    completed = [
        Completion(job, attempt_for(job, 204), Outcome(OutcomeKind.SUCCEEDED))
        for job in (taken_over, kept)
    ]

    claimed = await store.claim_due(
        now=later, limit=0, lease_until=later + LEASE, owner="slow", completed=completed
    )

    assert claimed == []
    assert fresh.delivery.id == taken_over.delivery.id
    assert await store.list_attempts(taken_over.delivery.id) == []
    assert len(await store.list_attempts(kept.delivery.id)) == 1


# -- scheduling --------------------------------------------------------------------------------


async def test_next_due_at_counts_pending_and_lease_expiry(store: Store, clock: FakeClock) -> None:
    assert await store.next_due_at() is None
    await ingest_one(store, subscription())
    assert await store.next_due_at() == clock.now()

    await claim(store, clock.now())

    assert await store.next_due_at() == clock.now() + LEASE


async def test_next_due_at_ignores_disabled_subscriptions(store: Store, clock: FakeClock) -> None:
    await ingest_one(store, subscription())
    [job] = await claim(store, clock.now())
    await store.complete(
        job,
        attempt_for(job, 410),
        Outcome(OutcomeKind.RETRY, clock.now(), disable_subscription="410 Gone from sink"),
    )

    assert await store.next_due_at() is None


# -- durability --------------------------------------------------------------------------------


async def test_state_survives_close_and_reopen(
    make_store: Callable[[], Store], clock: FakeClock
) -> None:
    first = make_store()
    await first.open()
    delivery_id = await ingest_one(first, subscription())
    await claim(first, clock.now(), owner="killed")
    await first.close()

    second = make_store()
    await second.open()
    try:
        assert await second.ping()
        assert (await second.ingest(message("uuid:ev-1", "K-ev-1"), [], match_all)).duplicate
        assert await second.release_leases() == 1
        jobs = await claim(second, clock.now(), owner="restarted")
        assert [job.delivery.id for job in jobs] == [delivery_id]
    finally:
        await second.close()

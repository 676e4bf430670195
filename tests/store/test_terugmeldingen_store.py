"""The `Store` contract for terugmeldingen: records, history, Idempotency-Keys, the DMKS outbox
and DMKS status changes. Every backend must pass these (backends: `conftest.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from digibridge.events.terugmeldingen import (
    STATUS_GEWIJZIGD,
    TRANSPORTSTATUS_GEWIJZIGD,
    status_changed,
    transport_changed,
)
from digibridge.mapping.dmks import END_STATES
from digibridge.store.types import (
    DeliverySettings,
    DmksOutcome,
    DmksOutcomeKind,
    DmksRequest,
    DmksStatusChange,
    HistoryKind,
    IdempotencyConflict,
    IdempotencyKey,
    NewEvent,
    RequestKind,
    Store,
    StoreConflict,
    Subscription,
    TerugmeldingRecord,
    TransportStatus,
)

if TYPE_CHECKING:
    from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=60)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def everyone(subscription: Subscription, event: NewEvent) -> bool:
    return event.type in subscription.types


def record(tid: str = "tm-1", owner: str = "alice", at: datetime = T0) -> TerugmeldingRecord:
    return TerugmeldingRecord(
        id=tid,
        owner=owner,
        registratie="BRP",
        oin_basisregistratie="00000001823288444000",
        oin_melder="00000001001234567000",
        document={"registratie": "BRP", "referentiekenmerk": "REF-1"},
        root_uuid=f"root-{tid}",
        transport_status=TransportStatus.ONTVANGEN,
        created_at=at,
        updated_at=at,
    )


def request(
    tid: str = "tm-1", kind: RequestKind = RequestKind.MELDING, at: datetime = T0
) -> DmksRequest:
    return DmksRequest(
        id=f"req-{tid}-{kind.value}",
        terugmelding_id=tid,
        kind=kind,
        registratie="BRP",
        oin_basisregistratie="00000001823288444000",
        annotatieboom=b"<AnnotatieBoom/>",
        root_uuid=f"root-{tid}",
        uuids=(f"root-{tid}", "child"),
        created_at=at,
    )


async def subscribe(store: Store) -> None:
    await store.create_subscription(
        Subscription(
            id="sub-1",
            sink="http://127.0.0.1:9/hook",
            delivery=DeliverySettings(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            created_at=T0,
            types=(STATUS_GEWIJZIGD, TRANSPORTSTATUS_GEWIJZIGD),
        )
    )


async def claim_one(store: Store, now: datetime, owner: str = "w1") -> list[DmksRequest]:
    return await store.claim_dmks_requests(now=now, limit=10, lease_until=now + LEASE, owner=owner)


async def send(
    store: Store, now: datetime, kind: DmksOutcomeKind, tid: str = "tm-1", **fields: object
) -> bool:
    """Claim what is due, and record `kind` for the request of `tid` (the rest stay leased)."""
    (claimed,) = [r for r in await claim_one(store, now) if r.terugmelding_id == tid]
    outcome = DmksOutcome(kind=kind, at=now, **fields)  # type: ignore[arg-type]
    return await store.complete_dmks_request(claimed, outcome, transport_changed, everyone)


async def test_create_read_history_and_list(store: Store) -> None:
    created = await store.create_terugmelding(record(), request())
    assert not created.replayed
    found = await store.get_terugmelding("tm-1")
    assert found == record()
    (line,) = await store.terugmelding_history("tm-1")
    assert (line.kind, line.status, line.request_kind) == (
        HistoryKind.TRANSPORT,
        "ontvangen",
        RequestKind.MELDING,
    )
    assert await store.get_terugmelding("nope") is None
    await store.create_terugmelding(record("tm-2", owner="bob"), request("tm-2"))
    assert [r.id for r in await store.list_terugmeldingen(owner="alice")] == ["tm-1"]
    assert [r.id for r in await store.list_terugmeldingen()] == ["tm-1", "tm-2"]


async def test_listing_pages_and_filters(store: Store) -> None:
    for n in range(5):
        at = T0 + timedelta(seconds=n)
        await store.create_terugmelding(record(f"tm-{n}", at=at), request(f"tm-{n}", at=at))
    first = await store.list_terugmeldingen(limit=2)
    assert [r.id for r in first] == ["tm-0", "tm-1"]
    rest = await store.list_terugmeldingen(after=(first[-1].created_at, first[-1].id))
    assert [r.id for r in rest] == ["tm-2", "tm-3", "tm-4"]
    await send(store, T0 + timedelta(minutes=1), DmksOutcomeKind.SENT, "tm-0", annotatie_uuid="a")
    sent = await store.list_terugmeldingen(transport_status=TransportStatus.VERZONDEN)
    assert [r.id for r in sent] == ["tm-0"]
    assert await store.list_terugmeldingen(dmks_status="Gemeld") == []


async def test_idempotency_key_replays_or_conflicts_per_owner(store: Store) -> None:
    key = IdempotencyKey(owner="alice", key="k-1", body_digest="d1")
    await store.create_terugmelding(record("tm-1"), request("tm-1"), key)
    again = await store.create_terugmelding(record("tm-9"), request("tm-9"), key)
    assert again.replayed
    assert again.record.id == "tm-1"
    assert await store.get_terugmelding("tm-9") is None
    with pytest.raises(IdempotencyConflict):
        await store.create_terugmelding(
            record("tm-8"), request("tm-8"), IdempotencyKey("alice", "k-1", "other")
        )
    other_owner = IdempotencyKey(owner="bob", key="k-1", body_digest="d1")
    mine = await store.create_terugmelding(record("tm-7", "bob"), request("tm-7"), other_owner)
    assert not mine.replayed


async def test_claim_leases_once_until_the_lease_runs_out(store: Store) -> None:
    await store.create_terugmelding(record(), request())
    assert await store.next_dmks_due_at() == T0
    (first,) = await claim_one(store, T0, "w1")
    assert first.lease_owner == "w1"
    assert await claim_one(store, T0 + timedelta(seconds=1), "w2") == []
    assert await store.next_dmks_due_at() == T0 + LEASE
    (taken,) = await claim_one(store, T0 + LEASE, "w2")
    # The first owner's lease was taken over: its outcome is not recorded.
    late = DmksOutcome(kind=DmksOutcomeKind.SENT, at=T0 + LEASE, annotatie_uuid="x")
    assert not await store.complete_dmks_request(first, late, transport_changed, everyone)
    assert await store.complete_dmks_request(taken, late, transport_changed, everyone)


async def test_released_leases_are_claimable_at_once(store: Store) -> None:
    await store.create_terugmelding(record(), request())
    await store.create_terugmelding(record("tm-2"), request("tm-2"))
    assert len(await claim_one(store, T0, "w1")) == 2
    assert await store.release_dmks_leases("someone-else") == 0
    assert await store.release_dmks_leases() == 2
    assert len(await claim_one(store, T0 + timedelta(seconds=1), "w2")) == 2


async def test_sent_records_the_receipt_and_stores_one_event(store: Store) -> None:
    await subscribe(store)
    await store.create_terugmelding(record(), request())
    at = T0 + timedelta(seconds=5)
    assert await send(store, at, DmksOutcomeKind.SENT, annotatie_uuid="ann-1", tijdstempel=T0)
    found = await store.get_terugmelding("tm-1")
    assert found is not None
    assert found.transport_status is TransportStatus.VERZONDEN
    assert (found.annotatie_uuid, found.verzonden_at) == ("ann-1", T0)
    event_id = transport_changed(found, RequestKind.MELDING, TransportStatus.VERZONDEN, at).id
    stored = await store.get_event(event_id)
    assert stored is not None
    assert stored.subject == "tm-1"
    assert len(await store.list_deliveries(subscription_id="sub-1")) == 1
    assert await store.next_dmks_due_at() is None


async def test_retry_keeps_it_pending_and_records_the_fault(store: Store) -> None:
    await store.create_terugmelding(record(), request())
    retry_at = T0 + timedelta(seconds=30)
    await send(store, T0, DmksOutcomeKind.RETRY, retry_at=retry_at, code="DK0051", error="time-out")
    assert await claim_one(store, T0 + timedelta(seconds=29)) == []
    history = await store.terugmelding_history("tm-1")
    fault = history[-1]
    assert (fault.kind, fault.code, fault.text, fault.retried) == (
        HistoryKind.FAULT,
        "DK0051",
        "time-out",
        True,
    )
    (again,) = await claim_one(store, retry_at)
    assert again.attempts == 1


async def test_failed_melding_fails_the_withdrawal_queued_behind_it(store: Store) -> None:
    await subscribe(store)
    await store.create_terugmelding(record(), request())
    withdrawn = await store.queue_intrekking(
        request(kind=RequestKind.INTREKKING, at=T0 + timedelta(seconds=1)), end_states=END_STATES
    )
    assert withdrawn is not None
    assert withdrawn.intrekking_status is TransportStatus.ONTVANGEN
    # The withdrawal waits for its melding.
    (melding,) = await claim_one(store, T0 + timedelta(seconds=2))
    assert melding.kind is RequestKind.MELDING
    outcome = DmksOutcome(
        kind=DmksOutcomeKind.FAILED, at=T0 + timedelta(seconds=2), code="DK0004", error="xsd"
    )
    await store.complete_dmks_request(melding, outcome, transport_changed, everyone)
    found = await store.get_terugmelding("tm-1")
    assert found is not None
    assert found.transport_status is TransportStatus.MISLUKT
    assert found.intrekking_status is TransportStatus.MISLUKT
    assert await claim_one(store, T0 + timedelta(hours=1)) == []
    assert len(await store.list_deliveries(subscription_id="sub-1")) == 2
    with pytest.raises(StoreConflict):
        await store.queue_intrekking(request(kind=RequestKind.INTREKKING), end_states=END_STATES)


async def test_withdrawal_refused_when_asked_twice_or_closed(store: Store) -> None:
    assert await store.queue_intrekking(request("nope"), end_states=END_STATES) is None
    await store.create_terugmelding(record(), request())
    await store.queue_intrekking(request(kind=RequestKind.INTREKKING), end_states=END_STATES)
    with pytest.raises(StoreConflict, match="already"):
        await store.queue_intrekking(request(kind=RequestKind.INTREKKING), end_states=END_STATES)
    await store.create_terugmelding(record("tm-2"), request("tm-2"))
    await send(store, T0, DmksOutcomeKind.SENT, "tm-2", annotatie_uuid="a")
    await _change(store, "tm-2", None, "Gemeld")
    await _change(store, "tm-2", "Gemeld", "Onvoldoende informatie")
    with pytest.raises(StoreConflict, match="closed"):
        await store.queue_intrekking(request("tm-2", RequestKind.INTREKKING), end_states=END_STATES)


async def _change(store: Store, tid: str, previous: str | None, status: str) -> bool:
    found = await store.get_terugmelding(tid)
    assert found is not None
    event = status_changed(
        found,
        previous=previous,
        status=status,
        registry_time=T0,
        unexpected=False,
        observed_at=T0,
    )
    change = DmksStatusChange(tid, previous, status, T0, unexpected=False, event=event)
    return await store.record_dmks_status(change, everyone)


async def test_dmks_status_is_compare_and_set_and_closes_polling(
    store: Store, clock: FakeClock
) -> None:
    await subscribe(store)
    await store.create_terugmelding(record(), request())
    assert await store.open_terugmeldingen(end_states=END_STATES) == []
    await send(store, T0, DmksOutcomeKind.SENT, annotatie_uuid="a")
    (open_one,) = await store.open_terugmeldingen(end_states=END_STATES)
    assert (open_one.root_uuid, open_one.dmks_status) == ("root-tm-1", None)
    assert await _change(store, "tm-1", None, "Gemeld")
    # Seen again (or by a second instance): nothing recorded, no second event.
    assert not await _change(store, "tm-1", None, "Gemeld")
    assert await _change(store, "tm-1", "Gemeld", "Afgehandeld")
    assert await store.open_terugmeldingen(end_states=END_STATES) == []
    history = await store.terugmelding_history("tm-1")
    assert [(h.previous, h.status) for h in history if h.kind is HistoryKind.DMKS] == [
        (None, "Gemeld"),
        ("Gemeld", "Afgehandeld"),
    ]
    found = await store.get_terugmelding("tm-1")
    assert found is not None
    assert (found.dmks_status, found.dmks_status_at) == ("Afgehandeld", T0)
    # One transport event and two status events.
    assert len(await store.list_deliveries(subscription_id="sub-1")) == 3
    assert clock.now() == T0

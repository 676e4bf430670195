"""Store contract for the subscriptions API: replacing a subscription, paged and filtered
listing, the handshake's settings, and the per-subscription rate limit in the claim."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from digibridge.store.types import DeliverySettings, NewEvent, Store, Subscription
from tests.store.test_store_contract import claim, event, match_all, message, subscription

if TYPE_CHECKING:
    from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def by_type(sub: Subscription, ev: NewEvent) -> bool:
    return not sub.types or ev.type in sub.types


def created(minute: int) -> datetime:
    return datetime(2026, 3, 1, 11, minute, tzinfo=UTC)


async def test_update_replaces_what_clients_change_and_keeps_the_rest(store: Store) -> None:
    original = subscription("sub-a", owner="gemeente-a", sinkcredential="old")
    await store.create_subscription(original)
    changed = replace(
        original,
        sink="http://127.0.0.1:9/elsewhere",
        types=("nl.brp.overlijden",),
        source="urn:nld:oin:00000001823288444000:systeem:BRP",
        filters=({"prefix": {"type": "nl.brp."}},),
        protocolsettings={"headers": {"X-Tenant": "0599"}, "method": "POST"},
        sinkcredential=None,
        delivery=DeliverySettings(
            secret=SECRET, mode="binary", handshake="vng", rate=30, allowed_rate=10
        ),
        # not the client's to change: the store keeps the stored ones
        created_at=created(30),
    )

    updated = await store.update_subscription(changed)

    assert updated is not None
    assert updated == await store.get_subscription("sub-a")
    assert (updated.sink, updated.types, updated.source) == (
        "http://127.0.0.1:9/elsewhere",
        ("nl.brp.overlijden",),
        "urn:nld:oin:00000001823288444000:systeem:BRP",
    )
    assert updated.filters == ({"prefix": {"type": "nl.brp."}},)
    assert updated.protocolsettings == {"headers": {"X-Tenant": "0599"}, "method": "POST"}
    assert updated.sinkcredential is None
    assert updated.endpoint == "http://127.0.0.1:9"
    assert updated.delivery == changed.delivery
    assert updated.delivery.rate_limit == 10
    assert (updated.owner, updated.created_at) == ("gemeente-a", original.created_at)


async def test_update_of_an_unknown_id_is_none(store: Store) -> None:
    assert await store.update_subscription(subscription("nope")) is None
    assert await store.list_subscriptions() == []


async def test_changed_types_decide_the_next_ingest(store: Store) -> None:
    sub = subscription("sub-a", types=("nl.brp.verhuizing",))
    await store.create_subscription(sub)
    await store.ingest(message("uuid:1", "K1"), [event("ev-1", "nl.brp.verhuizing")], by_type)
    await store.update_subscription(replace(sub, types=("nl.brp.overlijden",)))

    await store.ingest(message("uuid:2", "K2"), [event("ev-2", "nl.brp.verhuizing")], by_type)
    await store.ingest(message("uuid:3", "K3"), [event("ev-3", "nl.brp.overlijden")], by_type)

    assert sorted(d.event_id for d in await store.list_deliveries()) == ["ev-1", "ev-3"]


async def test_listing_pages_in_creation_order_with_a_total(store: Store) -> None:
    for number in (3, 1, 4, 2, 5):
        await store.create_subscription(subscription(f"sub-{number}", created_at=created(number)))

    first = await store.list_subscriptions(limit=2)
    second = await store.list_subscriptions(offset=2, limit=2)
    rest = await store.list_subscriptions(offset=4, limit=2)
    beyond = await store.list_subscriptions(offset=10, limit=2)

    assert [s.id for s in first + second + rest] == [f"sub-{n}" for n in range(1, 6)]
    assert beyond == []
    assert await store.count_subscriptions() == 5


async def test_listing_narrows_by_owner_sink_and_every_type(store: Store) -> None:
    subs = [
        subscription("a", owner="x", types=("t.one", "t.two"), created_at=created(1)),
        subscription("b", owner="x", types=("t.one",), sink="http://h/b", created_at=created(2)),
        subscription("c", owner="y", types=("t.two",), created_at=created(3)),
        subscription("d", owner=None, created_at=created(4)),
    ]
    for sub in subs:
        await store.create_subscription(sub)

    async def ids(**filters: object) -> list[str]:
        listed = await store.list_subscriptions(**filters)
        assert await store.count_subscriptions(**filters) == len(listed)
        return [s.id for s in listed]

    assert await ids(owner="x") == ["a", "b"]
    assert await ids(owner="nobody") == []
    assert await ids(sink="http://h/b") == ["b"]
    assert await ids(types=["t.one"]) == ["a", "b"]
    assert await ids(types=["t.one", "t.two"]) == ["a"]
    assert await ids(owner="y", types=["t.one"]) == []
    assert await ids(types=["t.%"]) == []  # values are compared, never patterns
    assert await ids() == ["a", "b", "c", "d"]


async def test_handshake_settings_survive_a_reopen(make_store: Callable[[], Store]) -> None:
    settings = DeliverySettings(secret=SECRET, handshake="none", rate=120, allowed_rate=60)
    first = make_store()
    await first.open()
    await first.create_subscription(subscription("sub-a", delivery=settings))
    await first.close()
    second = make_store()
    await second.open()
    try:
        stored = await second.get_subscription("sub-a")
    finally:
        await second.close()
    assert stored is not None
    assert stored.delivery == settings


async def test_a_rate_limited_subscription_gets_one_request_per_interval(
    store: Store, clock: FakeClock
) -> None:
    # 2 requests per minute: one every 30 seconds, whatever else is due.
    paced = subscription("paced", delivery=DeliverySettings(secret=SECRET, allowed_rate=2))
    free = subscription("free")
    await store.create_subscription(paced)
    await store.create_subscription(free)
    for number in range(4):
        await store.ingest(
            message(f"uuid:{number}", f"K{number}"), [event(f"ev-{number}")], match_all
        )
    now = clock.now()

    first = await claim(store, now)
    assert sorted(job.subscription.id for job in first).count("paced") == 1
    assert sum(job.subscription.id == "free" for job in first) == 4
    assert await claim(store, now + timedelta(seconds=29)) == []
    assert await store.next_due_at() == now + timedelta(seconds=30)

    second = await claim(store, now + timedelta(seconds=30))
    assert [job.subscription.id for job in second] == ["paced"]
    assert second[0].event.id != first[0].event.id


async def test_a_batch_is_one_request_of_the_rate(store: Store, clock: FakeClock) -> None:
    settings = DeliverySettings(secret=SECRET, mode="batch", rate=1)
    await store.create_subscription(subscription("paced", delivery=settings))
    for number in range(3):
        await store.ingest(
            message(f"uuid:{number}", f"K{number}"), [event(f"ev-{number}")], match_all
        )
    now = clock.now()

    [job] = await claim(store, now)
    rest = await store.claim_batch(job, now=now, limit=10, lease_until=now + timedelta(minutes=1))

    assert len(rest) == 2


async def test_lifting_the_rate_frees_held_deliveries(store: Store, clock: FakeClock) -> None:
    sub = subscription("paced", delivery=DeliverySettings(secret=SECRET, rate=1))
    await store.create_subscription(sub)
    for number in range(2):
        await store.ingest(
            message(f"uuid:{number}", f"K{number}"), [event(f"ev-{number}")], match_all
        )
    assert len(await claim(store, clock.now())) == 1
    assert await claim(store, clock.now()) == []

    await store.update_subscription(replace(sub, delivery=DeliverySettings(secret=SECRET)))

    assert len(await claim(store, clock.now())) == 1

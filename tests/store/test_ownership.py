"""Store contract for ownership: a subscription keeps the consumer that made it, and the
delivery log can be narrowed to one consumer's subscriptions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from digibridge.store.types import Delivery, Store
from tests.store.test_store_contract import event, match_all, message, subscription

pytestmark = pytest.mark.anyio


def of(deliveries: list[Delivery]) -> set[str]:
    """The subscriptions the deliveries are for."""
    return {delivery.subscription_id for delivery in deliveries}


async def test_the_owner_is_kept_and_read_back(store: Store) -> None:
    await store.create_subscription(subscription("sub-a", owner="gemeente-a"))
    await store.create_subscription(subscription("sub-none"))
    owned = await store.get_subscription("sub-a")
    unowned = await store.get_subscription("sub-none")
    assert owned is not None
    assert owned.owner == "gemeente-a"
    assert unowned is not None
    assert unowned.owner is None
    listed = {sub.id: sub.owner for sub in await store.list_subscriptions()}
    assert listed == {"sub-a": "gemeente-a", "sub-none": None}


async def test_the_owner_survives_a_reopen(make_store: Callable[[], Store]) -> None:
    first = make_store()
    await first.open()
    await first.create_subscription(subscription("sub-a", owner="gemeente-a"))
    await first.close()
    second = make_store()
    await second.open()
    try:
        reopened = await second.get_subscription("sub-a")
        assert reopened is not None
        assert reopened.owner == "gemeente-a"
    finally:
        await second.close()


async def test_deliveries_narrow_to_one_owner(store: Store) -> None:
    for sub_id, owner in (("sub-a", "gemeente-a"), ("sub-b", "gemeente-b"), ("sub-x", None)):
        await store.create_subscription(subscription(sub_id, owner=owner))
    await store.ingest(message(), [event("ev-1"), event("ev-2")], match_all)

    assert of(await store.list_deliveries()) == {"sub-a", "sub-b", "sub-x"}
    mine = await store.list_deliveries(owner="gemeente-a")
    assert of(mine) == {"sub-a"}
    assert len(mine) == 2
    assert await store.list_deliveries(owner="gemeente-a", subscription_id="sub-b") == []
    assert await store.list_deliveries(owner="nobody") == []
    [first] = await store.list_deliveries(owner="gemeente-b", limit=1)
    after = (first.created_at, first.id)
    [second] = await store.list_deliveries(owner="gemeente-b", after=after)
    assert second.subscription_id == "sub-b"
    assert second.id != first.id

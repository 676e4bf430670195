"""SQLite group commit: concurrent ingests share one durable commit, yet each is its own.

Every ingest still returns only after the commit that holds it; one that fails rolls back alone;
two copies of one message in the same group are one message and a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import NewEvent, StoreError, Subscription
from tests.store.test_store_contract import event, match_all, message, subscription

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "digibridge.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def groups(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group committed."""
    sizes: list[int] = []
    original = store._ingest_group

    def counted(batch: list[object], connection: object) -> object:
        sizes.append(len(batch))
        return original(batch, connection)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_ingest_group", counted)
    return sizes


async def test_concurrent_ingests_share_commits_and_all_are_stored(
    store: SqliteStore, groups: list[int]
) -> None:
    await store.create_subscription(subscription())
    results = await asyncio.gather(
        *(
            store.ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all)
            for n in range(60)
        )
    )
    assert [r.event_ids for r in results] == [(f"ev-{n}",) for n in range(60)]
    assert not any(r.duplicate for r in results)
    assert sum(groups) == 60
    assert len(groups) < 60  # shared: the first commits alone, the rest waited for it together
    assert len(await store.list_deliveries(limit=100)) == 60
    for n in range(60):
        assert await store.get_event(f"ev-{n}") is not None


async def test_a_failing_ingest_rolls_back_alone(store: SqliteStore, groups: list[int]) -> None:
    await store.create_subscription(subscription())

    def refuse_ev_13(_sub: Subscription, new: NewEvent) -> bool:
        if new.id == "ev-13":
            raise RuntimeError("matcher broke on ev-13")
        return True

    results = await asyncio.gather(
        *(
            store.ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], refuse_ev_13)
            for n in range(30)
        ),
        return_exceptions=True,
    )
    failed = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [13]
    assert "ev-13" in str(results[13])
    assert await store.get_event("ev-13") is None
    for n in range(30):
        assert (await store.get_event(f"ev-{n}") is None) == (n == 13)
    assert len(await store.list_deliveries(limit=100)) == 29
    assert max(groups) > 1  # the failure really was inside a shared group
    # The message that failed can come again and is stored then (nothing of it was kept).
    again = await store.ingest(message("uuid:13", "K-13"), [event("ev-13")], match_all)
    assert not again.duplicate


async def test_one_message_twice_in_a_group_is_stored_once(
    store: SqliteStore, groups: list[int]
) -> None:
    await store.create_subscription(subscription())
    first, *rest = await asyncio.gather(
        store.ingest(message("uuid:0", "K-0"), [event("ev-0")], match_all),
        *(
            store.ingest(message("uuid:same", "K-same"), [event("ev-same")], match_all)
            for _ in range(3)
        ),
    )
    assert not first.duplicate
    assert [r.duplicate for r in rest] == [False, True, True]
    assert {r.event_ids for r in rest} == {("ev-same",)}
    assert len(await store.list_deliveries(limit=10)) == 2


async def test_a_failed_commit_acknowledges_nobody_and_the_store_goes_on(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.create_subscription(subscription())
    original = store._ingest_group

    def disk_full(batch: list[object], connection: object) -> object:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(store, "_ingest_group", disk_full)
    results = await asyncio.gather(
        *(
            store.ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all)
            for n in range(5)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results)
    monkeypatch.setattr(store, "_ingest_group", original)
    later = await store.ingest(message("uuid:0", "K-0"), [event("ev-0")], match_all)
    assert not later.duplicate  # nothing of the failed group was kept
    assert await store.list_deliveries(limit=10) != []


async def test_a_caller_that_gives_up_does_not_stop_the_others(store: SqliteStore) -> None:
    await store.create_subscription(subscription())
    impatient = asyncio.create_task(
        store.ingest(message("uuid:gone", "K-gone"), [event("ev-gone")], match_all)
    )
    others = [
        asyncio.create_task(
            store.ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all)
        )
        for n in range(10)
    ]
    await asyncio.sleep(0)
    impatient.cancel()
    results = await asyncio.gather(*others)
    assert len(results) == 10
    for n in range(10):
        assert await store.get_event(f"ev-{n}") is not None

"""A SQLite file shared by the workers of `serve --workers`: owned by their parent, written in
turns (the write lock), and each worker woken by the others' commits.

The contract tests also run on a shared store (the `sqlite-shared` backend in conftest.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digibridge.store import _file_locks
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import StoreError
from tests.store.test_store_contract import event, match_all, message, subscription

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    """A database file owned (as a parent of workers owns it) for the test's length."""
    path = tmp_path / "digibridge.db"
    owner = _file_locks.own(path)
    yield path
    _file_locks.disown(owner)


@pytest.fixture
async def workers(path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    first, second = SqliteStore(path, shared=True), SqliteStore(path, shared=True)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_a_shared_file_nobody_owns_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "digibridge.db", shared=True)
    with pytest.raises(StoreError, match="no process owns the file"):
        await store.open()


async def test_an_owned_file_is_refused_to_a_store_of_its_own(path: Path) -> None:
    with pytest.raises(StoreError, match="in use by another digibridge process"):
        await SqliteStore(path).open()


async def test_workers_ingesting_at_once_store_everything_numbered_once(
    workers: tuple[SqliteStore, SqliteStore], path: Path
) -> None:
    first, second = workers
    await first.create_subscription(subscription())

    async def send(store: SqliteStore, name: str) -> None:
        for number in range(20):
            ident = f"{name}-{number}"
            await store.ingest(message(f"uuid:{ident}", f"K-{ident}"), [event(ident)], match_all)

    await asyncio.gather(send(first, "a"), send(second, "b"))

    with sqlite3.connect(path) as peek:
        (events,) = peek.execute("SELECT count(*) FROM events").fetchone()
        sequences = {row[0] for row in peek.execute("SELECT sequence FROM events")}
        (deliveries,) = peek.execute("SELECT count(*) FROM deliveries").fetchone()
    assert events == 40
    assert len(sequences) == 40  # no number given twice across the two writers
    assert deliveries == 40


async def test_a_worker_is_woken_by_the_others_commits_not_by_its_own(
    workers: tuple[SqliteStore, SqliteStore],
) -> None:
    first, second = workers
    woken = asyncio.Event()
    calls: list[int] = []

    def wake() -> None:
        calls.append(1)
        woken.set()

    first.on_wake(wake)
    await asyncio.sleep(0.2)  # the watcher has read the data version
    await first.ingest(message("uuid:own", "K-own"), [event("own")], match_all)
    await asyncio.sleep(0.3)
    assert calls == []

    await second.ingest(message("uuid:other", "K-other"), [event("other")], match_all)
    await asyncio.wait_for(woken.wait(), timeout=5)


async def test_a_write_waits_for_the_write_lock(
    workers: tuple[SqliteStore, SqliteStore], path: Path
) -> None:
    first, _ = workers
    lock = _file_locks.WriteLock(path)
    try:
        with lock.held():
            ingest = asyncio.create_task(
                first.ingest(message("uuid:w", "K-w"), [event("w")], match_all)
            )
            await asyncio.sleep(0.3)
            assert not ingest.done()
        result = await asyncio.wait_for(ingest, timeout=5)
    finally:
        lock.close()
    assert result.event_ids == ("w",)


async def test_a_claim_with_nothing_due_does_not_wait_for_the_write_lock(
    workers: tuple[SqliteStore, SqliteStore], path: Path
) -> None:
    first, _ = workers
    await first.create_subscription(subscription())
    lock = _file_locks.WriteLock(path)
    try:
        with lock.held():
            claimed = await asyncio.wait_for(
                first.claim_due(
                    now=NOW, limit=10, lease_until=NOW + timedelta(minutes=1), owner="w1"
                ),
                timeout=2,
            )
            assert claimed == []
        await first.ingest(message("uuid:due", "K-due"), [event("due")], match_all)
        later = datetime.now(UTC) + timedelta(hours=1)  # the store's clock is the real one
        with lock.held():
            claim = asyncio.create_task(
                first.claim_due(
                    now=later, limit=10, lease_until=later + timedelta(hours=1), owner="w1"
                )
            )
            await asyncio.sleep(0.3)
            assert not claim.done()  # something is due: the claim takes its turn
        jobs = await asyncio.wait_for(claim, timeout=5)
    finally:
        lock.close()
    assert [job.event.id for job in jobs] == ["due"]

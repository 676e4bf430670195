"""What only the SQLite store promises: its file, its pragmas, its migrations, its process lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digibridge.store._migrations import load_migrations
from digibridge.store.sqlite import _NEXT_DUE_WINDOW, SqliteStore, _ts
from digibridge.store.types import Completion, Outcome, OutcomeKind, StoreError
from tests.store.conftest import FakeClock
from tests.store.test_store_contract import (
    LEASE,
    attempt_for,
    event,
    match_all,
    message,
    subscription,
)

pytestmark = pytest.mark.anyio


async def test_open_creates_parent_folders_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "digibridge.db"
    store = SqliteStore(path)
    await store.open()
    try:
        assert path.exists()
        with sqlite3.connect(path) as peek:
            assert peek.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await store.close()


async def test_migrations_are_applied_once_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "digibridge.db"
    shipped = [m.version for m in load_migrations("sqlite")]
    assert shipped[0] == 1

    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        try:
            assert await store.applied_migrations() == shipped
        finally:
            await store.close()

    with sqlite3.connect(path) as peek:
        rows = peek.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows[0] == (1, "initial")
    assert len(rows) == len(shipped)


async def test_second_store_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "digibridge.db"
    first = SqliteStore(path)
    await first.open()
    try:
        second = SqliteStore(path)
        with pytest.raises(
            StoreError, match=rf"in use by another digibridge process \(pid {os.getpid()}\)"
        ):
            await second.open()
    finally:
        await first.close()

    third = SqliteStore(path)
    await third.open()  # the lock is released on close
    await third.close()


async def test_methods_on_a_closed_store_raise_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "digibridge.db")

    with pytest.raises(StoreError, match="not open"):
        await store.next_due_at()
    assert not await store.ping()


async def test_another_process_is_refused_and_told_our_pid(tmp_path: Path) -> None:
    path = tmp_path / "digibridge.db"
    store = SqliteStore(path)
    await store.open()
    script = (
        "import asyncio, sys\n"
        "from digibridge.store.sqlite import SqliteStore\n"
        "from digibridge.store.types import StoreError\n"
        "try:\n"
        "    asyncio.run(SqliteStore(__import__('pathlib').Path(sys.argv[1])).open())\n"
        "except StoreError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        await store.close()

    assert result.returncode == 3, result.stderr
    assert f"in use by another digibridge process (pid {os.getpid()})" in result.stdout


async def test_next_due_at_is_never_later_than_the_truth_behind_a_long_queue(
    tmp_path: Path,
) -> None:
    """`next_due_at` weighs a window of the earliest pending deliveries (so it costs the same
    with a million queued); when the window holds only held-back ones it answers the window's
    edge: earlier than the truth (a look too early), never later (a delivery left waiting)."""
    clock = FakeClock()
    store = SqliteStore(tmp_path / "digibridge.db", clock=clock)
    await store.open()
    try:
        now = clock.now()
        await store.create_subscription(subscription("held"))
        count = _NEXT_DUE_WINDOW + 20
        await store.ingest(
            message("uuid:held", "K-held"),
            [event(f"held-{n}") for n in range(count)],
            lambda sub, _e: sub.id == "held",
        )
        # Held back: all leased for an hour.
        claimed = await store.claim_due(
            now=now, limit=count, lease_until=now + timedelta(hours=1), owner="x"
        )
        assert len(claimed) == count
        clock.advance(timedelta(seconds=1))
        await store.create_subscription(subscription("later"))
        await store.ingest(
            message("uuid:later", "K-later"), [event("later-0")], lambda s, _e: s.id == "later"
        )
        truth = now + timedelta(seconds=1)  # the new delivery is due at once
        answer = await store.next_due_at()
        assert answer is not None
        assert answer <= truth
        # With the window holding the answer it is exact: a lease's end.
        small = SqliteStore(tmp_path / "small.db", clock=clock)
        await small.open()
        try:
            await small.create_subscription(subscription("one"))
            await small.ingest(message("uuid:1", "K-1"), [event("ev-1")], match_all)
            until = clock.now() + timedelta(minutes=5)
            await small.claim_due(now=clock.now(), limit=1, lease_until=until, owner="x")
            assert await small.next_due_at() == until.astimezone(UTC)
        finally:
            await small.close()
    finally:
        await store.close()


@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_stored_times_are_fixed_width_utc_text(moment: datetime, offset_minutes: int) -> None:
    """The store compares times as text: every stored time has the one fixed-width UTC form,
    whatever zone it was given in (as `strftime` wrote it before)."""
    zone = UTC if offset_minutes == 0 else timezone(timedelta(minutes=offset_minutes))
    aware = moment.replace(tzinfo=zone)
    expected = aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert _ts(aware) == expected
    assert len(_ts(aware)) == 27


async def _claim_work(backlog: int, folder: Path) -> tuple[int, int]:
    """SQLite's work (virtual machine steps, in hundreds) for two claims beside an endpoint
    with `backlog` deliveries queued: one while the endpoint is at its limit, and one that
    records an outcome and so has room for exactly one more."""
    clock = FakeClock()
    store = SqliteStore(folder / f"backlog-{backlog}.db", clock=clock)
    await store.open()
    try:
        await store.create_subscription(subscription("busy", sink="https://busy.example/hook"))
        await store.ingest(
            message(f"uuid:{backlog}", f"K-{backlog}"),
            [event(f"ev-{n}") for n in range(backlog)],
            match_all,
        )
        now = clock.now()
        jobs = await store.claim_due(
            now=now, limit=4, lease_until=now + LEASE, owner="w1", per_endpoint=4
        )
        assert len(jobs) == 4
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        connection = store._connection
        assert connection is not None
        await store._run(lambda: connection.set_progress_handler(count, 100))
        assert (
            await store.claim_due(
                now=now, limit=4, lease_until=now + LEASE, owner="w1", per_endpoint=4
            )
            == []
        )
        at_limit, steps = steps, 0
        done = Completion(jobs[0], attempt_for(jobs[0], 204), Outcome(OutcomeKind.SUCCEEDED))
        again = await store.claim_due(
            now=now,
            limit=4,
            lease_until=now + LEASE,
            owner="w1",
            per_endpoint=4,
            completed=[done],
        )
        assert len(again) == 1
        return at_limit, steps
    finally:
        await store.close()


async def test_a_claim_beside_an_endpoint_at_its_limit_does_not_read_its_backlog(
    tmp_path: Path,
) -> None:
    """A receiver that keeps up slower than its senders has the oldest part of the queue and
    sits at its limit: claims must cost the same however long its backlog grows (counted in
    SQLite's own steps, not in seconds)."""
    short = await _claim_work(20, tmp_path)
    long = await _claim_work(3000, tmp_path)

    assert long[0] <= short[0] + 2, (short, long)
    assert long[1] <= short[1] + 2, (short, long)

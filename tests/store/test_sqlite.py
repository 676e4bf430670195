"""What only the SQLite store promises: its file, its pragmas, its migrations, its process lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from digibridge.store._migrations import load_migrations
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import StoreError

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

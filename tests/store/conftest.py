"""Fixtures that give a `Store` to the contract tests, one per backend.

Every contract test runs on SQLite (a file in `tmp_path`) and on PostgreSQL (a fresh schema of
the `test` database, see tests/support/postgres.py; skipped locally when the server is down,
failed in CI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digibridge.store import _file_locks
from digibridge.store.postgres import PostgresStore
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import Store
from tests.support.postgres import fresh_schema


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "sqlite-shared", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL schema, dropped after the test."""
    with fresh_schema() as url:
        yield url


@pytest.fixture
def owned_sqlite(tmp_path: Path) -> Iterator[Path]:
    """A SQLite file owned by another, as a worker of `serve --workers` finds it (its parent
    holds the lock)."""
    path = tmp_path / "data" / "digibridge.db"
    path.parent.mkdir(parents=True)
    owner = _file_locks.own(path)
    yield path
    _file_locks.disown(owner)


@pytest.fixture
def make_store(
    backend: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Callable[[], Store]:
    """A factory for unopened stores on the same backing database (for close/reopen tests)."""
    if backend == "sqlite":
        path = tmp_path / "data" / "digibridge.db"
        return lambda: SqliteStore(path, clock=clock)
    if backend == "sqlite-shared":
        owned: Path = request.getfixturevalue("owned_sqlite")
        return lambda: SqliteStore(owned, clock=clock, shared=True)
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return lambda: PostgresStore(url, clock=clock, pool_size=4)
    raise NotImplementedError(backend)


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()

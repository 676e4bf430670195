"""Fixtures that give a `Store` to the contract tests, one per backend.

A PostgreSQL backend joins by adding a param to `backend` and a branch to `make_store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import Store


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


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path, clock: FakeClock) -> Callable[[], Store]:
    """A factory for unopened stores on the same backing database (for close/reopen tests)."""
    if backend == "sqlite":
        path = tmp_path / "data" / "digibridge.db"
        return lambda: SqliteStore(path, clock=clock)
    raise NotImplementedError(backend)


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()

"""Fixtures for delivery tests: real webhook sinks on loopback, a store, a settable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from digibridge.store.sqlite import SqliteStore
from tests.support.sinks import FakeClock, ScriptedSink


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def start_sink() -> Iterator[Callable[..., ScriptedSink]]:
    """Start sinks (optionally on a given port); all are stopped after the test."""
    started: list[ScriptedSink] = []

    def start(port: int | None = None) -> ScriptedSink:
        sink = ScriptedSink(port)
        sink.start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def sink(start_sink: Callable[..., ScriptedSink]) -> ScriptedSink:
    return start_sink()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    """A store on the test's clock (frozen unless a test moves it)."""
    opened = SqliteStore(tmp_path / "digibridge.db", clock=clock)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()

"""Fixtures shared by the whole suite: real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.digimelding import StubHandle, running_stub
from tests.support.gateway import GatewayProcess
from tests.support.pki import LocalPki
from tests.support.sinks import ScriptedSink


@pytest.fixture
def receiver() -> Iterator[ScriptedSink]:
    server = ScriptedSink()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path / "gateway").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for a module of tests that each leave it as they found it."""
    process = GatewayProcess(tmp_path_factory.mktemp("gateway")).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """The test PKI (CA bundle, server and client certificates with test OINs) as files."""
    return LocalPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def digimelding_stub() -> Iterator[StubHandle]:
    """A DigiMelding stub (real SOAP server, plain HTTP) on loopback, fresh per test."""
    with running_stub() as stub:
        yield stub

"""The DigiMelding stub on loopback for tests: start it, script it, read what it received.

`running_stub()` serves `DigimeldingStub` under uvicorn on a free loopback port (HTTPS with
uvicorn's `ssl_*` options); `StubHandle` drives it through its real control API, over HTTP.
The `digimelding_stub` fixture (tests/conftest.py) is one plain-HTTP stub per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from lxml import etree

from digibridge.mapping.dmks import schema_errors
from digibridge.wus._xml import parse_untrusted
from digibridge.wus.digimelding_stub import SOAP_PATH, DigimeldingStub
from tests.support.sinks import LoopbackServer

SOAP11_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"


class StubHandle:
    """A running stub: its SOAP URL, its control API, and the stub object itself."""

    def __init__(self, stub: DigimeldingStub, server: LoopbackServer) -> None:
        self.stub = stub
        self.server = server
        self.url = server.url(SOAP_PATH)
        self._control = httpx.Client(base_url=server.url(""), timeout=10, verify=False)  # noqa: S501 - loopback test stub

    def control(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self._control.request(method, f"/control{path}", json=body)

    def set_status(self, report_uuid: str, status: str) -> httpx.Response:
        return self.control("POST", f"/terugmeldingen/{report_uuid}/status", {"status": status})

    def inject_fault(self, code: str, count: int = 1, **options: Any) -> None:
        answer = self.control("POST", "/faults", {"code": code, "count": count, **options})
        answer.raise_for_status()

    def delay(self, seconds: float, count: int = 1) -> None:
        self.control("POST", "/delays", {"seconds": seconds, "count": count}).raise_for_status()

    def received(self, operation: str | None = None) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self.control("GET", "/requests").json()
        return [r for r in requests if operation is None or r["operation"] == operation]

    def received_bodies(self, operation: str) -> list[etree._Element]:
        """The Body child of every `operation` request received, each checked against our
        schema (an AssertionError names the first that does not conform)."""
        bodies = []
        for request in self.received(operation):
            envelope = parse_untrusted(request["xml"].encode(), max_depth=64)
            body = envelope.find(SOAP11_BODY)
            assert body is not None, request["xml"]
            child = body[0]
            assert schema_errors(child) == [], schema_errors(child)
            bodies.append(child)
        return bodies

    def close(self) -> None:
        self._control.close()


@contextmanager
def running_stub(**tls: Any) -> Iterator[StubHandle]:
    stub = DigimeldingStub()
    server = LoopbackServer(stub.app, **tls)
    server.start()
    handle = StubHandle(stub, server)
    try:
        yield handle
    finally:
        handle.close()
        server.stop()

"""Real webhook sinks on loopback scripted per path, a settable clock, and waiting on a
condition with a deadline (async; `tests.support.net.wait_until` is the sync twin).

A sink is a uvicorn server in a background thread, bound to a socket we open (so a test can
take a port first and start the sink on it later: "the receiver comes back").
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn

from tests.support.net import wait_until

DEADLINE = 10.0


class FakeClock:
    """A clock that moves only when told to; starts at the real time so signatures stay fresh
    for verifiers that use the real clock (the reference library does)."""

    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass(frozen=True)
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Seconds to wait before answering (a slow sink).
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


class LoopbackServer:
    """Any ASGI app served by uvicorn on 127.0.0.1 from a background thread."""

    def __init__(self, app: Any, port: int | None = None, **tls: Any) -> None:
        """`tls`: uvicorn's `ssl_*` options (certfile, keyfile, ca_certs, cert_reqs) for HTTPS."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port or 0))
        self.port: int = self._socket.getsockname()[1]
        self.scheme = "https" if tls else "http"
        config = uvicorn.Config(
            app,
            interface="asgi3",
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            **tls,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def url(self, path: str = "/hook") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + DEADLINE
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(DEADLINE)
        self._socket.close()


class ScriptedSink(LoopbackServer):
    """Answers each request on a path with the next scripted `Reply` (then 204), recording all.

    `OPTIONS` (the CloudEvents webhook validation handshake) is answered apart from the scripts:
    granted to the asking origin at the asked rate, unless `script_handshake` says otherwise."""

    def __init__(self, port: int | None = None, default: Reply | None = None, **tls: Any) -> None:
        #: The answer once a path's script is used up.
        self.default = default or Reply()
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._handshakes: dict[str, Reply] = {}
        self._lock = threading.Lock()
        super().__init__(self._app, port, **tls)

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path].extend(replies)

    def script_handshake(self, path: str, reply: Reply) -> None:
        """Answer every `OPTIONS` on `path` with `reply` instead of granting it."""
        with self._lock:
            self._handshakes[path] = reply

    def handshakes(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "OPTIONS" and (path is None or r.path == path)
            ]

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def posts(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r for r in self.requests if r.method == "POST" and (path is None or r.path == path)
            ]

    def wait_for_posts(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Block until at least `count` POSTs arrived (for tests that drive a separate process)."""
        wait_until(lambda: len(self.posts()) >= count, timeout=timeout, what=f"{count} webhooks")
        return self.posts()

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            self.requests.append(Received(scope["path"], headers, body, scope["method"]))
            if scope["method"] == "OPTIONS":
                reply = self._handshakes.get(scope["path"]) or _grant(headers)
            else:
                queue = self._scripts[scope["path"]]
                reply = queue.popleft() if queue else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        raw_headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": reply.body})


def _grant(headers: dict[str, str]) -> Reply:
    """A receiver's yes to the validation handshake: the asking origin, at the asked rate."""
    granted = {"allow": "POST, OPTIONS"}
    if "webhook-request-origin" in headers:
        granted["webhook-allowed-origin"] = headers["webhook-request-origin"]
        granted["webhook-allowed-rate"] = headers.get("webhook-request-rate", "*")
    return Reply(200, granted)


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE
) -> None:
    """Wait until `check()` holds, failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)

"""A real webhook receiver on loopback that records requests and answers from a script."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from tests.support.net import free_port, wait_until


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class Receiver:
    """Runs uvicorn in a thread. `script` answers are used in order, then `default`."""

    def __init__(self, default: Answer | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.default = default or Answer()
        self.script: deque[Answer] = deque()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _app(self, scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        request = Request(scope, receive)  # type: ignore[arg-type]
        body = await request.body()
        with self._lock:
            self.requests.append(
                Received(request.method, request.url.path, dict(request.headers), body)
            )
            answer = self.script.popleft() if self.script else self.default
        if answer.delay:
            await asyncio.sleep(answer.delay)
        response = Response(answer.body, status_code=answer.status, headers=answer.headers)
        await response(scope, receive, send)  # type: ignore[arg-type]

    def start(self) -> Receiver:
        self._thread.start()
        wait_until(lambda: self._server.started, timeout=10, what="receiver start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def posts(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def wait_for_posts(self, count: int, timeout: float = 15.0) -> list[Received]:
        wait_until(lambda: len(self.posts()) >= count, timeout=timeout, what=f"{count} webhooks")
        return self.posts()

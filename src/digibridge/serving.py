"""Running the gateway under uvicorn, with open event streams ended first when it stops.

uvicorn stops in this order: stop accepting, wait (up to `timeout_graceful_shutdown`) for the
responses in flight, then the application's lifespan shutdown. A Server-Sent Events response
never finishes by itself, so without a word from the server it would hold every stop for the
whole timeout. `GatewayServer` says that word (`on_stopping`) before uvicorn starts waiting.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, on_stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stopping = on_stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_stopping()
        await super().shutdown(sockets)


def run(app: Any, *, on_stopping: Callable[[], None], **options: Any) -> None:
    """`uvicorn.run(app, **options)` for one process, on a `GatewayServer`."""
    server = GatewayServer(uvicorn.Config(app, **options), on_stopping=on_stopping)
    # Ctrl-C: uvicorn has stopped gracefully by the time it re-raises it.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)

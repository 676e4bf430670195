"""Running the gateway under uvicorn, with open event streams ended first when it stops.

uvicorn stops in this order: stop accepting, wait (up to `timeout_graceful_shutdown`) for the
responses in flight, then the application's lifespan shutdown. A Server-Sent Events response
never finishes by itself, so without a word from the server it would hold every stop for the
whole timeout. `GatewayServer` says that word (`on_stopping`) before uvicorn starts waiting.
"""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from digibridge.app import drain
from digibridge.config import Settings


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, on_stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stopping = on_stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_stopping()
        await super().shutdown(sockets)


def run(
    app: Any,
    *,
    on_stopping: Callable[[], None],
    sockets: list[socket.socket] | None = None,
    **options: Any,
) -> None:
    """`uvicorn.run(app, **options)` for one process, on a `GatewayServer`; on `sockets`
    already bound (by the parent of `serve --workers`) when given."""
    server = GatewayServer(uvicorn.Config(app, **options), on_stopping=on_stopping)
    # Ctrl-C: uvicorn has stopped gracefully by the time it re-raises it.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve_app(app: FastAPI, settings: Settings, sockets: list[socket.socket] | None = None) -> None:
    """Serve the gateway `app` until SIGTERM (or Ctrl-C) has drained it; exit 0 then."""
    # uvicorn drains on SIGTERM, then raises the signal again for the handler it found: this
    # one, so a drained stop exits 0 (a stop before the server runs has nothing to drain).
    signal.signal(signal.SIGTERM, _exit_drained)
    run(
        app,
        # Not ready, event streams ended, no new deliveries claimed: before the listener closes.
        on_stopping=drain(app),
        sockets=sockets,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
        **app.state.wus_security.uvicorn_options(),
    )


def _exit_drained(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)

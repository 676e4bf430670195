"""Running the gateway under uvicorn, with open event streams ended first when it stops.

uvicorn stops in this order: stop accepting, wait (up to `timeout_graceful_shutdown`) for the
responses in flight, then the application's lifespan shutdown. A Server-Sent Events response
never finishes by itself, so without a word from the server it would hold every stop for the
whole timeout. `GatewayServer` says that word (`on_stopping`) before uvicorn starts waiting.

While it serves, uvicorn's main loop wakes every tenth of a second; `on_tick` is called each
time, so a worker of `serve --workers` can show its parent that its event loop still turns.
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
from digibridge.heartbeat import Heartbeat, write_stacks_on_signal


class GatewayServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_stopping: Callable[[], None],
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_stopping = on_stopping
        self._on_tick = on_tick

    async def on_tick(self, counter: int) -> bool:
        if self._on_tick is not None:
            self._on_tick()
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_stopping()
        await super().shutdown(sockets)


def run(
    app: Any,
    *,
    on_stopping: Callable[[], None],
    on_tick: Callable[[], None] | None = None,
    sockets: list[socket.socket] | None = None,
    **options: Any,
) -> None:
    """`uvicorn.run(app, **options)` for one process, on a `GatewayServer`; on `sockets`
    already bound (by the parent of `serve --workers`) when given."""
    server = GatewayServer(uvicorn.Config(app, **options), on_stopping=on_stopping, on_tick=on_tick)
    # Ctrl-C: uvicorn has stopped gracefully by the time it re-raises it.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve_app(
    app: FastAPI,
    settings: Settings,
    sockets: list[socket.socket] | None = None,
    *,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Serve the gateway `app` until SIGTERM (or Ctrl-C) has drained it; exit 0 then.
    `heartbeat`: a worker's, beaten while its event loop turns."""
    # uvicorn drains on SIGTERM, then raises the signal again for the handler it found: this
    # one, so a drained stop exits 0 (a stop before the server runs has nothing to drain).
    signal.signal(signal.SIGTERM, _exit_drained)
    write_stacks_on_signal()
    run(
        app,
        # Not ready, event streams ended, no new deliveries claimed: before the listener closes.
        on_stopping=_first(heartbeat.stopping, drain(app)) if heartbeat else drain(app),
        on_tick=heartbeat.beat if heartbeat else None,
        sockets=sockets,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
        **app.state.wus_security.uvicorn_options(),
    )


def _first(before: Callable[[], None], then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        before()
        then()

    return both


def _exit_drained(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)

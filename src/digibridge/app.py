"""Builds the ASGI application: routes, store, mappings and the delivery dispatcher.

Start-up order matters: the store is opened (migrations applied) and the mappings are loaded
before the gateway reports ready; deliveries left leased by a killed process go back to the queue
before the dispatcher starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digibridge.api import (
    admin,
    deliveries,
    event_types,
    events,
    health,
    problems,
    subscriptions,
)
from digibridge.api.auth import authorise
from digibridge.clock import Clock, SystemClock
from digibridge.config import ConfigError, Settings
from digibridge.delivery.dispatcher import Dispatcher
from digibridge.delivery.guard import SinkGuard
from digibridge.delivery.retention import Janitor
from digibridge.delivery.retry import RetryPolicy
from digibridge.mapping.engine import MappingSet
from digibridge.runtime import MappingsRefused, Runtime, load_checked_mappings
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import CircuitPolicy, Store
from digibridge.wus.inbound import DigileveringEndpoint, WusRoutes
from digibridge.wus.security import configure as configure_wus_security

log = structlog.get_logger("digibridge")
API_VERSION = "1.0.0"
WUS_PATH = "/wus/digilevering"


def open_store(settings: Settings, clock: Clock) -> Store:
    path = settings.sqlite_path
    if path is None:
        raise ConfigError(
            "store_url: PostgreSQL is not available in this version; use sqlite:///PATH"
        )
    return SqliteStore(path, clock=clock)


def load_mappings(settings: Settings) -> MappingSet:
    """The mapping set, only if it passes `digibridge check` (files and samples)."""
    try:
        return load_checked_mappings(settings)
    except MappingsRefused as exc:
        raise ConfigError(f"mappings do not pass check: {exc}") from None


def circuit_policy(settings: Settings) -> CircuitPolicy:
    return CircuitPolicy(
        window=timedelta(seconds=settings.circuit_window),
        min_requests=settings.circuit_min_requests,
        failure_ratio=settings.circuit_failure_ratio,
        pause=timedelta(seconds=settings.circuit_pause),
        disable_after=timedelta(seconds=settings.endpoint_disable_after),
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    if settings.retry_schedule:
        return RetryPolicy.parse(settings.retry_schedule)
    return RetryPolicy()


class ApiVersionHeader:
    """Adds `API-Version` to every response (NL API Design Rules)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"api-version", API_VERSION.encode())]
            await send(message)

        await self.app(scope, receive, send_with_version)


async def preflight(app: FastAPI) -> None:
    """Open and close the store once (migrations, lock), so a start-up problem is reported as
    one clear message before the server starts instead of a lifespan traceback."""
    runtime: Runtime = app.state.runtime
    await runtime.store.open()
    await runtime.store.close()


async def _reload_quietly(runtime: Runtime) -> None:
    """A reload on SIGHUP: a refused set is logged (`mappings_reload_refused`) and kept out."""
    with contextlib.suppress(MappingsRefused):
        await runtime.reload_mappings(trigger="SIGHUP")


def create_app(settings: Settings, *, clock: Clock | None = None) -> FastAPI:
    """The gateway as an ASGI app; nothing is opened until the lifespan starts."""
    clock = clock or SystemClock()
    store = open_store(settings, clock)
    mappings = load_mappings(settings)
    dispatcher = Dispatcher(
        store,
        policy=retry_policy(settings),
        clock=clock,
        owner=f"{socket.gethostname()}:{os.getpid()}",
        concurrency=settings.delivery_concurrency,
        per_endpoint=settings.delivery_endpoint_concurrency,
        request_timeout=settings.delivery_timeout,
        circuit=circuit_policy(settings),
        guard=SinkGuard(settings.sink_allowlist),
    )
    janitor = Janitor(
        store,
        keep=timedelta(days=settings.retention_days),
        interval=settings.cleanup_interval,
        clock=clock,
    )
    runtime = Runtime(
        settings=settings, store=store, clock=clock, mappings=mappings, dispatcher=dispatcher
    )
    wus_security = configure_wus_security(settings, clock)
    endpoint = DigileveringEndpoint(
        store=store,
        mappings=runtime.current_mappings,
        clock=clock,
        on_stored=dispatcher.wake,
        max_body_bytes=settings.max_body_bytes,
        max_depth=settings.max_xml_depth,
        security=wus_security.inbound,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        released = await store.release_leases()
        if released:
            log.info("leases_released", count=released)
        task = asyncio.create_task(dispatcher.run(), name="digibridge-dispatcher")
        cleanup = asyncio.create_task(janitor.run(), name="digibridge-cleanup")
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[object]] = set()

        def on_sighup() -> None:
            reload = loop.create_task(_reload_quietly(runtime), name="digibridge-reload")
            reloads.add(reload)
            reload.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        runtime.ready = True
        log.info("gateway_started", event_types=len(mappings.event_types))
        try:
            yield
        finally:
            runtime.ready = False
            loop.remove_signal_handler(signal.SIGHUP)
            await dispatcher.stop(timeout=settings.delivery_timeout)
            janitor.stop()
            for stopping in (task, cleanup):
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopping
            await store.close()
            log.info("gateway_stopped")

    async def require_api_access(request: Request) -> None:
        authorise(request, settings.api_keys)

    app = FastAPI(
        title="digibridge",
        version=API_VERSION,
        summary="DigiLevering and DigiMelding as NL GOV CloudEvents webhooks",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    #: `serve` reads the server TLS context (and whether uvicorn needs `TlsHttpProtocol`) here.
    app.state.wus_security = wus_security
    problems.install(app)
    app.include_router(health.router)
    for router in (
        subscriptions.router,
        event_types.router,
        events.router,
        admin.router,
        deliveries.router,
        deliveries.actions,
    ):
        app.include_router(router, dependencies=[Depends(require_api_access)])
    wus = WusRoutes(lambda: endpoint, settings.public_url, identify=wus_security.identify)
    app.add_api_route(WUS_PATH, wus.post, methods=["POST"], include_in_schema=False)
    app.add_api_route(WUS_PATH, wus.get, methods=["GET"], include_in_schema=False)
    app.add_middleware(ApiVersionHeader)
    return app

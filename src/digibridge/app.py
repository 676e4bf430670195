"""Builds the ASGI application: routes, store, mappings and the delivery dispatcher.

Start-up order matters: the store is opened (migrations applied) and the mappings are loaded
before the gateway reports ready; deliveries left leased by a killed process go back to the queue
before the dispatcher starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digibridge.api import (
    admin,
    asyncapi,
    deliveries,
    event_types,
    events,
    health,
    openapi,
    problems,
    subscriptions,
    terugmeldingen,
)
from digibridge.api.auth import (
    ADMIN_SCOPE,
    EVENTS_READ,
    SUBSCRIPTIONS_READ,
    SUBSCRIPTIONS_WRITE,
    TERUGMELDINGEN_WRITE,
    ApiAuthentication,
    Authenticator,
    require_scope,
    scope_by_method,
)
from digibridge.api.media_types import require_json_body
from digibridge.clock import Clock, SystemClock
from digibridge.config import ConfigError, Settings
from digibridge.delivery.dispatcher import Dispatcher
from digibridge.delivery.dmks_workers import DmksWorkers, dmks_workers
from digibridge.delivery.guard import SinkGuard
from digibridge.delivery.retention import Janitor
from digibridge.delivery.retry import RetryPolicy
from digibridge.mapping.engine import MappingSet
from digibridge.metrics import Metrics, timed
from digibridge.otel import spans_for
from digibridge.runtime import MappingsRefused, Runtime, load_checked_mappings
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import CircuitPolicy, Store, process_owner
from digibridge.tracing import Spans, TraceMiddleware
from digibridge.wus.inbound import DigileveringEndpoint
from digibridge.wus.routes import InboundSoap, WsdlRoute
from digibridge.wus.security import configure as configure_wus_security
from digibridge.wus.tls import PeerIdentity

if TYPE_CHECKING:
    from digibridge.store.postgres import PostgresStore

log = structlog.get_logger("digibridge")
API_VERSION = "1.0.0"
WUS_PATH = "/wus/digilevering"


def open_store(
    settings: Settings, clock: Clock, *, worker: bool = False
) -> SqliteStore | PostgresStore:
    """The store `store_url` names (not opened yet): a SQLite file (shared with the other
    workers of `serve --workers` when `worker`), or a PostgreSQL database shared with other
    instances. The PostgreSQL store (and its driver) is imported only for PostgreSQL."""
    path = settings.sqlite_path
    if path is None:
        from digibridge.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(
            settings.store_url,
            clock=clock,
            pool_size=settings.store_pool_size,
            connect_timeout=settings.store_connect_timeout,
        )
    return SqliteStore(path, clock=clock, shared=worker)


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


def include_api_routers(app: FastAPI, authenticator: Authenticator) -> None:
    """The `/v1` routers behind `authenticator`, each with the scope its route family needs
    (docs/security.md, "REST API access"); the event catalogue is public, like the API
    documents."""
    app.state.authenticator = authenticator
    app.add_middleware(ApiAuthentication, authenticator=authenticator)
    manage = Depends(scope_by_method(read=SUBSCRIPTIONS_READ, write=SUBSCRIPTIONS_WRITE))
    for router, access in (
        (subscriptions.router, [manage]),
        (event_types.router, []),
        (events.router, [Depends(require_scope(EVENTS_READ))]),
        (admin.router, [Depends(require_scope(ADMIN_SCOPE))]),
        (deliveries.router, [manage]),
        (deliveries.actions, [manage]),
    ):
        app.include_router(router, dependencies=[*access, Depends(require_json_body)])


def include_terugmeldingen(app: FastAPI, runtime: Runtime) -> DmksWorkers:
    """The reverse path: `/v1/terugmeldingen` (scope `terugmeldingen:write`) and the workers
    that send terugmeldingen to DigiMelding and poll their statuses (the lifespan runs them).
    The router reads the reverse mappings and wakes the outbox through `app.state`."""
    settings = runtime.settings
    dmks = dmks_workers(settings, runtime.store, runtime.clock, runtime.events_stored)
    dmks.outbox.on_status = dmks.poller.on_status = runtime.metrics.terugmelding_status
    app.state.reverse_mappings = dmks.reverse
    app.state.dmks_outbox = dmks.outbox
    app.include_router(
        terugmeldingen.router,
        dependencies=[Depends(require_scope(TERUGMELDINGEN_WRITE)), Depends(require_json_body)],
    )
    return dmks


def install_documents(app: FastAPI, settings: Settings) -> None:
    """`/v1/openapi.json` (and `/v1/docs`) and `/v1/asyncapi.json`, open to everyone."""
    contact = {
        "name": settings.api_contact_name,
        "email": settings.api_contact_email,
        "url": settings.api_contact_url or settings.base_url,
    }
    openapi.install(app, contact=contact)
    asyncapi.install(app, contact=contact)


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


def owns_store(settings: Settings, *, worker: bool) -> bool:
    """Whether this process has the store to itself, so that every lease in it is a dead
    process's: a SQLite file, not shared with other workers (their parent released the dead
    leases before it started them)."""
    return settings.sqlite_path is not None and not worker


async def prepare_store(store: Store, runtime: Runtime, *, owned: bool) -> None:
    """After the store opened: work other instances commit wakes this one (PostgreSQL's
    LISTEN/NOTIFY, a shared SQLite file's data version; polling stays the fallback); and, in a
    store this process `owned` alone, deliveries leased by a process that was killed go back
    to the queue. On a shared store the leases of live instances must stand (a dead one's
    expire by themselves)."""
    store.on_wake(runtime.events_stored)
    if not owned:
        return
    released = await store.release_leases()
    if released:
        log.info("leases_released", count=released)


def make_dispatcher(
    settings: Settings, store: Store, clock: Clock, metrics: Metrics, spans: Spans
) -> Dispatcher:
    """This process's dispatcher, named by host and pid (its leases carry the name)."""
    return Dispatcher(
        store,
        policy=retry_policy(settings),
        clock=clock,
        owner=process_owner(),
        concurrency=settings.delivery_concurrency,
        per_endpoint=settings.delivery_endpoint_concurrency,
        request_timeout=settings.delivery_timeout,
        lease=None
        if settings.delivery_lease is None
        else timedelta(seconds=settings.delivery_lease),
        circuit=circuit_policy(settings),
        guard=SinkGuard(settings.sink_allowlist),
        origin=settings.request_origin,
        metrics=metrics,
        spans=spans,
    )


def create_app(settings: Settings, *, clock: Clock | None = None, worker: bool = False) -> FastAPI:
    """The gateway as an ASGI app; nothing is opened until the lifespan starts. `worker`: one
    of the processes of `serve --workers`, sharing the store with the others."""
    clock = clock or SystemClock()
    metrics, spans = Metrics(), spans_for(settings)
    store = timed(open_store(settings, clock, worker=worker), metrics)
    mappings = load_mappings(settings)
    dispatcher = make_dispatcher(settings, store, clock, metrics, spans)
    janitor = Janitor(
        store,
        keep=timedelta(days=settings.retention_days),
        interval=settings.cleanup_interval,
        clock=clock,
    )
    runtime = Runtime(
        settings=settings,
        store=store,
        clock=clock,
        mappings=mappings,
        dispatcher=dispatcher,
        metrics=metrics,
    )
    wus_security = configure_wus_security(settings, clock)
    endpoint = DigileveringEndpoint(
        store=store,
        mappings=runtime.current_mappings,
        clock=clock,
        on_stored=runtime.events_stored,
        max_body_bytes=settings.max_body_bytes,
        max_depth=settings.max_xml_depth,
        security=wus_security.inbound,
        metrics=metrics,
        spans=spans,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        await prepare_store(store, runtime, owned=owns_store(settings, worker=worker))
        task = asyncio.create_task(dispatcher.run(), name="digibridge-dispatcher")
        await dmks.start(store, release_leases=owns_store(settings, worker=worker))
        cleanup = asyncio.create_task(janitor.run(), name="digibridge-cleanup")
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[object]] = set()

        def on_sighup() -> None:
            reload = loop.create_task(_reload_quietly(runtime), name="digibridge-reload")
            reloads.add(reload)
            reload.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        runtime.started()
        log.info("gateway_started", event_types=len(mappings.event_types))
        try:
            yield
        finally:
            runtime.stopping()
            loop.remove_signal_handler(signal.SIGHUP)
            await dmks.stop()
            await dispatcher.stop(timeout=settings.shutdown_timeout)
            janitor.stop()
            for stopping in (task, cleanup):
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopping
            await store.close()
            spans.close()
            log.info("gateway_stopped")

    app = FastAPI(
        title="digibridge",
        version=API_VERSION,
        summary="DigiLevering and DigiMelding as NL GOV CloudEvents webhooks",
        # Served by api/openapi.py: the generated document brought to the NL API Design Rules.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # No trailing slashes (design rules): `/v1/subscriptions/` is a 404, not a redirect.
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    #: `serve` reads the server TLS context (and whether uvicorn needs `TlsHttpProtocol`) here.
    app.state.wus_security = wus_security
    problems.install(app)
    app.add_api_route(WUS_PATH, WsdlRoute(settings.public_url).get, include_in_schema=False)
    install_documents(app, settings)
    app.include_router(health.router)
    include_api_routers(app, Authenticator.from_settings(settings))
    dmks = include_terugmeldingen(app, runtime)
    install_middleware(app, endpoint, wus_security.identify)
    return app


def install_middleware(
    app: FastAPI,
    endpoint: DigileveringEndpoint,
    identify: Callable[[Scope], PeerIdentity] | None,
) -> None:
    """`API-Version` on every answer; every request's `traceparent` read (so the trace is known
    to everything inside); and, outermost, a SOAP message (the hot path) answered before the
    framework's layers, which do the same for it (wus/routes.py)."""
    app.add_middleware(ApiVersionHeader)
    app.add_middleware(TraceMiddleware)
    app.add_middleware(
        InboundSoap,
        path=WUS_PATH,
        endpoint=endpoint,
        api_version=API_VERSION,
        identify=identify,
    )


def drain(app: FastAPI) -> Callable[[], None]:
    """What `serve` calls on SIGTERM before the listener closes: `/readyz` answers 503 from
    now on, open event streams end, and the dispatcher claims nothing more and gives its sends
    `shutdown_timeout` seconds (then their leases go back to the queue), while the server
    finishes the SOAP requests in flight."""
    runtime: Runtime = app.state.runtime
    stops: set[asyncio.Task[None]] = set()

    def begin() -> None:
        log.info("gateway_draining", timeout=runtime.settings.shutdown_timeout)
        runtime.stopping()
        stop = asyncio.get_running_loop().create_task(
            runtime.dispatcher.stop(timeout=runtime.settings.shutdown_timeout),
            name="digibridge-drain",
        )
        stops.add(stop)
        stop.add_done_callback(stops.discard)

    return begin

"""Prometheus metrics of one gateway (`GET /metrics`, docs/operations.md).

Every app has its own `CollectorRegistry`, so several gateways in one process (tests) do not
collide. Labels are bounded: never an id (message, event, delivery, subscription); values that
come from outside (a registry code, an event type) are capped at `MAX_LABEL_VALUES` distinct
values, the rest counted as `other`. Queue depth, dead letters and circuit states are read from
the store when scraped, so they are right for every instance sharing it.

The workers of `serve --workers` keep their metrics in files (prometheus_client's multiprocess
mode: their parent sets `PROMETHEUS_MULTIPROC_DIR` before it starts them), and `/metrics` on any
worker adds up all of them, so a scrape sees the gateway, not whichever worker answered.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from digibridge import __version__
from digibridge.store.types import CircuitState, QueueStats, Store

#: Where the workers of `serve --workers` keep their metrics (prometheus_client reads it).
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: Distinct values one outside-controlled label may take before the rest count as `other`.
MAX_LABEL_VALUES = 64
OTHER = "other"
#: Inbound results.
ACCEPTED, DUPLICATE, REFUSED = "accepted", "duplicate", "refused"
#: Terugmelding status kinds (`terugmelding_status`).
TRANSPORT, DMKS = "transport", "dmks"
_TERUGMELDING_STATUSES = {
    TRANSPORT: frozenset({"ontvangen", "verzonden", "mislukt"}),
    DMKS: frozenset(
        {
            "Gemeld",
            "In behandeling",
            "Ingepland",
            "Onvoldoende informatie",
            "Verkeerde Bronhouder",
            "Afgehandeld",
            "Ingetrokken",
        }
    ),
}
# Seconds: ingest is a parse, a mapping and a durable commit; a webhook is a network round trip.
_INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class BoundedLabel:
    """The first `limit` distinct values pass; later new ones become `other`."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return "unknown"
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


def status_class(status: int | None) -> str:
    """`2xx`…`5xx`, or `none` when the sink never answered (timeout, refused, connection)."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


class Metrics:
    """The gateway's metrics; the `record`-style methods are what the code paths call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        #: Set in the workers of `serve --workers` (see the module's docstring).
        self._shared_dir = os.environ.get(MULTIPROCESS_DIR)
        r = self.registry
        self._registry_label = BoundedLabel()
        self._type_label = BoundedLabel()
        # How the workers' values of a gauge combine: the store's figures are read afresh by
        # whichever worker is scraped (the most recent is right), readiness is the least of the
        # live workers'.
        Gauge(
            "digibridge_build_info",
            "Version of this gateway.",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        ).labels(__version__).set(1)
        self.ready = Gauge(
            "digibridge_ready",
            "1 while ready, 0 while starting or draining.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.inbound = Counter(
            "digibridge_inbound_messages",
            "Inbound DigiLevering messages by registry, result and DK fault code.",
            ["registry", "result", "fault_code"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "digibridge_ingest_duration_seconds",
            "Inbound SOAP request handling, body read to answer (commit included).",
            ["result"],
            buckets=_INGEST_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "digibridge_events",
            "Events stored from inbound messages, by CloudEvents type.",
            ["type"],
            registry=r,
        )
        self.deliveries = Counter(
            "digibridge_deliveries",
            "Webhook delivery attempts by outcome (succeeded, retry, dead), sink answer class "
            "and content mode.",
            ["result", "status_class", "mode"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "digibridge_delivery_duration_seconds",
            "One webhook request, connection to answer.",
            ["result"],
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "digibridge_delivery_queue",
            "Deliveries waiting (pending) and of those being sent (in_flight).",
            ["state"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.oldest_pending = Gauge(
            "digibridge_delivery_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none).",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.dead_letters = Gauge(
            "digibridge_dead_letters",
            "Deliveries given up on, kept until handled.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.circuits = Gauge(
            "digibridge_circuits",
            "Webhook endpoints by circuit breaker state.",
            ["state"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.terugmeldingen = Counter(
            "digibridge_terugmeldingen",
            "Terugmelding status changes by kind (transport, dmks) and status.",
            ["kind", "status"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "digibridge_store_operation_duration_seconds",
            "Store operations by name, including the wait for the store's connection.",
            ["operation"],
            buckets=_STORE_BUCKETS,
            registry=r,
        )

    # -- what the code paths call ------------------------------------------------------------

    def inbound_message(
        self, *, registry: str | None, result: str, seconds: float, fault_code: str = ""
    ) -> None:
        """One inbound SOAP request answered (`ACCEPTED`, `DUPLICATE` or `REFUSED`)."""
        self.inbound.labels(self._registry_label(registry), result, fault_code).inc()
        self.ingest_seconds.labels(result).observe(seconds)

    def events_stored(self, types: Iterable[str]) -> None:
        for event_type in types:
            self.events.labels(self._type_label(event_type)).inc()

    def delivery(self, *, result: str, status: int | None, mode: str, seconds: float) -> None:
        """One webhook request's outcome (a batch counts once)."""
        self.deliveries.labels(result, status_class(status), mode).inc()
        self.delivery_seconds.labels(result).observe(seconds)

    def terugmelding_status(self, kind: str, status: str) -> None:
        """A terugmelding reached `status`: `kind` is `TRANSPORT` (`ontvangen`, `verzonden`,
        `mislukt`) or `DMKS` (the registry's DMKS status, e.g. `In behandeling`). Unknown values
        count as `other`."""
        known = _TERUGMELDING_STATUSES.get(kind)
        if known is None:
            raise ValueError(f"kind must be {TRANSPORT!r} or {DMKS!r}, not {kind!r}")
        self.terugmeldingen.labels(kind, status if status in known else OTHER).inc()

    def store_operation(self, operation: str, seconds: float) -> None:
        self.store_seconds.labels(operation).observe(seconds)

    # -- scraping ----------------------------------------------------------------------------

    def set_queue(self, stats: QueueStats, now: datetime) -> None:
        self.queue.labels("pending").set(stats.pending)
        self.queue.labels("in_flight").set(stats.in_flight)
        oldest = stats.oldest_pending_since
        self.oldest_pending.set(max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
        self.dead_letters.set(stats.dead)
        for state in CircuitState:
            self.circuits.labels(state.value).set(stats.circuits.get(state, 0))

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type, in the format `accept` asks for: the Prometheus
        text format 0.0.4 by default, OpenMetrics when asked."""
        encoder, content_type = choose_encoder(accept or "")
        if self._shared_dir is None:
            return encoder(self.registry), content_type
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker, self._shared_dir)  # type: ignore[no-untyped-call]
        return encoder(every_worker), content_type


class TimedStore:
    """A `Store` whose public coroutine methods are timed into `store_operation`: one wrapper
    for every backend, so the PostgreSQL store is measured the same way."""

    def __init__(self, store: Store, observe: Callable[[str, float], None]) -> None:
        self._store = store
        self._observe = observe

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        method = cast(Callable[..., Awaitable[Any]], attribute)
        observe = self._observe

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                observe(name, time.perf_counter() - started)

        return timed


def timed(store: Store, metrics: Metrics) -> Store:
    """`store`, its operations timed into `metrics`."""
    return cast(Store, TimedStore(store, metrics.store_operation))

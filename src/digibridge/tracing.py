"""W3C Trace Context: `traceparent` accepted on every request, generated for inbound SOAP when
absent, carried into events as the CloudEvents distributed-tracing extension and passed on to
webhooks.

One trace runs from the sender through the stored event to every delivery: the trace id stays,
each hop gets its own parent (span) id. The extension is added where an emitted event becomes a
stored body (`with_trace`), after mapping, so the mapping output and the event id do not depend
on it; a re-sent message is a duplicate and stores nothing, so its new trace does not reach the
events. Each hop is a `Spans.span`: without export (`LocalSpans`) just a new parent id; with the
optional OpenTelemetry export (`otel.py`, the `otel` extra) a recorded span whose id the next hop
names as its parent.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from digibridge.events.types import CloudEvent

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACESTATE_MAX = 512
_TRACESTATE_MEMBERS = 32
_TRACESTATE_CHARACTERS = re.compile(r"^[\x20-\x7e]*$")
_NAME = b'"traceparent"'

_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "digibridge_trace", default=None
)


@dataclass(frozen=True)
class TraceContext:
    """One position in a trace: the trace, the span that made this hop, the sampling flags."""

    trace_id: str
    parent_id: str
    flags: str = "01"
    #: Vendor data passed along unchanged (`tracestate`), when it was valid.
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The next hop of the same trace: a new parent id, the rest kept."""
        return dataclasses.replace(self, parent_id=_span_id())

    def headers(self) -> dict[str, str]:
        headers = {"traceparent": self.traceparent}
        if self.tracestate:
            headers["tracestate"] = self.tracestate
        return headers


def new_trace() -> TraceContext:
    """A trace started here (inbound SOAP without `traceparent`)."""
    return TraceContext(trace_id=_random_hex(128), parent_id=_span_id())


def parse(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The context of a `traceparent` header; None when absent or invalid (W3C: then start a new
    trace, never fail the request). A newer version is read by its version-00 fields."""
    if not traceparent:
        return None
    value = traceparent.strip()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    if version == "00" and len(value) != 55:
        return None
    if version != "00" and len(value) > 55 and value[55] != "-":
        return None
    return TraceContext(trace_id, parent_id, flags, _valid_tracestate(tracestate))


def _valid_tracestate(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    members = [member for member in value.split(",") if member.strip()]
    if (
        not members
        or len(value) > _TRACESTATE_MAX
        or len(members) > _TRACESTATE_MEMBERS
        or not _TRACESTATE_CHARACTERS.match(value)
        or any("=" not in member for member in members)
    ):
        return None
    return value


def _random_hex(bits: int) -> str:
    """A random id that is not all zeros (the W3C rule). The `random` module, not `secrets`,
    as OpenTelemetry's SDK does: ids must be unique, not secret, and `os.urandom` was a
    thirtieth of a webhook send's CPU time in the profile."""
    value = random.getrandbits(bits)
    return f"{value:0{bits // 4}x}" if value else _random_hex(bits)


def _span_id() -> str:
    return _random_hex(64)


#: Span attribute values (OpenTelemetry's primitive types).
SpanAttributes = Mapping[str, str | int | float | bool]


class Spans(Protocol):
    """Where the hops of a trace are recorded."""

    def span(
        self, name: str, parent: TraceContext, attributes: SpanAttributes
    ) -> contextlib.AbstractContextManager[TraceContext]:
        """A hop named `name` under `parent`, for the duration of the block; the context it
        gives is what the next hop (the stored event, the webhook) names as its parent."""
        ...

    def close(self) -> None:
        """Send what is still buffered (at shutdown)."""
        ...


class LocalSpans:
    """No export: a hop is a new parent id in the same trace."""

    @contextlib.contextmanager
    def span(
        self, name: str, parent: TraceContext, attributes: SpanAttributes
    ) -> Iterator[TraceContext]:
        yield parent.child()

    def close(self) -> None:
        return None


def current() -> TraceContext | None:
    """The trace of the request being handled, if it came with a valid `traceparent`."""
    return _current.get()


def with_trace(event: CloudEvent, trace: TraceContext) -> CloudEvent:
    """`event` (and its informatiearm form) with the distributed-tracing extension set."""
    extensions: dict[str, Any] = {**event.extensions, "traceparent": trace.traceparent}
    if trace.tracestate:
        extensions["tracestate"] = trace.tracestate
    informatiearm = event.informatiearm
    return dataclasses.replace(
        event,
        extensions=extensions,
        informatiearm=None if informatiearm is None else with_trace(informatiearm, trace),
    )


def of_body(body: bytes) -> TraceContext | None:
    """The trace a stored event body carries (its `traceparent` and `tracestate` attributes).

    Bodies without the word are not parsed, so events stored before tracing cost nothing."""
    if _NAME not in body:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, Mapping):
        return None
    traceparent, tracestate = document.get("traceparent"), document.get("tracestate")
    return parse(
        traceparent if isinstance(traceparent, str) else None,
        tracestate if isinstance(tracestate, str) else None,
    )


def of_request(scope: Scope) -> TraceContext | None:
    """The trace an HTTP request's `traceparent` and `tracestate` headers carry, if valid."""
    traceparent = tracestate = None
    for name, value in scope["headers"]:
        if name == b"traceparent":
            traceparent = value.decode("latin-1")
        elif name == b"tracestate":
            tracestate = value.decode("latin-1")
    return parse(traceparent, tracestate)


class TraceMiddleware:
    """Reads `traceparent`/`tracestate` of every HTTP request into `current()`, and binds its
    `trace_id` to the log context for the request's log lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace = of_request(scope)
        if trace is None:
            await self.app(scope, receive, send)
            return
        token = _current.set(trace)
        try:
            with structlog.contextvars.bound_contextvars(trace_id=trace.trace_id):
                await self.app(scope, receive, send)
        finally:
            _current.reset(token)

"""Optional OpenTelemetry export of the trace hops (`pip install 'digibridge[otel]'`).

Off unless `otel_endpoint` is set; then every inbound message (`digilevering.ingest`) and every
webhook request (`webhook.send`) is a span sent over OTLP/HTTP, in the trace the sender's
`traceparent` began (or digibridge began), and the span's own id is the parent the stored event
and the webhook name. The SDK is imported only here and only when asked for, so it stays an
extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from digibridge.config import ConfigError, Settings
from digibridge.tracing import LocalSpans, SpanAttributes, Spans, TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter


class OtelSpans:
    """Spans recorded by an OpenTelemetry `TracerProvider`."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("digibridge")

    @contextlib.contextmanager
    def span(
        self, name: str, parent: TraceContext, attributes: SpanAttributes
    ) -> Iterator[TraceContext]:
        from opentelemetry import trace  # noqa: PLC0415 - the extra, loaded with the provider

        remote = trace.SpanContext(
            trace_id=int(parent.trace_id, 16),
            span_id=int(parent.parent_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(parent.flags, 16)),
            trace_state=trace.TraceState.from_header([parent.tracestate])
            if parent.tracestate
            else None,
        )
        context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        with self._tracer.start_as_current_span(
            name, context=context, attributes=dict(attributes)
        ) as span:
            own = span.get_span_context()
            yield TraceContext(
                parent.trace_id,
                format(own.span_id, "016x"),
                format(int(own.trace_flags), "02x"),
                parent.tracestate,
            )

    def close(self) -> None:
        self._provider.shutdown()


def provider_with(exporter: SpanExporter, service_name: str) -> TracerProvider:
    """A provider that batches spans to `exporter`, naming this service."""
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def spans_for(settings: Settings) -> Spans:
    """OTLP export when `otel_endpoint` is set (ConfigError if the extra is missing), else
    local hops only."""
    if settings.otel_endpoint is None:
        return LocalSpans()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
    except ImportError:
        raise ConfigError(
            "otel_endpoint: OpenTelemetry export needs the otel extra "
            "(pip install 'digibridge[otel]')"
        ) from None
    exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint)
    return OtelSpans(provider_with(exporter, settings.otel_service_name))

"""OpenTelemetry export (the `otel` extra): the hops of a trace become spans, in the sender's
trace, and the stored event and the webhook name those spans as their parents."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from digibridge.clock import SystemClock
from digibridge.config import load_settings
from digibridge.otel import OtelSpans, spans_for
from digibridge.runtime import load_checked_mappings
from digibridge.store.sqlite import SqliteStore
from digibridge.tracing import LocalSpans, TraceContext, parse
from digibridge.wus.inbound import DigileveringEndpoint
from tests.support.soap import envelope, headers_for, sample, with_kenmerk

PARENT = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01", "k=v")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> OtelSpans:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelSpans(provider)


def test_a_hop_is_a_span_in_the_senders_trace_and_names_itself_as_parent(
    spans: OtelSpans, exporter: InMemorySpanExporter
) -> None:
    with spans.span("webhook.send", PARENT, {"digibridge.delivery.id": "d-1"}) as hop:
        pass
    [span] = exporter.get_finished_spans()
    assert span.name == "webhook.send"
    assert format(span.context.trace_id, "032x") == PARENT.trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT.parent_id
    assert hop.trace_id == PARENT.trace_id
    assert hop.parent_id == format(span.context.span_id, "016x")
    assert hop.tracestate == "k=v"
    assert span.attributes == {"digibridge.delivery.id": "d-1"}


def test_a_failing_hop_is_recorded_as_an_error(
    spans: OtelSpans, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(RuntimeError), spans.span("digilevering.ingest", PARENT, {}):
        raise RuntimeError("store gone")
    [span] = exporter.get_finished_spans()
    assert not span.status.is_ok


def test_export_is_off_by_default_and_on_with_an_endpoint() -> None:
    assert isinstance(spans_for(load_settings()), LocalSpans)
    configured = spans_for(load_settings(otel_endpoint="http://127.0.0.1:4318/v1/traces"))
    assert isinstance(configured, OtelSpans)
    configured.close()


def test_the_stored_event_names_the_ingest_span_as_its_parent(
    tmp_path: Path, spans: OtelSpans, exporter: InMemorySpanExporter
) -> None:
    settings = load_settings()
    mappings = load_checked_mappings(settings)
    store = SqliteStore(tmp_path / "digibridge.db")
    endpoint = DigileveringEndpoint(
        store=store,
        mappings=lambda: mappings,
        clock=SystemClock(),
        on_stored=lambda: None,
        max_body_bytes=settings.max_body_bytes,
        max_depth=settings.max_xml_depth,
        spans=spans,
    )
    document = with_kenmerk(sample("brp-verhuizing.xml"))

    async def scenario() -> bytes:
        await store.open()
        try:
            answer = await endpoint.handle(
                envelope(document),
                content_type=headers_for(document)["Content-Type"],
                soap_action=headers_for(document)["SOAPAction"],
                trace=PARENT,
            )
            assert answer.status == 200
            [event] = await store.list_events(after=0, limit=10)
            return event.body
        finally:
            await store.close()

    body = json.loads(asyncio.run(scenario()))
    [span] = exporter.get_finished_spans()
    assert span.name == "digilevering.ingest"
    assert span.attributes is not None
    assert span.attributes["digibridge.registry"] == "BRP"
    stored = parse(body["traceparent"], body["tracestate"])
    assert stored is not None
    assert stored.trace_id == PARENT.trace_id
    assert stored.parent_id == format(span.context.span_id, "016x")

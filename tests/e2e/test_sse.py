"""`GET /v1/events/stream` against the gateway as it runs: events arrive as SOAP messages do,
a dropped stream resumes with `Last-Event-ID` without loss or repeats, heartbeats, filters,
the stream cap, shutdown.

The module's gateway polls the store, and sends heartbeats, only every 60 s, so an event that
arrives sooner was pushed by the in-process wake-up; a subscription that takes every event makes
the inbound side signal each store. A second gateway polls often and beats fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.sinks import Reply, ScriptedSink
from tests.support.soap import post_levering, sample, with_kenmerk
from tests.support.sse import SseStream

MAX_STREAMS = 3


@pytest.fixture(scope="module")
def sink() -> Iterator[ScriptedSink]:
    # Grants the webhook validation handshake and accepts every delivery.
    server = ScriptedSink(default=Reply(200, headers={"WebHook-Allowed-Origin": "*"}))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, sink: ScriptedSink
) -> Iterator[GatewayProcess]:
    env = {
        "DIGIBRIDGE_SSE_HEARTBEAT": "60",
        "DIGIBRIDGE_SSE_POLL_INTERVAL": "60",
        "DIGIBRIDGE_SSE_MAX_STREAMS": str(MAX_STREAMS),
    }
    process = GatewayProcess(tmp_path_factory.mktemp("sse"), env=env).start()
    created = httpx.post(f"{process.url}/v1/subscriptions", json={"sink": sink.url()})
    assert created.status_code == 201, created.text
    yield process
    process.stop()


@pytest.fixture(scope="module")
def polling_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """No subscriptions (so storing wakes nobody), a poll every 0.2 s, a heartbeat every 0.3 s."""
    env = {"DIGIBRIDGE_SSE_POLL_INTERVAL": "0.2", "DIGIBRIDGE_SSE_HEARTBEAT": "0.3"}
    process = GatewayProcess(tmp_path_factory.mktemp("sse-polling"), env=env).start()
    yield process
    process.stop()


def stream_url(gateway: GatewayProcess) -> str:
    return f"{gateway.url}/v1/events/stream"


def end_of_feed(gateway: GatewayProcess) -> str:
    response = httpx.get(f"{gateway.url}/v1/events", params={"limit": 1000})
    while "next" in response.json()["_links"]:
        response = httpx.get(gateway.url + response.json()["_links"]["next"]["href"])
    cursor: str = response.json()["nextCursor"]
    return cursor


def post_new(gateway: GatewayProcess, name: str) -> list[str]:
    return post_levering(gateway.wus_url, with_kenmerk(sample(name)))


def ids(frames: list[object]) -> list[str]:
    return [frame.cloudevent["id"] for frame in frames]  # type: ignore[attr-defined]


def test_events_arrive_as_messages_are_posted(gateway: GatewayProcess) -> None:
    with SseStream(stream_url(gateway)) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.response.headers["cache-control"] == "no-store"
        opening = stream.frame()
        assert opening is not None
        assert opening.retry == 3000
        assert opening.id == end_of_feed(gateway)  # a stream without a cursor starts now

        for name in ("brp-verhuizing.xml", "bag-ingetrokken.xml"):
            started = time.monotonic()
            posted = post_new(gateway, name)
            frames = stream.events(len(posted), deadline=10)
            assert time.monotonic() - started < 10  # well before the 60 s poll or heartbeat
            assert ids(frames) == posted
            for frame in frames:
                assert frame.event == "cloudevent"
                assert len(frame.data) == 1  # the JSON on one line
                event = frame.cloudevent
                assert event is not None
                assert event["specversion"] == "1.0"
                assert len(event["sequence"]) == 20
                # The id is the event's cursor: the feed continues right after it.
                feed = httpx.get(f"{gateway.url}/v1/events", params={"after": frame.id, "limit": 1})
                assert feed.status_code == 200
                following = [e["id"] for e in feed.json()["events"]]
                assert following == posted[posted.index(event["id"]) + 1 :][:1]


def test_a_dropped_stream_resumes_without_loss_or_repeats(gateway: GatewayProcess) -> None:
    start = end_of_feed(gateway)
    first = post_new(gateway, "bag-ingetrokken.xml")  # four events
    stream = SseStream(stream_url(gateway), params={"after": start})
    read = ids(stream.events(2))
    resume_from = stream.last_event_id
    stream.close()  # the connection drops mid-message

    later = post_new(gateway, "nhr-nieuwe-inschrijving.xml") + post_new(
        gateway, "brp-overlijden.xml"
    )
    # As EventSource reconnects: the same URL (its `after` too) plus Last-Event-ID.
    assert resume_from is not None
    with SseStream(
        stream_url(gateway), params={"after": start}, headers={"Last-Event-ID": resume_from}
    ) as resumed:
        rest = ids(resumed.events(len(first) - 2 + len(later)))
        marker = post_new(gateway, "nhr-update.xml")
        # Nothing more before the next new event: no repeats.
        assert ids(resumed.events(len(marker))) == marker

    assert read + rest == first + later


def test_heartbeats_keep_a_quiet_stream_alive(polling_gateway: GatewayProcess) -> None:
    with SseStream(stream_url(polling_gateway)) as stream:
        beat = stream.heartbeat(deadline=5)
        assert beat.comment == "heartbeat"
        assert stream.heartbeat(deadline=5).comment == "heartbeat"


def test_types_and_source_filter_the_stream(gateway: GatewayProcess) -> None:
    start = end_of_feed(gateway)
    with (
        SseStream(
            stream_url(gateway), params={"after": start, "types": "nl.brp.persoon-verhuisd"}
        ) as by_type,
        SseStream(stream_url(gateway), params={"after": start}) as everything,
    ):
        post_new(gateway, "nhr-update.xml")
        post_new(gateway, "bag-ingetrokken.xml")
        (verhuisd,) = post_new(gateway, "brp-verhuizing.xml")
        all_events = [frame.cloudevent for frame in everything.events(6)]
        # The filtered stream skips the others: its first event is the move.
        assert ids(by_type.events(1)) == [verhuisd]
    nhr_source = next(e["source"] for e in all_events if e and e["type"].startswith("nl.nhr."))

    with SseStream(stream_url(gateway), params={"after": start, "source": nhr_source}) as nhr:
        (frame,) = nhr.events(1)
        assert frame.cloudevent is not None
        assert frame.cloudevent["source"] == nhr_source
        assert frame.cloudevent["type"].startswith("nl.nhr.")


def test_streams_are_capped_and_a_closed_one_frees_its_place(gateway: GatewayProcess) -> None:
    streams = [SseStream(stream_url(gateway)) for _ in range(MAX_STREAMS)]
    try:
        assert all(s.response.status_code == 200 for s in streams)
        refused = httpx.get(stream_url(gateway))
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["status"] == 503
        # The pull feed is not a stream: it still answers.
        assert httpx.get(f"{gateway.url}/v1/events", params={"limit": 1}).status_code == 200

        streams.pop().close()  # the client goes away

        def opens() -> bool:
            with SseStream(stream_url(gateway)) as again:
                return again.response.status_code == 200

        wait_until(opens, timeout=10, what="a stream place freed by the disconnect")
    finally:
        for stream in streams:
            stream.close()


@pytest.mark.parametrize(
    ("params", "headers", "name"),
    [
        ({}, {"Last-Event-ID": "not-a-cursor"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "djE6OTk5OTk5OTk5"}, "Last-Event-ID"),  # beyond the end
        ({}, {"Last-Event-ID": "djE6" * 100}, "Last-Event-ID"),  # oversize
        ({"after": "djE6" * 100}, {}, "after"),
        ({"after": "%%%"}, {}, "after"),
        ({"type": "nl.brp.persoon-verhuisd"}, {}, "type"),
        ({"limit": "10"}, {}, "limit"),
        ({"types": ""}, {}, "types"),
    ],
)
def test_a_bad_start_or_filter_is_a_400(
    gateway: GatewayProcess, params: dict[str, str], headers: dict[str, str], name: str
) -> None:
    response = httpx.get(stream_url(gateway), params=params, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [p["name"] for p in response.json()["invalidParams"]] == [name]
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200


def test_polling_finds_events_that_woke_nobody(polling_gateway: GatewayProcess) -> None:
    with SseStream(stream_url(polling_gateway)) as stream:
        posted = post_new(polling_gateway, "brp-verhuizing.xml")
        assert ids(stream.events(1, deadline=5)) == posted


def test_a_stop_ends_open_streams_at_once(tmp_path: Path) -> None:
    """SIGTERM with a stream open: it ends at once, long before the graceful shutdown's timeout
    (65 s here) and the test's kill after 20 s."""
    env = {"DIGIBRIDGE_SSE_HEARTBEAT": "60", "DIGIBRIDGE_DELIVERY_TIMEOUT": "60"}
    gateway = GatewayProcess(tmp_path / "gateway", env=env).start()
    try:
        with SseStream(stream_url(gateway)) as stream:
            stream.frame()  # the opening frame
            started = time.monotonic()
            gateway.process.send_signal(15)  # type: ignore[union-attr]
            assert stream.frame() is None  # the server ended the stream
            gateway.process.wait(timeout=20)  # type: ignore[union-attr]
            assert time.monotonic() - started < 15
    finally:
        gateway.stop()
    assert "event_stream_closed" in gateway.log()
    assert "timeout graceful shutdown exceeded" not in gateway.log()

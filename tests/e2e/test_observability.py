"""Logs and traces of a running gateway, read the way an operator reads them.

The gateway's captured output is grepped: every line about a message or a delivery carries its
correlation ids, and no secret and no BSN or A-nummer from the sample messages ever appears at
info level, not even when a message is refused for a value that is one. A `traceparent` sent
with a SOAP call comes out on the webhook (same trace id, the next hop), and in the stored
event as the CloudEvents distributed-tracing extension, unchanged by a duplicate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from digibridge.delivery.signing import generate_secret
from tests.support.events import ACK_NS
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.sinks import ScriptedSink
from tests.support.soap import SAMPLES, envelope, headers_for, sample, with_kenmerk

pytestmark = pytest.mark.e2e

API_KEY = "observability-operator-key-5e4d3c2b1a"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
HOPS = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def personal_numbers() -> set[str]:
    """The BSNs (9 digits) and A-nummers (10 digits) in the BRP samples."""
    found: set[str] = set()
    for path in SAMPLES.glob("brp-*.xml"):
        found |= set(re.findall(r"(?<![0-9])[0-9]{9,10}(?![0-9])", path.read_text()))
    return found


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("observability"), env={"DIGIBRIDGE_API_KEYS": API_KEY}
    ).start()
    yield process
    process.stop()


def subscribe(gateway: GatewayProcess, sink: str, secret: str) -> str:
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": sink, "delivery": {"secret": secret}},
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def post(gateway: GatewayProcess, document: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.wus_url,
        content=envelope(document, to=gateway.wus_url),
        headers={**headers_for(document), **headers},
        timeout=30,
    )


def log_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    lines = []
    for line in gateway.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_traceparent_sent_with_soap_reaches_the_webhook_and_the_stored_event(
    gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    subscription = subscribe(gateway, receiver.url("/traced"), generate_secret())
    document = with_kenmerk(sample("brp-overlijden.xml"))
    answer = post(gateway, document, traceparent=TRACEPARENT, tracestate="vendor=abc,other=1")
    assert answer.status_code == 200, answer.text
    [webhook] = receiver.wait_for_posts(1)
    httpx.delete(f"{gateway.url}/v1/subscriptions/{subscription}", headers=AUTH)

    sent = HOPS.match(webhook.headers["traceparent"])
    assert sent is not None
    assert sent[1] == TRACE_ID
    assert sent[2] != "00f067aa0ba902b7"  # the webhook is a hop of its own
    assert webhook.headers["tracestate"] == "vendor=abc,other=1"
    event = json.loads(webhook.body)
    stored = HOPS.match(event["traceparent"])
    assert stored is not None
    assert stored[1] == TRACE_ID
    assert stored[2] not in ("00f067aa0ba902b7", sent[2])
    assert event["tracestate"] == "vendor=abc,other=1"

    # The same message again, in another trace: a duplicate, the stored event unchanged.
    again = post(gateway, document, traceparent=f"00-{'1' * 32}-{'2' * 16}-01")
    assert etree.fromstring(again.content).findtext(f".//{{{ACK_NS}}}duplicaat") == "true"
    response = httpx.get(f"{gateway.url}/v1/events/{event['id']}", headers=AUTH)
    assert response.json()["traceparent"] == event["traceparent"]


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "garbage",
        f"00-{TRACE_ID.upper()}-00F067AA0BA902B7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",
        "00-" + "a" * 5000,
    ],
)
def test_a_bad_traceparent_starts_a_new_trace_and_the_message_is_accepted(
    gateway: GatewayProcess, receiver: ScriptedSink, traceparent: str
) -> None:
    subscription = subscribe(gateway, receiver.url("/new-trace"), generate_secret())
    answer = post(
        gateway,
        with_kenmerk(sample("nhr-update.xml")),
        traceparent=traceparent,
        tracestate="x" * 600,
    )
    assert answer.status_code == 200, answer.text
    [webhook] = receiver.wait_for_posts(1)
    httpx.delete(f"{gateway.url}/v1/subscriptions/{subscription}", headers=AUTH)
    sent = HOPS.match(webhook.headers["traceparent"])
    assert sent is not None
    assert sent[1] != TRACE_ID
    assert sent[1] == json.loads(webhook.body)["traceparent"].split("-")[1]
    assert "tracestate" not in webhook.headers
    api = httpx.get(f"{gateway.url}/v1/subscriptions", headers={**AUTH, "traceparent": traceparent})
    assert api.status_code == 200


def test_logs_correlate_and_hold_no_secrets_or_personal_numbers(
    tmp_path: Path, receiver: ScriptedSink
) -> None:
    secret = generate_secret()
    gateway = GatewayProcess(tmp_path / "gateway", env={"DIGIBRIDGE_API_KEYS": API_KEY}).start()
    try:
        subscribe(gateway, receiver.url(), secret)
        accepted = 0
        for path in sorted(SAMPLES.glob("brp-*.xml")):
            response = post(gateway, with_kenmerk(path.read_bytes()), traceparent=TRACEPARENT)
            assert response.status_code == 200, response.text
            accepted += 1
        # Refused for a value that is a BSN: the XSD error quotes it.
        bad = sample("brp-verhuizing.xml").replace(b"2025-03-14T09:30:12.482+01:00", b"999993653")
        assert post(gateway, with_kenmerk(bad)).status_code == 500
        receiver.wait_for_posts(accepted)
        wait_until(
            lambda: (
                sum(line["event"] == "delivery_succeeded" for line in log_lines(gateway))
                >= accepted
            ),
            what="every delivery logged",
        )
    finally:
        assert gateway.stop() == 0
    output = gateway.log()
    lines = log_lines(gateway)

    for number in personal_numbers():
        assert number not in output, f"{number} in the log"
    for leaked in (secret, secret.removeprefix("whsec_"), API_KEY):
        assert leaked not in output
    refused = [line for line in lines if line["event"] == "soap_refused"]
    assert refused
    assert all("[redacted]" in line["reason"] for line in refused)
    stored = [line for line in lines if line["event"] == "soap_accepted"]
    assert len(stored) == accepted
    assert all(line["trace_id"] == TRACE_ID and line["message_id"] for line in stored)
    delivered = [line for line in lines if line["event"] == "delivery_succeeded"]
    event_ids = {event_id for line in stored for event_id in line["event_ids"]}
    message_ids = {line["message_id"] for line in stored}
    assert {line["event_id"] for line in delivered} == event_ids
    assert {line["message_id"] for line in delivered} <= message_ids
    assert all(line["delivery_id"] for line in delivered)
    assert all(line["level"] in ("info", "warning", "error") for line in lines)


def test_a_traceparent_on_the_api_is_on_the_log_lines_of_that_request(
    gateway: GatewayProcess,
) -> None:
    trace_id = "a" * 31 + "1"
    headers = {**AUTH, "traceparent": f"00-{trace_id}-{'b' * 16}-01", "Accept": "text/event-stream"}
    with httpx.stream("GET", f"{gateway.url}/v1/events/stream", headers=headers) as stream:
        assert stream.status_code == 200
    wait_until(
        lambda: any(
            line["event"] == "event_stream_opened" and line.get("trace_id") == trace_id
            for line in log_lines(gateway)
        ),
        what="the stream's log line with the trace id",
    )

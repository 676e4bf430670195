"""Binary content mode against the HTTP binding's percent-encoding cases (§3.1.3.2), checked by
our encoder and read back by the cloudevents SDK 2.x."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from digibridge.events.http import batch, binary, percent_encode, structured

CASES: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "conformance" / "http-header-percent-encoding.json").read_text()
)


def event(**extra: Any) -> bytes:
    document = {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "urn:nld:oin:00000001823288444000:systeem:BRP-component",
        "type": "nl.brp.persoon-verhuisd",
        "datacontenttype": "application/json",
        "data": {"plaats": "Zwolle"},
        **extra,
    }
    return json.dumps(document, ensure_ascii=False).encode()


@pytest.mark.parametrize("case", CASES["encode"], ids=lambda case: case["origin"])
def test_encoding_matches_the_binding(case: dict[str, str]) -> None:
    assert percent_encode(case["value"]) == case["header"]


@pytest.mark.parametrize("case", CASES["encode"], ids=lambda case: case["origin"])
def test_the_sdk_reads_back_what_we_send(case: dict[str, str]) -> None:
    headers, body = binary(event(subject=case["value"]))
    parsed = from_binary(HTTPMessage(headers=headers, body=body), JSONFormat())
    assert parsed.get_subject() == case["value"]
    assert headers["ce-subject"] == case["header"]


def test_binary_mode_moves_datacontenttype_to_content_type() -> None:
    headers, body = binary(event(dataschema="https://gw.example/v1/event-types/x/schema"))
    assert "ce-datacontenttype" not in headers
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"plaats": "Zwolle"}
    assert headers["ce-specversion"] == "1.0"


def test_structured_and_batch_keep_the_stored_bytes() -> None:
    one, two = event(), event(id="ev-2")
    assert structured(one) == ({"content-type": "application/cloudevents+json; charset=utf-8"}, one)
    headers, body = batch([one, two])
    assert headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert body == b"[" + one + b"," + two + b"]"

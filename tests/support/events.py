"""Checking what arrives at a receiver with the standards' own tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from lxml import etree
from standardwebhooks import Webhook

from tests.support.sinks import Received

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
ACK_NS = "urn:nld:digibridge:wus:1"


def cloudevents_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (CONFORMANCE / "cloudevents.v1.0.2.schema.json").read_text()
    )
    return schema


def check_webhook(request: Received, secret: str) -> dict[str, Any]:
    """Verify the signature (standardwebhooks), parse (cloudevents SDK), validate (JSON Schema)."""
    assert request.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    Webhook(secret).verify(request.body, request.headers)
    event = from_http(HTTPMessage(headers=request.headers, body=request.body), JSONFormat())
    document: dict[str, Any] = json.loads(request.body)
    jsonschema.validate(document, cloudevents_schema())
    assert event.get_id() == document["id"] == request.headers["webhook-id"]
    return document


def ack_event_ids(response_body: bytes) -> list[str]:
    root = etree.fromstring(response_body)
    return [element.text or "" for element in root.iter(f"{{{ACK_NS}}}eventId")]


def ack_duplicate(response_body: bytes) -> bool:
    root = etree.fromstring(response_body)
    return root.findtext(f".//{{{ACK_NS}}}duplicaat") == "true"

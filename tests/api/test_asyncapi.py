"""`GET /v1/asyncapi.json`: AsyncAPI 3.0 of the events sent, valid per `@asyncapi/cli`, and its
message payloads describe the events the mappings really produce."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from digibridge.events.builtin import BUILTIN_EVENT_TYPES
from digibridge.mapping.engine import MappingSet
from digibridge.wus.digilevering import read_levering
from tests.support.gateway import GatewayProcess
from tests.support.npx import npx
from tests.support.soap import SAMPLES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def document(shared_gateway: GatewayProcess) -> dict[str, Any]:
    response = httpx.get(f"{shared_gateway.url}/v1/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["api-version"] == "1.0.0"
    body: dict[str, Any] = response.json()
    return body


def test_one_channel_operation_and_message_per_event_type(
    document: dict[str, Any], shared_gateway: GatewayProcess
) -> None:
    assert document["asyncapi"] == "3.0.0"
    catalogue = httpx.get(f"{shared_gateway.url}/v1/event-types").json()
    expected = {entry["type"] for entry in catalogue} | {t.type for t in BUILTIN_EVENT_TYPES}
    assert {channel["title"] for channel in document["channels"].values()} == expected
    assert len(document["operations"]) == len(expected)
    for operation in document["operations"].values():
        assert operation["action"] == "send"
        assert operation["bindings"]["http"]["method"] == "POST"
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in document["channels"]
    messages = document["components"]["messages"]
    assert {message["name"] for message in messages.values()} == expected
    move = messages["NlBrpPersoonVerhuisd"]
    assert move["contentType"] == "application/cloudevents+json"
    headers = document["components"]["schemas"]["DeliveryHeaders"]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} == set(headers["required"])


def test_message_payloads_accept_the_sample_events(document: dict[str, Any]) -> None:
    """The payload schema of each type accepts both forms of the samples' events, and not an
    event of another type."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:asyncapi", resource)
    by_type = {
        message["name"]: message["payload"]["$ref"]
        for message in document["components"]["messages"].values()
    }
    mappings = MappingSet.load(ROOT / "mappings", dataschema_base="https://gw.example")
    for sample in sorted(SAMPLES.glob("*.xml")):
        for event in mappings.map(read_levering(sample.read_bytes())):
            assert event.informatiearm is not None
            validator = jsonschema.Draft202012Validator(
                {"$ref": f"urn:asyncapi{by_type[event.type]}"}, registry=registry
            )
            validator.validate(event.to_json_dict())
            validator.validate(event.informatiearm.to_json_dict())
            assert not validator.is_valid({**event.to_json_dict(), "type": "nl.x.y"})


def test_the_asyncapi_cli_finds_the_document_valid(
    document: dict[str, Any], tmp_path: Path
) -> None:
    """`asyncapi validate`, failing on warnings too."""
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    result = npx("@asyncapi/cli", "validate", str(path), "--fail-severity", "warn")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is valid" in output, output
    assert re.search(r"\b[1-9][0-9]* (errors?|warnings?)\b", output) is None, output

"""`GET /v1/events/{id}`: the stored event, the target of informatiearm events' `dataref`."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.support.gateway import GatewayProcess
from tests.support.soap import post_levering, sample, with_kenmerk


def test_an_event_is_served_as_stored_in_structured_mode(shared_gateway: GatewayProcess) -> None:
    document = with_kenmerk(sample("bag-ingetrokken.xml"))
    ids = post_levering(shared_gateway.wus_url, document)
    assert len(ids) == 4
    for event_id in ids:
        response = httpx.get(f"{shared_gateway.url}/v1/events/{event_id}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
        event = response.json()
        assert event["id"] == event_id
        assert event["data"]["identificatie"] == event["subject"]  # the informatierijk form
        assert "dataref" not in event


def test_the_dataref_of_the_informatiearm_form_resolves(shared_gateway: GatewayProcess) -> None:
    """`digibridge map --form informatiearm` with the gateway's URL gives the dataref a
    subscriber gets; following it gives the full event."""
    document = with_kenmerk(sample("brp-verhuizing.xml"))
    (event_id,) = post_levering(shared_gateway.wus_url, document)
    message = shared_gateway.data_dir / "verhuizing.xml"
    message.write_bytes(document)
    mapped = subprocess.run(
        [sys.executable, "-m", "digibridge", "map", str(message), "--form", "informatiearm"],
        capture_output=True,
        text=True,
        check=True,
        env={**shared_gateway.env, "DIGIBRIDGE_PUBLIC_URL": shared_gateway.url},
    )
    (arm,) = json.loads(mapped.stdout)
    assert arm["id"] == event_id
    assert arm["data"] == {"bsn": "999993653"}
    full = httpx.get(arm["dataref"]).json()
    assert full["id"] == event_id
    assert full["data"]["nieuwAdres"]["postcode"] == "3011AB"
    schema = httpx.get(arm["dataschema"])
    assert schema.status_code == 200
    assert schema.json()["$id"] == arm["dataschema"]


def test_an_unknown_event_is_a_problem(shared_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{shared_gateway.url}/v1/events/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404

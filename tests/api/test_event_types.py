"""`/v1/event-types`: every event's `dataschema` resolves, and its `data` validates against it."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import jsonschema

from tests.support.gateway import GatewayProcess
from tests.support.soap import SAMPLES


def test_catalogue_lists_the_bundled_types(shared_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{shared_gateway.url}/v1/event-types")
    assert response.status_code == 200
    types = {entry["type"]: entry for entry in response.json()}
    assert {"nl.brp.persoon-verhuisd", "nl.nhr.onderneming-ingeschreven"} <= set(types)
    move = types["nl.brp.persoon-verhuisd"]
    assert move["registry"] == "BRP"
    assert move["dataschema"] == (
        f"{shared_gateway.url}/v1/event-types/nl.brp.persoon-verhuisd/schema"
    )


def test_every_sample_events_dataschema_resolves_and_validates(
    shared_gateway: GatewayProcess,
) -> None:
    for sample in sorted(SAMPLES.glob("*.xml")):
        mapped = subprocess.run(
            [sys.executable, "-m", "digibridge", "map", str(sample)],
            capture_output=True,
            text=True,
            check=True,
            env={**shared_gateway.env, "DIGIBRIDGE_PUBLIC_URL": shared_gateway.url},
        )
        for event in json.loads(mapped.stdout):
            response = httpx.get(event["dataschema"])
            assert response.status_code == 200, event["dataschema"]
            assert response.headers["content-type"] == "application/schema+json"
            jsonschema.validate(event["data"], response.json())


def test_unknown_type_is_a_problem(shared_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{shared_gateway.url}/v1/event-types/nl.nergens/schema")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"

"""`/v1/event-types`: every event's `dataschema` resolves, and its `data` validates against it."""

from __future__ import annotations

from pathlib import Path

import httpx
import jsonschema

from digibridge.mapping.engine import MappingSet
from digibridge.wus.digilevering import read_levering
from tests.support.gateway import GatewayProcess
from tests.support.soap import SAMPLES

ROOT = Path(__file__).resolve().parents[2]


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
    assert move["version"] == 1
    assert move["versions"] == ["nl.brp.persoon-verhuisd"]
    assert move["identifiers"] == ["bsn"]
    assert move["description"].startswith("A person moved")
    assert move["informatiearmDataschema"] == f"{move['dataschema']}?form=informatiearm"
    assert {entry["registry"] for entry in types.values()} == {"BAG", "BRK", "BRP", "NHR"}


def test_the_informatiearm_schema_keeps_only_the_identifiers(
    shared_gateway: GatewayProcess,
) -> None:
    url = f"{shared_gateway.url}/v1/event-types/nl.nhr.onderneming-ingeschreven/schema"
    arm = httpx.get(url, params={"form": "informatiearm"})
    assert arm.status_code == 200
    assert arm.json()["$id"] == f"{url}?form=informatiearm"
    assert arm.json()["required"] == ["kvkNummer", "vestiging"]
    assert arm.json()["properties"]["vestiging"] == {
        "type": "object",
        "properties": {"vestigingsnummer": {"type": "string"}},
        "required": ["vestigingsnummer"],
    }
    assert httpx.get(url, params={"form": "mager"}).status_code == 400


def test_every_sample_events_dataschema_resolves_and_validates(
    shared_gateway: GatewayProcess,
) -> None:
    """Both forms of every sample's events, mapped with the gateway's own public URL."""
    mappings = MappingSet.load(ROOT / "mappings", dataschema_base=shared_gateway.url)
    schemas: dict[str, object] = {}
    for sample in sorted(SAMPLES.glob("*.xml")):
        for event in mappings.map(read_levering(sample.read_bytes())):
            assert event.informatiearm is not None
            for form in (event, event.informatiearm):
                assert form.dataschema is not None
                if form.dataschema not in schemas:
                    response = httpx.get(form.dataschema)
                    assert response.status_code == 200, form.dataschema
                    assert response.headers["content-type"] == "application/schema+json"
                    schemas[form.dataschema] = response.json()
                jsonschema.validate(form.data, schemas[form.dataschema])


def test_unknown_type_is_a_problem(shared_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{shared_gateway.url}/v1/event-types/nl.nergens/schema")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"

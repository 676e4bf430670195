"""Every sample message becomes exactly the events in its golden file, and those are valid.

The golden files (`samples/<name>.events.json`) are the spec: they were generated once by the
engine and then read by hand. To regenerate after a deliberate change, run with
`DIGIBRIDGE_REGENERATE_GOLDEN=1` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cloudevents.core.formats.json import JSONFormat

from digibridge.events.nlgov import event_problems
from digibridge.mapping.engine import MappingSet, event_id
from tests.mapping.conftest import CONFORMANCE, levering_from_file, sample_paths

SAMPLES = sample_paths()
#: Personal numbers in the BRP samples; none may appear in any attribute.
BRP_PERSONAL_NUMBERS = (
    *("999993653", "1010101025", "999990342", "5010101260", "999990160", "1010102029"),
    *("999990238", "1010102791", "1010102506"),
)


def _golden_path(sample: Path) -> Path:
    return sample.with_name(sample.stem + ".events.json")


def _events_json(mappings: MappingSet, sample: Path) -> list[dict[str, Any]]:
    return [event.to_json_dict() for event in mappings.map(levering_from_file(sample))]


def test_there_are_samples_for_every_registry() -> None:
    names = {path.stem for path in SAMPLES}
    assert {
        *("brp-verhuizing", "brp-overlijden", "brp-inschrijving", "brp-anummerwijziging"),
        *("nhr-nieuwe-inschrijving", "nhr-update", "nhr-beeindiging"),
        *("bag-pand-nieuw", "bag-vbo-num-nieuw", "bag-gewijzigd", "bag-ingetrokken"),
        "brk-eigendomsoverdracht",
    } <= names


def test_every_event_type_has_a_sample(mappings: MappingSet) -> None:
    """Each rule of the bundled mappings is proven by at least one golden sample."""
    emitted = {
        event.type for sample in SAMPLES for event in mappings.map(levering_from_file(sample))
    }
    assert emitted == {info.type for info in mappings.event_types}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_sample_maps_to_golden_events(mappings: MappingSet, sample: Path) -> None:
    actual = _events_json(mappings, sample)
    golden = _golden_path(sample)
    if os.environ.get("DIGIBRIDGE_REGENERATE_GOLDEN") == "1":
        text = json.dumps(actual, indent=2, ensure_ascii=False)
        golden.write_text(text + "\n", encoding="utf-8")
    assert actual == json.loads(golden.read_text(encoding="utf-8"))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_events_are_valid_cloudevents(mappings: MappingSet, sample: Path) -> None:
    schema = json.loads((CONFORMANCE / "cloudevents.v1.0.2.schema.json").read_text())
    for event in mappings.map(levering_from_file(sample)):
        document = json.loads(event.to_json_bytes())
        jsonschema.Draft7Validator(schema).validate(document)
        parsed = JSONFormat().read(None, event.to_json_bytes())
        assert parsed.get_id() == event.id
        assert parsed.get_type() == event.type
        assert parsed.get_source() == event.source
        assert parsed.get_time() == event.time
        assert parsed.get_data() == event.data


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_events_follow_the_nl_gov_profile(mappings: MappingSet, sample: Path) -> None:
    for event in mappings.map(levering_from_file(sample)):
        assert event_problems(event) == []
        assert event.source.startswith("urn:nld:oin:")
        assert event.datacontenttype == "application/json"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_data_validates_against_the_type_schema(mappings: MappingSet, sample: Path) -> None:
    schemas = {info.type: info.schema for info in mappings.event_types}
    for event in mappings.map(levering_from_file(sample)):
        assert event.dataschema == f"https://digibridge.example/v1/event-types/{event.type}/schema"
        validator = jsonschema.Draft202012Validator(
            schemas[event.type], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        validator.validate(event.data)


def test_brp_attributes_never_carry_a_bsn_or_a_nummer(mappings: MappingSet) -> None:
    brp_samples = [path for path in SAMPLES if path.stem.startswith("brp-")]
    assert brp_samples
    for sample in brp_samples:
        for event in mappings.map(levering_from_file(sample)):
            assert event.type.startswith("nl.brp.")
            assert event.subject is None
            assert event.informatiearm is not None
            attributes = json.dumps([event.attributes(), event.informatiearm.attributes()])
            for number in BRP_PERSONAL_NUMBERS:
                assert number not in attributes
    # ... while the data does carry the BSN, for subscribers authorised for it.
    (move,) = mappings.map(levering_from_file(SAMPLES[0].with_name("brp-verhuizing.xml")))
    assert move.data["bsn"] == "999993653"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_same_message_twice_gives_the_same_ids(mappings: MappingSet, sample: Path) -> None:
    first = mappings.map(levering_from_file(sample))
    again = mappings.map(levering_from_file(sample))
    assert [event.id for event in first] == [event.id for event in again]
    assert first == again


def test_event_id_is_uuid5_of_kenmerk_rule_and_index(mappings: MappingSet) -> None:
    levering = levering_from_file(SAMPLES[0].with_name("brp-verhuizing.xml"))
    (event,) = mappings.map(levering)
    assert event.id == event_id(levering.kenmerk, "persoon-verhuisd", 0)
    assert event.id != event_id(levering.kenmerk, "persoon-verhuisd", 1)
    assert event.id != event_id(levering.kenmerk + "x", "persoon-verhuisd", 0)

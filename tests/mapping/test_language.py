"""The language beyond one event per rule: rule-level for-each, lookups, compact timestamps,
the informatiearm form (identifiers + dataref), versioned types, and `explain`."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from digibridge.mapping.engine import MappingSet, event_id
from digibridge.mapping.types import MappingError, NoMatchingMapping
from tests.mapping.conftest import FIXTURES, SAMPLES, levering_from_file, sample_paths

MESSAGES = FIXTURES / "messages"
BASE = "https://digibridge.example"


@pytest.fixture(scope="module")
def language() -> MappingSet:
    return MappingSet.load(FIXTURES / "language", dataschema_base=BASE)


def test_a_rule_for_each_makes_one_event_per_element_with_positional_ids(
    language: MappingSet,
) -> None:
    levering = levering_from_file(MESSAGES / "tst-meervoud.xml")
    events = [e for e in language.map(levering) if e.type == "nl.tst.object-gemeld"]
    assert [event.subject for event in events] == ["object-1", "object-2", "object-3"]
    assert [event.id for event in events] == [
        event_id(levering.kenmerk, "object-gemeld", index) for index in range(3)
    ]
    # Each event's expressions run on its own element; `/` is still the payload root.
    assert events[1].data == {
        "object": {"id": "2", "soort": "peer"},
        "naam": "twee",
        "bericht": "M-1",
    }


def test_compact_timestamps_are_dutch_local_time(language: MappingSet) -> None:
    (first, *_) = language.map(levering_from_file(MESSAGES / "tst-meervoud.xml"))
    assert first.attributes()["time"] == "2025-06-01T09:59:59.123Z"


def test_a_code_outside_the_lookup_table_is_a_mapping_error(language: MappingSet) -> None:
    with pytest.raises(
        MappingError, match=r"data\.object\.soort: code 'X' is not in lookup 'soort'"
    ):
        language.map(levering_from_file(MESSAGES / "tst-meervoud-onbekende-soort.xml"))


def test_a_for_each_that_selects_nothing_is_a_reason_not_to_match(language: MappingSet) -> None:
    with pytest.raises(NoMatchingMapping, match="for-each 't:object' selects nothing"):
        language.map(levering_from_file(MESSAGES / "tst-meervoud-leeg.xml"))


def test_a_version_emits_its_type_beside_the_base_type(language: MappingSet) -> None:
    levering = levering_from_file(MESSAGES / "tst-meervoud.xml")
    events = language.map(levering)
    assert [event.type for event in events] == [
        *["nl.tst.object-gemeld"] * 3,
        *["nl.tst.object-gemeld.v2"] * 3,
    ]
    v2 = events[4]
    assert v2.id == event_id(levering.kenmerk, "object-gemeld-v2", 1)
    assert v2.data == {"object": {"id": "2", "soort": "peer"}, "bericht": "M-1", "positie": 2}
    by_type = {info.type: info for info in language.event_types}
    for info in by_type.values():
        assert info.versions == ("nl.tst.object-gemeld", "nl.tst.object-gemeld.v2")
    assert (
        by_type["nl.tst.object-gemeld"].version,
        by_type["nl.tst.object-gemeld.v2"].version,
    ) == (1, 2)
    assert "naam" not in by_type["nl.tst.object-gemeld.v2"].schema["properties"]
    assert by_type["nl.tst.object-gemeld"].schema["properties"]["object"]["properties"][
        "soort"
    ] == {
        "type": "string",
        "enum": ["appel", "peer"],
    }


def test_the_informatiearm_form_keeps_identifiers_and_links_back(language: MappingSet) -> None:
    event = language.map(levering_from_file(MESSAGES / "tst-meervoud.xml"))[0]
    arm = event.informatiearm
    assert arm is not None
    assert arm.id == event.id
    assert arm.data == {"object": {"id": "1"}}
    assert arm.extensions["dataref"] == "https://tst.example/objecten/1?type=nl.tst.object-gemeld"
    assert arm.dataschema == f"{BASE}/v1/event-types/nl.tst.object-gemeld/schema?form=informatiearm"
    rich = event.attributes()
    assert {**rich, "dataschema": arm.dataschema, "dataref": arm.extensions["dataref"]} == (
        arm.attributes()
    )
    info = language.event_types[0]
    assert info.identifiers == ("object.id",)
    jsonschema.Draft202012Validator(info.informatiearm_schema).validate(arm.data)


def test_without_a_template_dataref_is_the_gateways_own_event_url(mappings: MappingSet) -> None:
    (event,) = mappings.map(levering_from_file(SAMPLES / "brp-verhuizing.xml"))
    assert event.informatiearm is not None
    assert event.informatiearm.extensions["dataref"] == f"{BASE}/v1/events/{event.id}"
    assert event.informatiearm.data == {"bsn": "999993653"}


@pytest.mark.parametrize("sample", sample_paths(), ids=lambda path: path.stem)
def test_every_informatiearm_form_fits_its_schema_and_carries_no_personal_number(
    mappings: MappingSet, sample: Path
) -> None:
    schemas = {info.type: info.informatiearm_schema for info in mappings.event_types}
    for event in mappings.map(levering_from_file(sample)):
        arm = event.informatiearm
        assert arm is not None
        jsonschema.Draft202012Validator(schemas[event.type]).validate(arm.data)
        assert arm.data.keys() <= event.data.keys()
        for number in ("999993653", "1010101025", "999990342", "5010101260", "999990160"):
            assert number not in str(arm.attributes())


def test_explain_says_which_rule_matched_and_why_the_others_did_not(mappings: MappingSet) -> None:
    levering = levering_from_file(SAMPLES / "bag-vbo-num-nieuw.xml")
    explanation = mappings.explain(levering)
    matched = {o.rule.name: len(o.events) for o in explanation.outcomes if o.reason is None}
    assert matched == {"verblijfsobject-toegevoegd": 1, "nummeraanduiding-toegevoegd": 1}
    reasons = {o.rule.name: o.reason for o in explanation.outcomes}
    assert reasons["pand-toegevoegd"] == (
        "for-each \"product:Mutatie-product[product:Verwerking/product:ObjectType = 'PND']"
        '[product:Nieuw]" selects nothing'
    )
    assert "persoon-verhuisd" not in reasons  # rules of other registries are not tried
    assert explanation.registries == ("LV BAG", "BRK", "BRP", "NHR")
    assert list(explanation.events) == mappings.map(levering)


def test_a_dataref_that_would_carry_a_bsn_is_refused() -> None:
    mapping_set = MappingSet.load(FIXTURES / "dataref-bsn", dataschema_base=BASE)
    with pytest.raises(MappingError, match="looks like a BSN or an A-nummer"):
        mapping_set.map(levering_from_file(MESSAGES / "tst-alles.xml"))

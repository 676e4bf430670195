"""How the engine turns messages into events, and how it refuses the ones it cannot map."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import jsonschema
import pytest

from digibridge.mapping.engine import EVENT_ID_NAMESPACE, MappingSet, event_id
from digibridge.mapping.types import MappingError, NoMatchingMapping
from tests.mapping.conftest import FIXTURES, levering_from_file

MESSAGES = FIXTURES / "messages"
BASE = "https://digibridge.example"


@pytest.fixture(scope="module")
def features() -> MappingSet:
    return MappingSet.load(FIXTURES / "features", dataschema_base=BASE)


def test_a_message_that_matches_no_rule_says_why_for_each_candidate(mappings: MappingSet) -> None:
    with pytest.raises(NoMatchingMapping) as caught:
        mappings.map(levering_from_file(MESSAGES / "brp-gv01-alleen-08.xml"))
    message = str(caught.value)
    assert "basisregistratie 'BRP'" in message
    assert "gebeurtenissoort 'Gv01'" in message
    assert "payload root {http://www.rvig.nl/schemas/lo-gba/3.10}gv01" in message
    assert "persoon-verhuisd (mappings/brp.yaml:" in message
    assert (
        "when \"gba:categorie[@nummer='08'] and gba:categorie[@nummer='58']\" is false" in message
    )
    assert "persoon-overleden" in message


def test_a_wrong_gebeurtenissoort_is_named(mappings: MappingSet) -> None:
    with pytest.raises(
        NoMatchingMapping, match="gebeurtenissoort is 'Af01', the rule wants 'Gv01'"
    ):
        mappings.map(levering_from_file(MESSAGES / "brp-af01.xml"))


def test_an_unknown_basisregistratie_lists_the_known_ones(mappings: MappingSet) -> None:
    with pytest.raises(NoMatchingMapping) as caught:
        mappings.map(levering_from_file(MESSAGES / "bgt-onbekend.xml"))
    assert (
        "no rule is for this basisregistratie (rules exist for: 'BRK', 'BRP', 'LV BAG', 'NHR')"
        in str(caught.value)
    )


def test_a_missing_required_value_names_rule_and_field(mappings: MappingSet) -> None:
    with pytest.raises(MappingError) as caught:
        mappings.map(levering_from_file(MESSAGES / "brp-verhuizing-zonder-postcode.xml"))
    assert not isinstance(caught.value, NoMatchingMapping)
    assert "rule 'persoon-verhuisd'" in str(caught.value)
    assert "data.nieuwAdres.postcode is required" in str(caught.value)
    assert caught.value.location is None  # a message error, not a file error


def test_an_unreadable_value_names_rule_field_and_conversion(mappings: MappingSet) -> None:
    with pytest.raises(MappingError, match=r"data\.nieuwAdres\.huisnummer: integer: 'twaalf'"):
        mappings.map(levering_from_file(MESSAGES / "brp-huisnummer-onleesbaar.xml"))


def test_every_matching_rule_yields_an_event(mappings: MappingSet) -> None:
    levering = levering_from_file(MESSAGES / "brp-overlijden-en-verhuizing.xml")
    events = mappings.map(levering)
    assert [event.type for event in events] == [
        "nl.brp.persoon-verhuisd",
        "nl.brp.persoon-overleden",
    ]
    assert [event.id for event in events] == [
        event_id(levering.kenmerk, "persoon-verhuisd", 0),
        event_id(levering.kenmerk, "persoon-overleden", 0),
    ]
    assert events[1].data["datumOverlijden"] == "2025-03-12"


def test_every_value_form(features: MappingSet) -> None:
    (event,) = features.map(levering_from_file(MESSAGES / "tst-alles.xml"))
    assert event.type == "nl.tst.alles-gebeurd.v1"
    assert event.source == "urn:nld:oin:00000099000000000001:systeem:TST"  # the file's oin
    assert event.subject == "object-7"
    assert event.extensions == {
        "sequence": "000042",
        "tstkenmerk": "TST-LV-0001",
        "tstbelangrijk": True,
    }
    assert event.data == {
        "vast": 42,
        "kenmerk": "tst-0001@digilevering.nl",
        "bron": "TST/Alles",
        "aantal": 2,
        "gemiddelde": 7.75,
        "regels": [{"bedrag": 10, "omschrijving": "een"}, {"bedrag": 5.5, "omschrijving": "twee"}],
        "geregistreerdOp": "2025-06-01T10:00:00Z",
    }
    schema = features.event_types[0].schema
    jsonschema.Draft202012Validator(schema).validate(event.data)


def test_time_defaults_to_the_registry_timestamp(features: MappingSet) -> None:
    (event,) = features.map(levering_from_file(MESSAGES / "tst-alles.xml"))
    assert event.time == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)


def test_time_from_the_payload_without_offset_is_amsterdam_time(features: MappingSet) -> None:
    (event,) = features.map(levering_from_file(MESSAGES / "tst-alles-met-tijd.xml"))
    assert event.time == datetime(2025, 1, 15, 9, 0, tzinfo=UTC)


def test_a_subject_that_is_a_bsn_is_refused() -> None:
    mapping_set = MappingSet.load(FIXTURES / "subject-bsn", dataschema_base=BASE)
    with pytest.raises(MappingError, match="looks like a BSN"):
        mapping_set.map(levering_from_file(MESSAGES / "tst-alles.xml"))


def test_a_source_without_any_oin_is_refused() -> None:
    mapping_set = MappingSet.load(FIXTURES / "no-oin", dataschema_base=BASE)
    with pytest.raises(MappingError, match=r"\{verstrekker_oin\} has no value"):
        mapping_set.map(levering_from_file(MESSAGES / "tst-alles.xml"))


def test_the_payload_is_not_changed(mappings: MappingSet) -> None:
    levering = levering_from_file(MESSAGES / "brp-overlijden-en-verhuizing.xml")
    before = levering.payload.getroottree().getroot()
    mappings.map(levering)
    assert levering.payload.getroottree().getroot() is before


def test_the_catalogue_describes_every_type(mappings: MappingSet) -> None:
    for info in mappings.event_types:
        jsonschema.Draft202012Validator.check_schema(info.schema)
        assert info.schema["$id"] == info.dataschema
        assert info.dataschema == f"{BASE}/v1/event-types/{info.type}/schema"
        assert info.schema["type"] == "object"
        assert info.description
        assert info.location.startswith("mappings/")
    by_type = {info.type: info for info in mappings.event_types}
    move = by_type["nl.brp.persoon-verhuisd"]
    assert move.registry == "BRP"
    assert move.rule == "persoon-verhuisd"
    assert move.schema["properties"]["nieuwAdres"]["properties"]["huisnummer"] == {
        "type": "integer"
    }
    assert "huisletter" not in move.schema["properties"]["nieuwAdres"]["required"]
    assert "postcode" in move.schema["properties"]["nieuwAdres"]["required"]
    assert move.schema["properties"]["binnengemeentelijk"] == {"type": "boolean"}
    nhr = by_type["nl.nhr.onderneming-ingeschreven"].schema
    assert nhr["properties"]["vestiging"]["properties"]["handelsnamen"] == {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
    }


def test_a_problem_inside_an_array_names_the_item(features: MappingSet) -> None:
    with pytest.raises(MappingError, match=r"data\.regels\[1\]\.omschrijving is required"):
        features.map(levering_from_file(MESSAGES / "tst-alles-regel-zonder-omschrijving.xml"))


@pytest.mark.parametrize(
    ("kenmerk", "rule", "index"),
    [("7b1f3c2e@digilevering.nl", "persoon-verhuisd", 0), ("ü€-𝄞", "r", 12), ("", "", 0)],
)
def test_event_id_is_the_uuid5_of_kenmerk_rule_and_index(
    kenmerk: str, rule: str, index: int
) -> None:
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{kenmerk}|{rule}|{index}")
    assert event_id(kenmerk, rule, index) == str(expected)

"""The NL GOV profile checks on CloudEvent attributes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digibridge.events.nlgov import (
    attribute_name_problems,
    event_problems,
    is_a_nummer,
    is_bsn,
    source_problems,
    subject_problems,
    type_problems,
)
from digibridge.events.types import CloudEvent


@pytest.mark.parametrize(
    "value",
    [
        "nl.brp.persoon-verhuisd",
        "nl.brp.verhuizing.binnengemeentelijk",
        "nl.bag.v2.pand-toegevoegd",
        "nl.brp",
    ],
)
def test_good_types(value: str) -> None:
    assert type_problems(value) == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("BRP.Verhuisd", "must be lower-case"),
        ("nl.brp.v1.persoon-verhuisd.v2", "2 version segments"),
        ("verhuisd", "at least two segments"),
        ("nl..brp", "segment(s) ''"),
        ("nl.brp.persoon_verhuisd", "'persoon_verhuisd'"),
        ("nl.brp.-verhuisd", "'-verhuisd'"),
        ("123.brp.verhuisd", "top-level domain"),
    ],
)
def test_bad_types(value: str, fragment: str) -> None:
    problems = type_problems(value)
    assert problems
    assert fragment in " ".join(problems)


@pytest.mark.parametrize(
    "value",
    [
        "urn:nld:oin:00000001001172773000:systeem:BRP",
        "urn:nld:oin:00000001823288444000:systeem:BRP-component",
        "urn:nld:gemeente:0599:systeem:zaken",
    ],
)
def test_good_sources(value: str) -> None:
    assert source_problems(value) == []


@pytest.mark.parametrize(
    "value",
    [
        "https://digibridge.example/events",
        "urn:nld:oin:1234:systeem:BRP",
        "urn:nld:oin::systeem:BRP",
        "urn:nl:oin:00000001001172773000",
        "urn:nld:oin:00000001001172773000:systeem:BR P",
    ],
)
def test_bad_sources(value: str) -> None:
    assert source_problems(value)


def test_attribute_names() -> None:
    assert attribute_name_problems("dataref") == []
    assert attribute_name_problems("sequence") == []
    assert attribute_name_problems("traceParent")
    assert attribute_name_problems("data_base64", extension=False)
    assert attribute_name_problems("abcdefghijklmnopqrstu")  # 21 characters
    assert "core attribute" in attribute_name_problems("subject")[0]


def test_bsn_and_a_nummer_are_recognised_by_their_check_digits() -> None:
    assert is_bsn("999993653")
    assert is_bsn("999990342")
    assert not is_bsn("999993654")
    assert not is_bsn("99012345")
    assert is_a_nummer("1010101025")
    assert not is_a_nummer("1010101026")
    assert not is_a_nummer("1122334455")
    assert subject_problems("999993653")
    assert subject_problems("1010101025")
    assert subject_problems("0599100000999001") == []
    assert subject_problems("990000123456") == []


def test_a_whole_event() -> None:
    good = CloudEvent(
        id="e1",
        source="urn:nld:oin:00000001001172773000:systeem:BRP",
        type="nl.brp.persoon-verhuisd",
        time=datetime(2025, 3, 14, tzinfo=UTC),
        data={"bsn": "999993653"},
        extensions={"sequence": "0001"},
    )
    assert event_problems(good) == []
    bad = CloudEvent(
        id="",
        source="https://x.example",
        type="BRP.Verhuisd",
        subject="999993653",
        datacontenttype="text/plain",
        data="x",
        extensions={"traceParent": "x"},
    )
    problems = " | ".join(event_problems(bad))
    for fragment in (
        "id must not be empty",
        "source",
        "type",
        "BSN",
        "time",
        "datacontenttype",
        "traceParent",
    ):
        assert fragment in problems

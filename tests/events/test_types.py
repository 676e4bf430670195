"""The CloudEvent record: its fast constructor makes exactly what the dataclass makes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from digibridge.events.types import CloudEvent


def _fields() -> dict[str, object]:
    arm = CloudEvent(id="1", source="urn:nld:x", type="nl.x.y", data={"id": "a"})
    return {
        "id": "1",
        "source": "urn:nld:oin:00000001001172773000:systeem:BRP",
        "type": "nl.brp.persoon-verhuisd",
        "time": datetime(2025, 3, 14, 9, 15, tzinfo=UTC),
        "subject": "object-1",
        "dataschema": "https://digibridge.example/v1/event-types/nl.brp.persoon-verhuisd/schema",
        "data": {"bsn": "999993653"},
        "extensions": {"dataref": "https://digibridge.example/v1/events/1"},
        "informatiearm": arm,
    }


def test_assembled_equals_the_constructed_event() -> None:
    values = _fields()
    assembled = CloudEvent.assembled(**values)  # type: ignore[arg-type]
    constructed = CloudEvent(**values)  # type: ignore[arg-type]
    assert assembled == constructed
    assert assembled.to_json_bytes() == constructed.to_json_bytes()


def test_assembled_sets_every_field_of_the_dataclass() -> None:
    """A field added to CloudEvent must be added to `assembled` too."""
    assembled = CloudEvent.assembled(**_fields())  # type: ignore[arg-type]
    assert set(vars(assembled)) == {field.name for field in dataclasses.fields(CloudEvent)}


def test_assembled_is_as_frozen_as_the_constructed_event() -> None:
    assembled = CloudEvent.assembled(**_fields())  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        assembled.id = "2"  # type: ignore[misc]

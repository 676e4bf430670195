"""Events keep their informatiearm form next to the full body (schema version 2)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from digibridge.events.records import to_new_event
from digibridge.mapping.engine import MappingSet
from digibridge.store.types import InboundMessage, Store
from digibridge.wus.digilevering import read_levering
from tests.mapping.conftest import DATASCHEMA_BASE, MAPPINGS, SAMPLES

pytestmark = pytest.mark.anyio


async def test_both_forms_are_stored_and_read_back(store: Store) -> None:
    mappings = MappingSet.load(MAPPINGS, dataschema_base=DATASCHEMA_BASE)
    levering = read_levering((SAMPLES / "bag-gewijzigd.xml").read_bytes())
    events = mappings.map(levering)
    message = InboundMessage(
        message_id="uuid:arm-1",
        kenmerk=levering.kenmerk,
        basisregistratie=levering.basisregistratie,
        gebeurtenissoort=levering.gebeurtenissoort,
        received_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )
    await store.ingest(message, [to_new_event(event) for event in events], lambda s, e: False)
    for event in events:
        stored = await store.get_event(event.id)
        assert stored is not None
        assert event.informatiearm is not None
        # Both forms as mapped, plus the `sequence` the store numbered the event with.
        assert stored.sequence is not None
        assert stored.informatiearm_body is not None
        assert json.loads(stored.body) == {**event.to_json_dict(), "sequence": stored.sequence}
        assert json.loads(stored.informatiearm_body) == {
            **event.informatiearm.to_json_dict(),
            "sequence": stored.sequence,
        }


async def test_an_event_without_an_informatiearm_form_reads_back_none(store: Store) -> None:
    levering = read_levering((SAMPLES / "brp-verhuizing.xml").read_bytes())
    (event,) = MappingSet.load(MAPPINGS, dataschema_base=DATASCHEMA_BASE).map(levering)
    record = to_new_event(dataclasses.replace(event, informatiearm=None))
    message = InboundMessage(
        message_id="uuid:arm-2",
        kenmerk=levering.kenmerk,
        basisregistratie="BRP",
        gebeurtenissoort="Gv01",
        received_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )
    await store.ingest(message, [record], lambda s, e: False)
    stored = await store.get_event(event.id)
    assert stored is not None
    assert stored.informatiearm_body is None

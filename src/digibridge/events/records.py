"""Turning emitted CloudEvents into the store's records."""

from __future__ import annotations

from digibridge.events.types import CloudEvent
from digibridge.store.types import NewEvent


def to_new_event(event: CloudEvent) -> NewEvent:
    """The record the store keeps: routing attributes plus the body exactly as it will be sent,
    in both forms (informatierijk, and informatiearm when the event has one)."""
    return NewEvent(
        id=event.id,
        type=event.type,
        source=event.source,
        subject=event.subject,
        time=event.time,
        attributes=event.attributes(),
        body=event.to_json_bytes(),
        informatiearm_body=(
            None if event.informatiearm is None else event.informatiearm.to_json_bytes()
        ),
    )

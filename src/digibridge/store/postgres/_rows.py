"""Rows of the PostgreSQL schema to the store's records, and the column lists that go with them."""

from __future__ import annotations

from typing import Any

from psycopg.rows import DictRow

from digibridge.store._codec import settings_from
from digibridge.store.types import (
    Attempt,
    Circuit,
    CircuitState,
    Delivery,
    DeliveryStatus,
    NewEvent,
    StoredEvent,
    Subscription,
    SubscriptionStatus,
)

#: A subscription row with its `options` as the JSON text `settings_from` reads.
SUBSCRIPTION = "SELECT *, options::text AS options_text FROM subscriptions"

DELIVERY_COLUMNS = (
    "d.id, d.subscription_id, d.event_id, d.status, d.attempts, d.next_attempt_at, d.created_at,"
    " d.updated_at, d.last_error, d.last_status_code, d.schedule_start, d.schedule_offset"
)


def subscription(row: DictRow) -> Subscription:
    return Subscription(
        id=row["id"],
        sink=row["sink"],
        delivery=settings_from(
            secret=row["secret"],
            mode=row["mode"],
            ordered=bool(row["ordered"]),
            form=row["form"],
            options=row["options_text"],
        ),
        created_at=row["created_at"],
        protocol=row["protocol"],
        types=tuple(row["types"]),
        source=row["source"],
        filters=tuple(row["filters"]),
        protocolsettings=row["protocolsettings"],
        sinkcredential=row["sinkcredential"],
        status=SubscriptionStatus(row["status"]),
        status_reason=row["status_reason"],
        disabled_at=row["disabled_at"],
        owner=row["owner"],
    )


def event(row: DictRow) -> StoredEvent:
    return StoredEvent(
        id=row["id"],
        type=row["type"],
        source=row["source"],
        subject=row["subject"],
        time=row["time"],
        body=bytes(row["body"]),
        message_id=row["message_id"],
        created_at=row["created_at"],
        informatiearm_body=(
            None if row["informatiearm_body"] is None else bytes(row["informatiearm_body"])
        ),
        sequence=row["sequence"],
        position=row["position"],
    )


def new_event(row: DictRow) -> NewEvent:
    """A stored event as the matcher sees it at ingest (for replay)."""
    attributes: dict[str, Any] = row["attributes"]
    return NewEvent(
        id=row["id"],
        type=row["type"],
        source=row["source"],
        subject=row["subject"],
        time=row["time"],
        attributes=attributes,
        body=bytes(row["body"]),
    )


def delivery(row: DictRow) -> Delivery:
    return Delivery(
        id=row["id"],
        subscription_id=row["subscription_id"],
        event_id=row["event_id"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
        last_status_code=row["last_status_code"],
        schedule_start=row["schedule_start"],
        schedule_offset=row["schedule_offset"],
    )


def attempt(row: DictRow) -> Attempt:
    return Attempt(
        delivery_id=row["delivery_id"],
        number=row["number"],
        started_at=row["started_at"],
        duration_ms=row["duration_ms"],
        status_code=row["status_code"],
        error=row["error"],
        response_excerpt=row["response_excerpt"],
    )


def circuit(row: DictRow) -> Circuit:
    return Circuit(
        endpoint=row["endpoint"],
        state=CircuitState(row["state"]),
        window_start=row["window_start"],
        successes=row["successes"],
        failures=row["failures"],
        retry_at=row["retry_at"],
        probe_until=row["probe_until"],
        failing_since=row["failing_since"],
    )

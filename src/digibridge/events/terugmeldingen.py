"""The CloudEvents that keep a consumer informed about its terugmeldingen.

Two types, because consumers care about them separately: the registry's verdict
(`status-gewijzigd`, the DMKS status from `Statusoverzicht`) and digibridge's own hand-over
(`transportstatus-gewijzigd`: ontvangen → verzonden | mislukt, for the melding or its
withdrawal). `subject` is the terugmelding id; `data` carries identifiers and statuses only, never
the contact, values or attachments the consumer sent. Ids are derived from what changed, so a
change that is observed twice yields the same event (and the store keeps it once).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from digibridge.events.filters import subscription_matches
from digibridge.events.notices import NOTICE_SOURCE
from digibridge.events.records import to_new_event
from digibridge.events.types import CloudEvent, format_time
from digibridge.store.types import (
    NewEvent,
    RequestKind,
    Subscription,
    SubscriptionMatcher,
    TerugmeldingRecord,
    TransportStatus,
)

STATUS_GEWIJZIGD = "nl.digibridge.terugmelding.status-gewijzigd"
TRANSPORTSTATUS_GEWIJZIGD = "nl.digibridge.terugmelding.transportstatus-gewijzigd"

_NAMESPACE = uuid.UUID("0f5f7f0e-2b9c-4a55-8c1a-7d3e9b6a4c21")


def for_owner(owner: str) -> SubscriptionMatcher:
    """Subscriptions that may receive the events of `owner`'s terugmeldingen: its own, and
    those without an owner (made before ownership was recorded; admin-only), when they match."""

    def matches(subscription: Subscription, event: NewEvent) -> bool:
        mine = subscription.owner is None or subscription.owner == owner
        return mine and subscription_matches(subscription, event)

    return matches


def _reference(record: TerugmeldingRecord) -> str | None:
    value = record.document.get("referentiekenmerk")
    return value if isinstance(value, str) else None


def status_changed(
    record: TerugmeldingRecord,
    *,
    previous: str | None,
    status: str,
    registry_time: datetime,
    unexpected: bool,
    observed_at: datetime,
) -> NewEvent:
    """`status-gewijzigd`: the registry moved the report to `status` at `registry_time`.

    `time` is when digibridge registered the change (NL GOV: registration, not reality); the
    registry's own time is `data.tijdstip`."""
    key = f"{record.id}/dmks/{previous}/{status}/{registry_time.isoformat()}"
    return to_new_event(
        CloudEvent(
            id=str(uuid.uuid5(_NAMESPACE, key)),
            source=NOTICE_SOURCE,
            type=STATUS_GEWIJZIGD,
            time=observed_at,
            subject=record.id,
            data={
                "terugmeldingId": record.id,
                "registratie": record.registratie,
                "referentiekenmerk": _reference(record),
                "status": status,
                "vorigeStatus": previous,
                "tijdstip": format_time(registry_time),
                "onverwacht": unexpected,
            },
        )
    )


def transport_changed(
    record: TerugmeldingRecord, kind: RequestKind, status: TransportStatus, at: datetime
) -> NewEvent:
    """`transportstatus-gewijzigd`: the melding (or its withdrawal, `verzoek`) was handed to
    DigiMelding (`verzonden`) or given up (`mislukt`)."""
    key = f"{record.id}/transport/{kind.value}/{status.value}"
    return to_new_event(
        CloudEvent(
            id=str(uuid.uuid5(_NAMESPACE, key)),
            source=NOTICE_SOURCE,
            type=TRANSPORTSTATUS_GEWIJZIGD,
            time=at,
            subject=record.id,
            data={
                "terugmeldingId": record.id,
                "registratie": record.registratie,
                "referentiekenmerk": _reference(record),
                "verzoek": kind.value,
                "transportStatus": status.value,
                "tijdstip": format_time(at),
            },
        )
    )

"""digibridge's own event types: not from a mapping, yet subscribable and documented like those.

The catalogue (`GET /v1/event-types`), the OpenAPI `webhooks` and the AsyncAPI document list
these beside the mapped types, so a consumer can look up every type it may receive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from digibridge.events.notices import NOTICE_SOURCE, SUBSCRIPTION_DISABLED, SUBSCRIPTION_TEST
from digibridge.events.terugmeldingen import STATUS_GEWIJZIGD, TRANSPORTSTATUS_GEWIJZIGD
from digibridge.mapping.dmks import STATUSES


@dataclass(frozen=True)
class BuiltinEventType:
    type: str
    source: str
    description: str
    #: JSON Schema (2020-12) of the events' `data`.
    schema: Mapping[str, Any]


SUBSCRIPTION_DISABLED_TYPE = BuiltinEventType(
    type=SUBSCRIPTION_DISABLED,
    source=NOTICE_SOURCE,
    description="A subscription stopped receiving events (410 Gone from its sink, or its "
    "endpoint failing too long) until it is enabled again.",
    schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["subscriptionId", "sink", "reason", "disabledAt"],
        "properties": {
            "subscriptionId": {"type": "string"},
            "sink": {"type": "string", "format": "uri"},
            "reason": {"type": "string"},
            "disabledAt": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
)

_REFERENTIEKENMERK = {"type": ["string", "null"], "maxLength": 12}

TERUGMELDING_STATUS_TYPE = BuiltinEventType(
    type=STATUS_GEWIJZIGD,
    source=NOTICE_SOURCE,
    description="The registry changed the DMKS status of a terugmelding (seen with "
    "Statusoverzicht). `onverwacht` is true for a change the DMKS lifecycle does not allow; it "
    "is reported all the same. `subject` is the terugmelding id.",
    schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["terugmeldingId", "registratie", "status", "tijdstip", "onverwacht"],
        "properties": {
            "terugmeldingId": {"type": "string"},
            "registratie": {"type": "string"},
            "referentiekenmerk": _REFERENTIEKENMERK,
            "status": {"enum": list(STATUSES)},
            "vorigeStatus": {"enum": [*STATUSES, None]},
            "tijdstip": {"type": "string", "format": "date-time"},
            "onverwacht": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
)

TERUGMELDING_TRANSPORT_TYPE = BuiltinEventType(
    type=TRANSPORTSTATUS_GEWIJZIGD,
    source=NOTICE_SOURCE,
    description="A terugmelding (`verzoek`: melding) or its withdrawal (intrekking) was handed "
    "to DigiMelding (verzonden) or given up (mislukt). `subject` is the terugmelding id.",
    schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["terugmeldingId", "registratie", "verzoek", "transportStatus", "tijdstip"],
        "properties": {
            "terugmeldingId": {"type": "string"},
            "registratie": {"type": "string"},
            "referentiekenmerk": _REFERENTIEKENMERK,
            "verzoek": {"enum": ["melding", "intrekking"]},
            "transportStatus": {"enum": ["ontvangen", "verzonden", "mislukt"]},
            "tijdstip": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
)

SUBSCRIPTION_TEST_TYPE = BuiltinEventType(
    type=SUBSCRIPTION_TEST,
    source=NOTICE_SOURCE,
    description="A test delivery asked for with POST /v1/subscriptions/{id}/test (or sent by "
    "the VNG-style sink check): signed and encoded like every delivery, never stored. "
    "`subject` is the subscription id.",
    schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["subscriptionId", "sentAt"],
        "properties": {
            "subscriptionId": {"type": "string"},
            "sentAt": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
)

#: Every built-in type; features that emit their own events add theirs here.
BUILTIN_EVENT_TYPES: tuple[BuiltinEventType, ...] = (
    SUBSCRIPTION_DISABLED_TYPE,
    SUBSCRIPTION_TEST_TYPE,
    TERUGMELDING_STATUS_TYPE,
    TERUGMELDING_TRANSPORT_TYPE,
)

"""digibridge's own event types: not from a mapping, yet subscribable and documented like those.

The catalogue (`GET /v1/event-types`), the OpenAPI `webhooks` and the AsyncAPI document list
these beside the mapped types, so a consumer can look up every type it may receive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from digibridge.events.notices import NOTICE_SOURCE, SUBSCRIPTION_DISABLED


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

#: Every built-in type; features that emit their own events add theirs here.
BUILTIN_EVENT_TYPES: tuple[BuiltinEventType, ...] = (SUBSCRIPTION_DISABLED_TYPE,)

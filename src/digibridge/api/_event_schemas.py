"""The events digibridge emits, as schemas both API documents embed (OpenAPI `webhooks` and
AsyncAPI messages): the CloudEvents 1.0.2 envelope with the NL GOV extensions, each type's
`data` schema, and the Standard Webhooks headers every delivery carries.

Written once here so the two documents cannot disagree about what a consumer receives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from digibridge.events.builtin import BUILTIN_EVENT_TYPES
from digibridge.mapping.engine import MappingSet

#: The `lo-date` conversion's schema: an LO GBA date that may be known only to the month or
#: year. The NL API Design Rules want a `format` on every date field; `date` would be untrue.
_PARTIAL_DATE_PATTERN = r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$"
PARTIAL_DATE_FORMAT = "partial-date"
_SCHEMAS = "#/components/schemas/"


@dataclass(frozen=True)
class DocumentedType:
    """One event type as the documents show it."""

    type: str
    description: str
    #: JSON Schema of `data`, ready to embed (no `$schema`/`$id`).
    data: Mapping[str, Any]
    #: The informatiearm form's `data` schema; None when the type has no such form.
    informatiearm: Mapping[str, Any] | None
    #: Where `dataschema` points; empty for types without a published schema.
    dataschema: str

    @property
    def name(self) -> str:
        """UpperCamelCase name for components: `nl.brp.persoon-verhuisd` →
        `NlBrpPersoonVerhuisd`."""
        return pascal_case(self.type)


def documented_types(mappings: MappingSet) -> list[DocumentedType]:
    """Every type a subscriber may receive: the mapped ones, then digibridge's own."""
    types = [
        DocumentedType(
            type=info.type,
            description=info.description,
            data=embeddable(info.schema),
            informatiearm=embeddable(info.informatiearm_schema)
            if info.informatiearm_schema
            else None,
            dataschema=info.dataschema,
        )
        for info in mappings.event_types
    ]
    types.extend(
        DocumentedType(
            type=builtin.type,
            description=builtin.description,
            data=embeddable(builtin.schema),
            informatiearm=None,
            dataschema="",
        )
        for builtin in BUILTIN_EVENT_TYPES
    )
    return types


def event_schemas(documented: DocumentedType) -> dict[str, Any]:
    """The components schemas of one type for either document (both keep schemas under
    `#/components/schemas/`): `CloudEvent`, `<Name>Data`, `<Name>InformatiearmData` when the
    type has that form, and `<Name>Event`, the whole structured-mode body."""
    name = documented.name
    schemas: dict[str, Any] = {
        "CloudEvent": CLOUDEVENT_SCHEMA,
        f"{name}Data": dict(documented.data),
    }
    data: dict[str, Any] = {"$ref": f"{_SCHEMAS}{name}Data"}
    if documented.informatiearm is not None:
        schemas[f"{name}InformatiearmData"] = dict(documented.informatiearm)
        data = {
            "anyOf": [data, {"$ref": f"{_SCHEMAS}{name}InformatiearmData"}],
            "description": "informatierijk, or informatiearm (identifiers only, with dataref) "
            "when the subscription asks for that form",
        }
    properties: dict[str, Any] = {"type": {"const": documented.type}, "data": data}
    if documented.dataschema:
        properties["dataschema"] = {"type": "string", "format": "uri"}
    schemas[f"{name}Event"] = {
        "description": documented.description,
        "allOf": [
            {"$ref": f"{_SCHEMAS}CloudEvent"},
            {"type": "object", "required": ["data"], "properties": properties},
        ],
    }
    return schemas


def embeddable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A standalone data schema made fit to sit inside another document: without its own
    `$schema` and `$id`, and with partial dates marked by a `format`."""
    return {key: _annotate(value) for key, value in schema.items() if key not in ("$schema", "$id")}


def _annotate(value: Any) -> Any:
    if isinstance(value, dict):
        annotated = {key: _annotate(item) for key, item in value.items()}
        if annotated.get("pattern") == _PARTIAL_DATE_PATTERN and "format" not in annotated:
            annotated["format"] = PARTIAL_DATE_FORMAT
            annotated.setdefault(
                "description",
                "a date as YYYY-MM-DD, or YYYY-MM or YYYY when only that much is known",
            )
        return annotated
    if isinstance(value, list):
        return [_annotate(item) for item in value]
    return value


def pascal_case(text: str) -> str:
    """UpperCamelCase as Spectral's `pascal` casing reads it: every capital followed by a
    lower-case letter or digit (`OAuthIn` → `OauthIn`, `HTTPError` → `HttpError`)."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z0-9])|[A-Z]?[a-z0-9]+|[A-Z]+", text)
    joined = "".join(word[0].upper() + word[1:].lower() for word in words)
    # A one-letter word before a capital (`O` of `OAuth`) would leave two capitals in a row.
    return re.sub(r"(?<=[A-Z])[A-Z]", lambda match: match.group(0).lower(), joined)


def camel_case(text: str) -> str:
    """lowerCamelCase: operation and message ids."""
    pascal = pascal_case(text)
    return pascal[:1].lower() + pascal[1:]


#: CloudEvents 1.0.2 context attributes plus the NL GOV profile's `dataref` and `sequence`.
CLOUDEVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvent (1.0.2, NL GOV profile) in the JSON format. Further "
    "extension attributes may be present; consumers ignore those they do not know.",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "const": "1.0"},
        "id": {
            "type": "string",
            "minLength": 1,
            "description": "Stable per inbound message and mapping rule: a re-sent message "
            "gives the same id. Use it to recognise duplicates (it equals webhook-id).",
        },
        "source": {
            "type": "string",
            "format": "uri-reference",
            "minLength": 1,
            "description": "The publishing organisation and system as a URN in the nld "
            "namespace, e.g. urn:nld:oin:00000001823288444000:systeem:BRP-component",
        },
        "type": {"type": "string", "minLength": 1, "description": "reverse-DNS event type"},
        "datacontenttype": {"type": "string", "description": "application/json"},
        "dataschema": {
            "type": "string",
            "format": "uri",
            "description": "the JSON Schema of data (GET /v1/event-types/{type}/schema)",
        },
        "subject": {
            "type": "string",
            "minLength": 1,
            "description": "the object the event is about; never a BSN",
        },
        "time": {
            "type": "string",
            "format": "date-time",
            "description": "when the change was registered at the source (not when it "
            "happened in reality; that is in data)",
        },
        "dataref": {
            "type": "string",
            "format": "uri",
            "description": "NL GOV: where the full event can be fetched (informatiearm form)",
        },
        "sequence": {
            "type": "string",
            "description": "NL GOV: lexicographically ordered position within the source",
        },
        "data": {"description": "the event's payload; its schema depends on type"},
    },
}

#: Standard Webhooks and CloudEvents webhook headers on every delivery: name → (schema,
#: description).
DELIVERY_HEADERS: dict[str, tuple[dict[str, Any], str]] = {
    "webhook-id": (
        {"type": "string", "minLength": 1},
        "Standard Webhooks message id, the same on every retry (the CloudEvent id for a "
        "single event): the consumer's idempotency key",
    ),
    "webhook-timestamp": (
        {"type": "string", "pattern": "^[0-9]+$"},
        "Unix seconds of this attempt; reject deliveries more than 5 minutes off",
    ),
    "webhook-signature": (
        {"type": "string", "pattern": "^v1a?,[A-Za-z0-9+/=]+( v1a?,[A-Za-z0-9+/=]+)*$"},
        'Space-separated signatures of "{webhook-id}.{webhook-timestamp}.{body}": v1 '
        "(HMAC-SHA256 with the whsec_ secret) or v1a (Ed25519); several during key rotation",
    ),
    "WebHook-Request-Origin": (
        {"type": "string", "minLength": 1},
        "The sender (CloudEvents HTTP webhook abuse protection), as granted in the validation "
        "handshake",
    ),
}

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

"""The `webhooks` section of the OpenAPI document: one entry per event type, the POST
digibridge makes to a subscription's sink (body schema, signature headers, the answers the
receiver may give). Schemas are added to the document's components."""

from __future__ import annotations

from typing import Any

from digibridge.api._event_schemas import (
    BATCH,
    DELIVERY_HEADERS,
    STRUCTURED,
    DocumentedType,
    camel_case,
    event_schemas,
    pascal_case,
)

_REF = "#/components/"


def add_webhooks(document: dict[str, Any], types: list[DocumentedType]) -> None:
    """One `webhooks` entry per event type: the POST digibridge makes to a subscriber's sink."""
    components = document["components"]
    schemas = components["schemas"]
    components.setdefault("parameters", {}).update(
        {
            _header_parameter_name(name): {
                "name": name,
                "in": "header",
                "required": name != "WebHook-Request-Origin",
                "description": description,
                "schema": schema,
            }
            for name, (schema, description) in DELIVERY_HEADERS.items()
        }
    )
    webhooks: dict[str, Any] = {}
    for documented in types:
        schemas.update(event_schemas(documented))
        event_name = f"{documented.name}Event"
        webhooks[documented.type] = {"post": _webhook_operation(documented, event_name)}
    document["webhooks"] = webhooks
    if webhooks:
        document["tags"].append(
            {"name": "webhooks", "description": "Events POSTed to the sinks of subscriptions"}
        )


def _header_parameter_name(header: str) -> str:
    return pascal_case(header.replace("-", " ")) + "Header"


def _webhook_operation(documented: DocumentedType, event_name: str) -> dict[str, Any]:
    event_ref = {"$ref": f"{_REF}schemas/{event_name}"}
    return {
        "operationId": camel_case(f"deliver {documented.type}"),
        "summary": f"Deliver {documented.type}",
        "description": f"{documented.description}\n\nSent to the subscription's sink as a "
        "signed CloudEvent: structured mode by default, a batch or binary mode (ce- headers, "
        "data as body) when the subscription asks for it.",
        "tags": ["webhooks"],
        "security": [],
        "parameters": [
            {"$ref": f"{_REF}parameters/{_header_parameter_name(name)}"}
            for name in DELIVERY_HEADERS
        ],
        "requestBody": {
            "required": True,
            "content": {
                STRUCTURED: {"schema": event_ref},
                BATCH: {"schema": {"type": "array", "items": event_ref}},
            },
        },
        "responses": {
            "2XX": {"description": "Accepted: the delivery succeeded (200, 201, 202 or 204)"},
            "410": {
                "description": "Gone: digibridge stops sending to this sink and disables the "
                "subscription (announced as nl.digibridge.subscription.disabled)"
            },
            "429": {
                "description": "Too many requests: retried after Retry-After",
                "headers": {"Retry-After": {"$ref": f"{_REF}headers/RetryAfter"}},
            },
            "default": {
                "description": "5xx, timeouts and connection errors are retried with "
                "exponential backoff; any other answer (3xx, 4xx) ends the delivery as a dead "
                "letter, unless the subscription retries 4xx"
            },
        },
    }

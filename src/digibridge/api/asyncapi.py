"""`GET /v1/asyncapi.json`: an AsyncAPI 3.0 document of the events digibridge sends.

One channel per event type (the subscriber's sink is the address, so it is left open), one
`send` operation per channel with the HTTP binding (a POST), and one message per type: the
structured CloudEvent with the type's `data` schema and the Standard Webhooks headers. Like
the OpenAPI `webhooks`, it is rebuilt when the mapping set changes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from digibridge.api._event_schemas import (
    DELIVERY_HEADERS,
    STRUCTURED,
    DocumentedType,
    camel_case,
    documented_types,
    event_schemas,
)
from digibridge.mapping.engine import MappingSet
from digibridge.runtime import Runtime

ASYNCAPI_PATH = "/v1/asyncapi.json"
_HTTP_BINDING_VERSION = "0.3.0"
_COMPONENTS = "#/components/"

router = APIRouter()


def _headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name for name in DELIVERY_HEADERS if name != "WebHook-Request-Origin"],
        "properties": {
            name: {**schema, "description": description}
            for name, (schema, description) in DELIVERY_HEADERS.items()
        },
    }


def build(types: list[DocumentedType], *, version: str, contact: dict[str, str]) -> dict[str, Any]:
    """The document for these event types."""
    schemas: dict[str, Any] = {"DeliveryHeaders": _headers_schema()}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for documented in types:
        name = documented.name
        schemas.update(event_schemas(documented))
        messages[name] = {
            "name": documented.type,
            "title": documented.type,
            "summary": documented.description or documented.type,
            "contentType": STRUCTURED,
            "headers": {"$ref": f"{_COMPONENTS}schemas/DeliveryHeaders"},
            "payload": {"$ref": f"{_COMPONENTS}schemas/{name}Event"},
            "correlationId": {
                "description": "the CloudEvent id, also sent as webhook-id",
                "location": "$message.payload#/id",
            },
            "bindings": {"http": {"bindingVersion": _HTTP_BINDING_VERSION}},
        }
        channel = camel_case(documented.type)
        channels[channel] = {
            "address": None,
            "title": documented.type,
            "description": f"{documented.description}\n\nPOSTed to the sink of every "
            f"subscription whose types and filters select {documented.type}.",
            "messages": {name: {"$ref": f"{_COMPONENTS}messages/{name}"}},
        }
        operations[camel_case(f"send {documented.type}")] = {
            "action": "send",
            "title": f"Deliver {documented.type}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
            "bindings": {"http": {"method": "POST", "bindingVersion": _HTTP_BINDING_VERSION}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "digibridge events",
            "version": version,
            "description": "The NL GOV CloudEvents digibridge sends to webhook subscriptions "
            "(POST /v1/subscriptions). Every delivery is signed per Standard Webhooks; "
            "a 2xx answer is success, 410 stops the subscription, 429 and 5xx are retried.",
            "contact": contact,
            "license": {"name": "EUPL-1.2"},
        },
        "defaultContentType": STRUCTURED,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


class AsyncApiDocument:
    """The document of one gateway, rebuilt when the mapping set changes."""

    def __init__(self, *, version: str, contact: dict[str, str]) -> None:
        self._version = version
        self._contact = contact
        self._built_for: MappingSet | None = None
        self._document: dict[str, Any] = {}

    def document(self, mappings: MappingSet) -> dict[str, Any]:
        if self._built_for is not mappings:
            self._document = build(
                documented_types(mappings), version=self._version, contact=self._contact
            )
            self._built_for = mappings
        return self._document


@router.get(ASYNCAPI_PATH, include_in_schema=False)
async def asyncapi_json(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    builder: AsyncApiDocument = request.app.state.asyncapi
    return JSONResponse(builder.document(runtime.current_mappings()))


def install(app: FastAPI, *, contact: dict[str, str]) -> None:
    app.state.asyncapi = AsyncApiDocument(version=app.version, contact=contact)
    app.include_router(router)

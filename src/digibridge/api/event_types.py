"""`/v1/event-types`: the event catalogue from the loaded mappings; each type's data schema is
what the events' `dataschema` attribute points at."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from digibridge.api.problems import Problem
from digibridge.runtime import Runtime

router = APIRouter(prefix="/v1/event-types", tags=["event-types"])


class EventTypeOut(BaseModel):
    type: str
    registry: str
    description: str
    dataschema: str


@router.get("")
async def list_event_types(request: Request) -> list[EventTypeOut]:
    runtime: Runtime = request.app.state.runtime
    return [
        EventTypeOut(
            type=info.type,
            registry=info.registry,
            description=info.description,
            dataschema=info.dataschema,
        )
        for info in runtime.current_mappings().event_types
    ]


@router.get(
    "/{event_type}/schema",
    response_class=JSONResponse,
    responses={200: {"content": {"application/schema+json": {}}}},
)
async def event_type_schema(event_type: str, request: Request) -> JSONResponse:
    """The JSON Schema of the `data` of events of this type."""
    runtime: Runtime = request.app.state.runtime
    for info in runtime.current_mappings().event_types:
        if info.type == event_type:
            return JSONResponse(dict(info.schema), media_type="application/schema+json")
    raise Problem(404, f"event type {event_type!r} is not in the catalogue")

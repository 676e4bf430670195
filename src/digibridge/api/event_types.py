"""`/v1/event-types`: the event catalogue from the loaded mappings; each type's data schema is
what the events' `dataschema` attribute points at (`?form=informatiearm` for that form's)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from digibridge.api.problems import Problem
from digibridge.runtime import Runtime

router = APIRouter(prefix="/v1/event-types", tags=["event-types"])


class EventTypeOut(BaseModel):
    type: str
    registry: str
    description: str
    version: int = Field(description="the v<N> of the type; 1 when it has no version segment")
    versions: list[str] = Field(description="every type of the same family, oldest first")
    identifiers: list[str] = Field(
        description="the data fields an informatiearm event keeps (dotted paths)"
    )
    dataschema: str
    informatiearmDataschema: str  # noqa: N815 - lowerCamelCase per the NL API Design Rules


@router.get("")
async def list_event_types(request: Request) -> list[EventTypeOut]:
    runtime: Runtime = request.app.state.runtime
    return [
        EventTypeOut(
            type=info.type,
            registry=info.registry,
            description=info.description,
            version=info.version,
            versions=list(info.versions),
            identifiers=list(info.identifiers),
            dataschema=info.dataschema,
            informatiearmDataschema=info.informatiearm_dataschema,
        )
        for info in runtime.current_mappings().event_types
    ]


@router.get(
    "/{event_type}/schema",
    response_class=JSONResponse,
    responses={200: {"content": {"application/schema+json": {}}}},
)
async def event_type_schema(
    event_type: str,
    request: Request,
    form: Literal["informatierijk", "informatiearm"] = Query("informatierijk"),
) -> JSONResponse:
    """The JSON Schema of the `data` of events of this type (in the given form)."""
    runtime: Runtime = request.app.state.runtime
    for info in runtime.current_mappings().event_types:
        if info.type == event_type:
            schema = info.informatiearm_schema if form == "informatiearm" else info.schema
            return JSONResponse(dict(schema), media_type="application/schema+json")
    raise Problem(404, f"event type {event_type!r} is not in the catalogue")

"""`GET /v1/events/{id}`: one stored event, informatierijk, as it was first sent.

The target of the `dataref` attribute of informatiearm events: a consumer that was told only the
identifiers fetches the whole event here (with the same API access as every other route).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from digibridge.api.problems import Problem
from digibridge.runtime import Runtime

router = APIRouter(prefix="/v1/events", tags=["events"])

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=utf-8"


@router.get(
    "/{event_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The event in the CloudEvents JSON format (structured mode)",
            "content": {"application/cloudevents+json": {}},
        },
        404: {"description": "No event with this id", "content": {"application/problem+json": {}}},
    },
)
async def get_event(event_id: str, request: Request) -> Response:
    """The full (informatierijk) event with this id, exactly as stored."""
    runtime: Runtime = request.app.state.runtime
    event = await runtime.store.get_event(event_id)
    if event is None:
        raise Problem(404, f"event {event_id} does not exist")
    return Response(event.body, media_type=CLOUDEVENTS_JSON)

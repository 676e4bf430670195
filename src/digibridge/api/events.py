"""The pull feed: for consumers that cannot receive webhooks (docs/feed.md).

- `GET /v1/events?after=&types=&source=&limit=`: stored events in store order, paged by opaque
  cursors; every page says where to go on (`nextCursor`), also when it is empty.
- `GET /v1/events/stream`: the same feed as Server-Sent Events, live; resumes after the cursor
  in `Last-Event-ID` (or `after`) without loss or repeats.
- `GET /v1/events/{id}`: one stored event, informatierijk, as it was first sent: also the
  target of the `dataref` attribute of informatiearm events.

Every event carries `sequence`, numbered per `source` by the store, so a consumer can also
check per source that it missed nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field

from digibridge.api._event_stream import EventStreamResponse, StreamOptions, event_frames
from digibridge.api._paging import Link
from digibridge.api.problems import Problem
from digibridge.events.feed import BadCursor, decode_cursor, encode_cursor
from digibridge.runtime import Runtime

log = structlog.get_logger("digibridge.api")
router = APIRouter(prefix="/v1/events", tags=["events"])

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=utf-8"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: At most this many types in one filter, each at most this long.
MAX_TYPES = 50
MAX_NAME = 256
_FEED_KEYS = frozenset({"after", "types", "source", "limit"})
_STREAM_KEYS = frozenset({"after", "types", "source"})
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class EventPage(BaseModel):
    """One page of the feed (documentation of the bytes `list_events` writes)."""

    events: list[dict[str, Any]] = Field(
        description="Structured-mode CloudEvents (JSON format), oldest first, each with its "
        "`sequence`"
    )
    nextCursor: str = Field(  # noqa: N815 - lowerCamelCase per the NL API Design Rules
        description="Where to continue: the cursor of the last event on this page; past it "
        "when the events after it did not match the filters; the cursor asked for when "
        "nothing is new"
    )
    links: dict[str, Link] = Field(
        serialization_alias="_links",
        description="`self`; and `next` when more events were waiting when this page was made",
    )


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _refuse_unknown_keys(request: Request, known: frozenset[str]) -> None:
    """A misspelt filter (`type=` for `types=`) must not quietly give the whole feed."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise Problem(
            400,
            f"unknown query parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            invalid_params=[{"name": name, "reason": "unknown parameter"} for name in unknown],
        )


def _types(values: list[str]) -> tuple[str, ...]:
    """`types` given comma-separated, repeated, or both."""
    types = tuple(dict.fromkeys(t.strip() for value in values for t in value.split(",")))
    reason = None
    if any(not t for t in types):
        reason = "an empty type name"
    elif len(types) > MAX_TYPES:
        reason = f"more than {MAX_TYPES} types"
    elif any(len(t) > MAX_NAME for t in types):
        reason = f"a type name longer than {MAX_NAME} characters"
    if reason is not None:
        raise Problem(400, f"types: {reason}", invalid_params=[{"name": "types", "reason": reason}])
    return types


def _position(cursor: str | None, name: str, head: int) -> int:
    """The feed position a cursor names (0 without one); a 400 for one we did not give out,
    or one beyond `head`, the store's newest position."""
    if cursor is None:
        return 0
    try:
        position = decode_cursor(cursor)
    except BadCursor as error:
        reason = str(error)
    else:
        if position <= head:
            return position
        reason = "the cursor lies beyond the end of this feed"
    raise Problem(
        400,
        f"{name}: {reason} (use a nextCursor or an event stream id from this feed)",
        invalid_params=[{"name": name, "reason": reason}],
    )


@router.get(
    "",
    response_class=Response,
    responses={
        200: {
            "description": "A page of the feed",
            "model": EventPage,
            "content": {"application/json": {}},
        },
        400: {"description": "A bad cursor, filter or limit", **_PROBLEM},
    },
)
async def list_events(
    request: Request,
    after: Annotated[
        str | None,
        Query(max_length=64, description="Cursor: only events after it (none: from the start)"),
    ] = None,
    types: Annotated[
        list[str],
        Query(description="Event types, comma-separated or repeated (none: every type)"),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    source: Annotated[
        str | None, Query(max_length=MAX_NAME * 4, description="Only events of this source")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="At most this many events")
    ] = DEFAULT_LIMIT,
) -> Response:
    """Stored events in store order, `limit` at a time; page on with `nextCursor`."""
    _refuse_unknown_keys(request, _FEED_KEYS)
    wanted = _types(types)
    store = _runtime(request).store
    # Read before the events: everything up to `head` is committed, so when the page holds all
    # that matched, nothing past its last event up to `head` matches, and the cursor may skip
    # there (a filter for a rare type does not rescan the same events on every poll).
    head = await store.feed_head()
    start = _position(after, "after", head)
    found = await store.list_events(after=start, types=wanted, source=source, limit=limit + 1)
    page = found[:limit]
    if len(found) > limit:
        next_cursor = encode_cursor(page[-1].position)
    else:
        next_cursor = encode_cursor(max(head, page[-1].position if page else start))
    query: dict[str, str | int] = {}
    if wanted:
        query["types"] = ",".join(wanted)
    if source is not None:
        query["source"] = source
    query["limit"] = limit
    own = {"after": after, **query} if after is not None else query
    links = {"self": {"href": f"/v1/events?{urlencode(own)}"}}
    if len(found) > limit:
        links["next"] = {"href": f"/v1/events?{urlencode({'after': next_cursor, **query})}"}
    rest = json.dumps({"nextCursor": next_cursor, "_links": links}, separators=(",", ":"))
    # The stored bodies go out byte for byte: spliced into the page, not parsed and re-written.
    body = b'{"events":[' + b",".join(e.body for e in page) + b"]," + rest[1:].encode()
    return Response(body, media_type="application/json")


@router.get(
    "/stream",
    response_class=Response,
    responses={
        200: {
            "description": "Server-Sent Events: `event: cloudevent`, `id:` the event's cursor, "
            "`data:` the structured-mode CloudEvent on one line; heartbeat comments",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        400: {"description": "A bad cursor (`after`, `Last-Event-ID`) or filter", **_PROBLEM},
        503: {"description": "This instance serves its maximum of streams", **_PROBLEM},
    },
)
async def stream_events(
    request: Request,
    after: Annotated[
        str | None,
        Query(max_length=64, description="Cursor: start after it (none: with what comes next)"),
    ] = None,
    types: Annotated[
        list[str],
        Query(description="Event types, comma-separated or repeated (none: every type)"),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    source: Annotated[
        str | None, Query(max_length=MAX_NAME * 4, description="Only events of this source")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=64,
            description="Set by an EventSource that reconnects: resume after it (wins over "
            "`after`)",
        ),
    ] = None,
) -> Response:
    """The feed, live, as Server-Sent Events; resume with `Last-Event-ID` or `after`."""
    _refuse_unknown_keys(request, _STREAM_KEYS)
    wanted = _types(types)
    runtime = _runtime(request)
    # An EventSource reconnects to the URL it was opened with (its `after` included) and adds
    # the last id it saw: that id is where to go on from.
    head = await runtime.store.feed_head()
    if last_event_id:
        start = _position(last_event_id, "Last-Event-ID", head)
    elif after is not None:
        start = _position(after, "after", head)
    else:
        start = head
    feed = runtime.feed
    if not feed.acquire():
        detail = (
            "this instance is stopping"
            if feed.closed
            else f"this instance serves its maximum of {feed.max_streams} event streams"
        )
        raise Problem(
            503,
            f"{detail}; retry later, or page through GET /v1/events",
            headers={"Retry-After": "5"},
        )
    log.info("event_stream_opened", start=start, types=list(wanted), streams=feed.streams)
    settings = runtime.settings
    options = StreamOptions(
        position=start,
        types=wanted,
        source=source,
        heartbeat=settings.sse_heartbeat,
        poll_interval=settings.sse_poll_interval,
    )
    return EventStreamResponse(event_frames(runtime.store, feed, options), release=feed.release)


@router.get(
    "/{event_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The event in the CloudEvents JSON format (structured mode)",
            "content": {"application/cloudevents+json": {}},
        },
        404: {"description": "No event with this id", **_PROBLEM},
    },
)
async def get_event(event_id: str, request: Request) -> Response:
    """The full (informatierijk) event with this id, exactly as stored."""
    event = await _runtime(request).store.get_event(event_id)
    if event is None:
        raise Problem(404, f"event {event_id} does not exist")
    return Response(event.body, media_type=CLOUDEVENTS_JSON)

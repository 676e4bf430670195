"""Server-Sent Events of the feed: one CloudEvent per SSE event, the cursor as its `id`.

A stream reads the store from its start position onwards, page by page; when it has caught up
it waits for the `FeedSignal` (events stored by this process) or its poll interval (events
stored by another instance), and sends a heartbeat comment after a quiet spell so proxies keep
the connection open and the client notices a dead one. It ends when the client goes away and
when the server stops.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import structlog
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from digibridge.events.feed import FeedSignal, encode_cursor
from digibridge.store.types import Store, StoredEvent, StoreError

log = structlog.get_logger("digibridge.api")

#: The SSE event name of every event: a client listens with `addEventListener("cloudevent")`.
EVENT_NAME = b"cloudevent"
#: Reconnection delay suggested to clients (`retry:`), in milliseconds.
RETRY_MS = 3000
#: Events read from the store per step.
PAGE = 100
HEARTBEAT = b": heartbeat\n\n"


@dataclass(frozen=True)
class StreamOptions:
    """Where a stream starts and what it carries."""

    position: int
    types: Sequence[str]
    source: str | None
    heartbeat: float
    poll_interval: float


def event_frame(event: StoredEvent) -> bytes:
    """`id:` (the event's cursor), `event: cloudevent`, and the structured-mode JSON as data.

    Stored bodies are compact JSON, one line; a body with line breaks (whitespace between
    tokens: JSON strings cannot hold raw ones) goes as several `data:` lines, which the client
    joins with newlines into the same JSON."""
    lines = [b"id: " + encode_cursor(event.position).encode(), b"event: " + EVENT_NAME]
    lines += [b"data: " + line for line in event.body.splitlines() or [b""]]
    return b"\n".join(lines) + b"\n\n"


async def event_frames(
    store: Store, feed: FeedSignal, options: StreamOptions
) -> AsyncIterator[bytes]:
    """The stream's bytes: a `retry:` hint and the start cursor, then events and heartbeats."""
    position = options.position
    # An `id:` without data dispatches nothing but sets the client's Last-Event-ID, so a client
    # that reconnects before any event arrives resumes here too.
    yield f"retry: {RETRY_MS}\nid: {encode_cursor(position)}\n\n".encode()
    quiet_since = time.monotonic()
    while not feed.closed:
        ticket = feed.ticket()
        try:
            # Everything up to `head` is committed before the events are read: when fewer than
            # a page match, none past the last of them up to `head` does, and the stream skips
            # there instead of reading the same unwanted events on every wake-up.
            head = await store.feed_head()
            events = await store.list_events(
                after=position, types=options.types, source=options.source, limit=PAGE
            )
        except StoreError as error:
            log.warning("event_stream_store_error", error=str(error))
            return
        if events:
            yield b"".join(event_frame(event) for event in events)
            quiet_since = time.monotonic()
            if len(events) == PAGE:
                position = events[-1].position
                continue  # more may be waiting
        position = max(head, events[-1].position if events else position)
        until_heartbeat = options.heartbeat - (time.monotonic() - quiet_since)
        if until_heartbeat <= 0:
            yield HEARTBEAT
            quiet_since = time.monotonic()
            continue
        await feed.wait(ticket, min(until_heartbeat, options.poll_interval))


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` that gives its stream slot back however the stream ends."""

    def __init__(self, frames: AsyncIterator[bytes], *, release: Callable[[], None]) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:
            pass  # the client went away while we wrote: the ordinary end of a stream
        finally:
            self._release()
            log.info("event_stream_closed", seconds=round(time.monotonic() - started, 3))

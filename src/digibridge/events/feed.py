"""The pull feed's plumbing: opaque cursors, and the signal that wakes waiting event streams.

A cursor names a position in the store's feed (`StoredEvent.position`). It is base64url of
`v1:<position>`: opaque to consumers, the same for the same position every time, and strict to
parse, so a mangled or foreign cursor is refused instead of silently starting somewhere else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re

from digibridge.errors import DigibridgeError

_PREFIX = "v1:"
_TEXT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_POSITION = re.compile(r"0|[1-9][0-9]{0,18}")


class BadCursor(DigibridgeError, ValueError):
    """A cursor this gateway did not hand out."""


def encode_cursor(position: int) -> str:
    """The cursor of a feed position (0: before the first event)."""
    if position < 0:
        raise ValueError(f"feed position {position} is negative")
    return base64.urlsafe_b64encode(f"{_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor names; BadCursor unless it is exactly what `encode_cursor` gives."""
    if not _TEXT.fullmatch(cursor):
        raise BadCursor("a cursor is 1 to 64 characters of base64url")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCursor("the cursor is not one this feed gave out") from None
    if not text.startswith(_PREFIX) or not _POSITION.fullmatch(text.removeprefix(_PREFIX)):
        raise BadCursor("the cursor is not one this feed gave out")
    position = int(text.removeprefix(_PREFIX))
    if encode_cursor(position) != cursor:
        raise BadCursor("the cursor is not one this feed gave out")
    return position


class FeedSignal:
    """Wakes the event streams of this process when events are stored, ends them at shutdown,
    and caps how many run at once.

    A stream takes a `ticket()` before it reads the store and waits on it after finding
    nothing new; a `notify()` in between sets that ticket, so no wake-up is lost. Events that
    another instance stores are found by the streams' polling instead. Used from the event loop
    only."""

    def __init__(self, *, max_streams: int) -> None:
        self.max_streams = max_streams
        self._ticket = asyncio.Event()
        self._streams = 0
        self.closed = False

    @property
    def streams(self) -> int:
        """Streams running now."""
        return self._streams

    def ticket(self) -> asyncio.Event:
        """Set by the next `notify()` (or `close()`)."""
        return self._ticket

    def notify(self) -> None:
        """New events are in the store: wake every waiting stream."""
        ticket, self._ticket = self._ticket, asyncio.Event()
        ticket.set()

    async def wait(self, ticket: asyncio.Event, timeout: float) -> None:
        """Until `ticket` is set or `timeout` seconds pass, whichever is first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), timeout)

    def acquire(self) -> bool:
        """Take a stream slot; False when all `max_streams` are taken (or the signal closed)."""
        if self.closed or self._streams >= self.max_streams:
            return False
        self._streams += 1
        return True

    def release(self) -> None:
        self._streams = max(0, self._streams - 1)

    def open(self) -> None:
        """Let streams run (again): the server is starting."""
        self.closed = False

    def close(self) -> None:
        """End every stream at its next step, and refuse new ones: the server is stopping."""
        self.closed = True
        self.notify()

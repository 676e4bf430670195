"""A Server-Sent Events client for tests: a streaming httpx request read frame by frame.

Parses the `text/event-stream` format as a browser's EventSource does (fields `id`, `event`,
`data`, `retry`; comment lines; a blank line ends a frame), and keeps the last event id, so a
test can drop the connection and resume with `Last-Event-ID` the way EventSource would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

DEADLINE = 10.0


@dataclass
class Frame:
    """One frame: its fields, or the comment of a comment line."""

    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    retry: int | None = None
    comment: str | None = None

    @property
    def cloudevent(self) -> dict[str, Any] | None:
        if not self.data:
            return None
        document: dict[str, Any] = json.loads("\n".join(self.data))
        return document


class SseStream:
    """`GET url` as an event stream; use as a context manager, `close()` drops the connection."""

    def __init__(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout: float = DEADLINE,
    ) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(read_timeout))
        self._request = self._client.stream("GET", url, params=params, headers=headers)
        self.response = self._request.__enter__()
        self._lines: Iterator[str] = self.response.iter_lines()
        #: The `id` of the last frame that had one, as EventSource keeps it.
        self.last_event_id: str | None = None

    def __enter__(self) -> SseStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._request.__exit__(None, None, None)
        self._client.close()

    def frame(self) -> Frame | None:
        """The next frame or comment; None when the server ended the stream."""
        current = Frame()
        has_field = False
        for line in self._lines:
            if line.startswith(":"):
                if has_field:
                    continue  # comments inside a frame are ignored
                return Frame(comment=line[1:].strip())
            if not line:
                if has_field:
                    return current
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            has_field = True
            if name == "id":
                current.id = value
                self.last_event_id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data.append(value)
            elif name == "retry":
                current.retry = int(value)
        return current if has_field else None

    def events(self, count: int, *, deadline: float = DEADLINE) -> list[Frame]:
        """The next `count` frames that carry data, skipping heartbeats; fails the test if the
        stream ends or they do not arrive within `deadline` seconds."""
        until = time.monotonic() + deadline
        found: list[Frame] = []
        while len(found) < count:
            if time.monotonic() > until:
                raise AssertionError(f"{len(found)} of {count} events within {deadline}s")
            frame = self.frame()
            if frame is None:
                raise AssertionError(f"the stream ended after {len(found)} of {count} events")
            if frame.data:
                found.append(frame)
        return found

    def heartbeat(self, *, deadline: float = DEADLINE) -> Frame:
        """The next comment frame; fails the test if none comes within `deadline` seconds."""
        until = time.monotonic() + deadline
        while time.monotonic() <= until:
            frame = self.frame()
            if frame is None:
                raise AssertionError("the stream ended without a heartbeat")
            if frame.comment is not None:
                return frame
        raise AssertionError(f"no heartbeat within {deadline}s")

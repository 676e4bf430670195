"""The LIKE pattern matcher (`%` any run, `_` one character, `\\%` `\\_` `\\\\` literal).

Patterns are split on `%` into fixed-length segments matched left to right (the first anchored
at the start, the last at the end, each middle one at its leftmost place). That is exact for
such patterns and takes at most O(len(value) x len(pattern)) steps, so a hostile pattern such
as `'%a%a%a%a%a%b'` cannot make the ingest path backtrack exponentially the way a translated
regular expression with `.*` would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Segment:
    regex: re.Pattern[str]
    length: int


class LikePattern:
    """A compiled LIKE pattern."""

    __slots__ = ("_segments",)

    def __init__(self, pattern: str) -> None:
        segments: list[_Segment] = []
        parts: list[str] = []
        length = 0
        index = 0
        while index < len(pattern):
            char = pattern[index]
            if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "%_\\":
                parts.append(re.escape(pattern[index + 1]))
                length += 1
                index += 2
                continue
            if char == "%":
                segments.append(_Segment(re.compile("".join(parts), re.DOTALL), length))
                parts, length = [], 0
            else:
                parts.append("." if char == "_" else re.escape(char))
                length += 1
            index += 1
        segments.append(_Segment(re.compile("".join(parts), re.DOTALL), length))
        self._segments = tuple(segments)

    def matches(self, value: str) -> bool:
        first, *middle = self._segments
        if not middle:
            return first.regex.fullmatch(value) is not None
        *middle, last = middle
        if first.regex.match(value) is None:
            return False
        position = first.length
        for segment in middle:
            found = segment.regex.search(value, position)
            if found is None:
                return False
            position = found.end()
        start = len(value) - last.length
        return start >= position and last.regex.fullmatch(value, start) is not None

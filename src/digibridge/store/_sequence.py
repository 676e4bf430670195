"""The `sequence` extension attribute the store gives every event, per `source`.

The NL GOV profile adopts CloudEvents `sequence` (a string, lexicographically ordered) so that a
consumer can tell a gap from a quiet source. The store numbers the events of each source 1, 2,
3, … inside the ingest transaction, so within one store there are no gaps and no repeats, and
writes the number zero-padded to a fixed width: text order is numeric order.

The mapping's serialised body is kept byte for byte: the attribute is spliced in before the
closing brace of the JSON object. Only a body that already names `sequence` somewhere (or holds
backslash-u escapes) is parsed and written again.
"""

from __future__ import annotations

import json
from typing import Any

#: Digits of a sequence: room for any 64-bit count.
SEQUENCE_WIDTH = 20
_NAME = b'"sequence"'
_ESCAPE = b"\\u"


def format_sequence(number: int) -> str:
    """`number` (1, 2, …) as a fixed-width sequence value."""
    if number < 1 or number >= 10**SEQUENCE_WIDTH:
        raise ValueError(f"sequence {number} is out of range")
    return f"{number:0{SEQUENCE_WIDTH}d}"


def with_sequence(body: bytes, sequence: str) -> bytes:
    """The structured-mode CloudEvent `body` (a JSON object) with `sequence` set.

    ValueError when `body` is not a JSON object."""
    inner = body.strip()
    # An escape could spell the name in a way the byte search misses: such bodies are parsed.
    plain = _NAME not in inner and _ESCAPE not in inner
    if inner.startswith(b"{") and inner.endswith(b"}") and plain:
        member = b'"sequence":' + json.dumps(sequence).encode()
        head = inner[:-1].rstrip()
        separator = b"" if head == b"{" else b","
        return head + separator + member + b"}"
    # A body that already mentions "sequence" (a mapping that sets it, or data that uses the
    # word): parse it, so the store's value replaces any top-level one instead of doubling it.
    try:
        document: Any = json.loads(body)
    except ValueError as error:
        raise ValueError(f"event body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError("event body is not a JSON object")
    document["sequence"] = sequence
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

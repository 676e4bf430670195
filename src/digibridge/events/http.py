"""The CloudEvents HTTP binding: one stored event (structured JSON) in each content mode.

- structured: the JSON as stored, `application/cloudevents+json; charset=utf-8`.
- binary: context attributes as `ce-` headers, percent-encoded per §3.1.3.2 of the binding
  (space, `"`, `%` and everything outside printable ASCII, as UTF-8 bytes in upper-case hex);
  `datacontenttype` becomes `Content-Type` (no `ce-datacontenttype`); the body is the data.
- batch: a JSON array of the stored events, `application/cloudevents-batch+json`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"

#: Characters in 0x21..0x7E that still must be encoded.
_ENCODE_ASCII = frozenset(' "%')


def percent_encode(value: str) -> str:
    """A `ce-` header value per the HTTP binding §3.1.3.2."""
    out: list[str] = []
    for char in value:
        if "\x21" <= char <= "\x7e" and char not in _ENCODE_ASCII:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def structured(body: bytes) -> tuple[dict[str, str], bytes]:
    return {"content-type": STRUCTURED_CONTENT_TYPE}, body


def batch(bodies: Sequence[bytes]) -> tuple[dict[str, str], bytes]:
    """The stored bodies as one JSON array, byte for byte."""
    return {"content-type": BATCH_CONTENT_TYPE}, b"[" + b",".join(bodies) + b"]"


def binary(body: bytes) -> tuple[dict[str, str], bytes]:
    """The stored structured-mode event in binary mode: (headers, body)."""
    document: dict[str, Any] = json.loads(body)
    content_type = document.pop("datacontenttype", None)
    has_data = "data" in document
    data = document.pop("data", None)
    data_base64 = document.pop("data_base64", None)
    headers = {f"ce-{name}": percent_encode(_text(value)) for name, value in document.items()}
    if data_base64 is not None:
        content = base64.b64decode(data_base64)
    elif not has_data:
        content = b""
    elif isinstance(data, str) and not _is_json(content_type):
        content = data.encode("utf-8")
    else:
        content = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    if content_type is not None or content:
        headers["content-type"] = content_type or "application/json"
    return headers, content


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"

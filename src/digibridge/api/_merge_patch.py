"""JSON Merge Patch (RFC 7396): how a PATCH body changes a JSON document."""

from __future__ import annotations

import json
from typing import Any

#: Deeper documents are refused before anything walks them recursively.
MAX_DEPTH = 32


class PatchError(ValueError):
    """A body that is not a usable merge patch; the message says why."""


def parse_patch(raw: bytes) -> dict[str, Any]:
    """The patch document of a PATCH body: a JSON object, at most `MAX_DEPTH` deep."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise PatchError(f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise PatchError("a merge patch of a subscription is a JSON object")
    if json_depth(document) > MAX_DEPTH:
        raise PatchError(f"the body is nested deeper than {MAX_DEPTH} levels")
    return document


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 §2: objects merge member by member, `null` removes a member, anything else
    (arrays included) replaces the target."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


def json_depth(document: Any) -> int:
    """Nesting depth of parsed JSON, found without recursion (so any depth can be measured)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)
    return deepest

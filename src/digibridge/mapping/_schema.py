"""JSON Schema of an event's `data`, derived from the rule that builds it.

The schema follows the spec tree one to one: objects list their fields as `properties` and the
non-optional ones as `required`; leaves take the schema their conversion declares. Objects stay
open (no `additionalProperties: false`): adding an optional field to a mapping is then a
compatible change for consumers who validate.
"""

from __future__ import annotations

from typing import Any

from digibridge.mapping.model import (
    ForEachSpec,
    LiteralSpec,
    ObjectSpec,
    Rule,
    TemplateSpec,
    ValueSpec,
    XPathSpec,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def data_schema(rule: Rule, schema_id: str) -> dict[str, Any]:
    """The complete, standalone schema document of `rule`'s data, identified by `schema_id`."""
    document: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id,
        "title": rule.event.type,
    }
    if rule.description:
        document["description"] = rule.description
    document.update(value_schema(rule.data))
    return document


def value_schema(spec: ValueSpec) -> dict[str, Any]:
    """The schema of one value spec."""
    if isinstance(spec, XPathSpec):
        if spec.lookup is not None:
            return {"type": "string", "enum": sorted(set(spec.lookup.table.values()))}
        return dict(spec.convert.schema)
    if isinstance(spec, LiteralSpec):
        return {"type": _json_type(spec.value), "const": spec.value}
    if isinstance(spec, TemplateSpec):
        return {"type": "string"}
    if isinstance(spec, ForEachSpec):
        return {"type": "array", "items": value_schema(spec.item), "minItems": 1}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: value_schema(child) for name, child in spec.fields},
    }
    required = [name for name, child in spec.fields if not child.optional]
    if required:
        schema["required"] = required
    return schema


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def informatiearm_schema(rule: Rule, schema_id: str) -> dict[str, Any]:
    """The schema of `rule`'s data in the informatiearm form: only its identifier fields."""
    document: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id,
        "title": f"{rule.event.type} (informatiearm)",
        "description": ("The identifiers of the object; the full event is at the event's dataref."),
    }
    document.update(_picked_schema(rule.data, rule.identifiers))
    return document


def _picked_schema(spec: ObjectSpec, paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    fields = dict(spec.fields)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name in dict.fromkeys(path[0] for path in paths):
        child = fields[name]
        deeper = tuple(path[1:] for path in paths if path[0] == name and len(path) > 1)
        whole = any(len(path) == 1 for path in paths if path[0] == name)
        if whole or not isinstance(child, ObjectSpec):
            properties[name] = value_schema(child)
        else:
            properties[name] = _picked_schema(child, deeper)
        if not child.optional:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema

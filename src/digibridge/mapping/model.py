"""The mapping model: what a loaded mapping file is, as typed, immutable records.

`loader.py` builds these from YAML (checking everything once); `engine.py` only reads them.

    MappingFile           one YAML file: registry, default OIN, namespaces, lookups, rules
    └── Rule              when a message matches, which event(s) it becomes
        ├── MatchSpec     basisregistratie + gebeurtenissoort (+ version, payload root, `when`)
        ├── Items         optional rule-level `for-each`: one event per selected element
        ├── EventSpec     type, source, subject, time, extension attributes
        ├── ObjectSpec    the `data` object; its fields are ValueSpecs:
        │     XPathSpec     an XPath 1.0 expression + a conversion or a lookup table
        │     LiteralSpec   a constant
              TemplateSpec  a string with {envelope variable} placeholders
              ObjectSpec    a nested object (same context node)
        │     ForEachSpec   an array: one item per node, each item evaluated on its node
        └── identifiers + dataref: the informatiearm form (identifiers only + a link)

A `versions:` entry in a file becomes a Rule of its own (`<name>-v<N>`), so everything below
treats a v2 type exactly like any other rule.

Every spec keeps the `Mark` (file:line:column) it was read from, so message-time errors point
at the mapping line too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digibridge.mapping._convert import Converter
from digibridge.mapping._xpath import CompiledXPath
from digibridge.mapping._yaml import Mark

#: Envelope fields, available as XPath variables (`$kenmerk`) and template fields (`{kenmerk}`).
#: Timestamps are RFC 3339 UTC strings; absent optional fields are empty strings.
#: `verstrekker_oin` falls back to the mapping file's `oin` when the message carries none (v4).
ENVELOPE_VARIABLES = (
    "form",
    "kenmerk",
    "kenmerk_verstrekker",
    "referentie_id",
    "basisregistratie",
    "gebeurtenissoort",
    "gebeurtenissoort_versie",
    "versie_berichttype",
    "abonnement",
    "abonnement_versie",
    "tijdstempel_verstrekker",
    "tijdstempel_digilevering",
    "verstrekker_oin",
    "ontvanger_oin",
)
#: Fields of a `dataref` template besides the envelope fields: the gateway's public base URL,
#: the event's id, type and subject, and `data.<path>` of an identifier field.
DATAREF_FIELDS = ("base", "id", "type", "subject")


@dataclass(frozen=True)
class Lookup:
    """A code list from the file's `lookups`: code → label."""

    name: str
    table: Mapping[str, str]
    mark: Mark


@dataclass(frozen=True)
class XPathSpec:
    """A value read from the message by an XPath 1.0 expression, then converted."""

    expression: str
    compiled: CompiledXPath = field(compare=False, repr=False)
    convert: Converter
    optional: bool
    mark: Mark
    #: A code list the (string) value is translated by; an unknown code is a mapping error.
    lookup: Lookup | None = None


@dataclass(frozen=True)
class LiteralSpec:
    """A constant value."""

    value: str | int | float | bool
    mark: Mark
    optional: bool = False


@dataclass(frozen=True)
class TemplateSpec:
    """A string built from literal text and `{envelope_variable}` placeholders."""

    template: str
    #: Literal text and variable names, alternating: text, name, text, name, …, text.
    parts: tuple[str, ...]
    optional: bool
    mark: Mark


@dataclass(frozen=True)
class ObjectSpec:
    """A JSON object; fields are evaluated in the same context node as the object."""

    fields: tuple[tuple[str, ValueSpec], ...]
    mark: Mark

    @property
    def optional(self) -> bool:
        """An object is required as soon as one of its fields is."""
        return all(spec.optional for _, spec in self.fields)


@dataclass(frozen=True)
class ForEachSpec:
    """A JSON array: `item` evaluated once per node that `nodes` selects, in document order."""

    expression: str
    nodes: CompiledXPath = field(compare=False, repr=False)
    item: ValueSpec
    optional: bool
    mark: Mark


ValueSpec = XPathSpec | LiteralSpec | TemplateSpec | ObjectSpec | ForEachSpec


@dataclass(frozen=True)
class Condition:
    """An XPath 1.0 expression read as a boolean (`when:`)."""

    expression: str
    compiled: CompiledXPath = field(compare=False, repr=False)
    mark: Mark


@dataclass(frozen=True)
class Items:
    """A rule-level `for-each`: the elements that each become one event (in document order),
    each the context node of that event's `event` and `data` expressions."""

    expression: str
    compiled: CompiledXPath = field(compare=False, repr=False)
    mark: Mark


@dataclass(frozen=True)
class MatchSpec:
    """Which messages a rule applies to. Unset optional parts match anything."""

    basisregistratie: str
    gebeurtenissoort: str
    gebeurtenissoort_versie: str | None
    versie_berichttype: str | None
    #: The payload root element in Clark notation (`{namespace}local`).
    payload: str | None
    when: Condition | None


@dataclass(frozen=True)
class EventSpec:
    """How the context attributes of the event are filled."""

    type: str
    source: ValueSpec
    subject: ValueSpec | None
    #: Registration time; None means the envelope's `tijdstempel_verstrekker`.
    time: XPathSpec | None
    extensions: tuple[tuple[str, ValueSpec], ...]


@dataclass(frozen=True)
class Rule:
    """One mapping rule: a message that matches becomes one event (or one per `for-each` item)."""

    name: str
    description: str
    registry: str
    match: MatchSpec
    event: EventSpec
    data: ObjectSpec
    mark: Mark
    items: Items | None = None
    #: Paths of the `data` fields that identify the object (`("vestiging", "vestigingsnummer")`):
    #: all the informatiearm form keeps of `data`.
    identifiers: tuple[tuple[str, ...], ...] = ()
    #: Template of the informatiearm `dataref`; None means `{base}/v1/events/{id}`.
    dataref: TemplateSpec | None = None


@dataclass(frozen=True)
class MappingFile:
    """One registry's mapping file, loaded and checked."""

    path: Path
    registry: str
    #: The registry's OIN: `{verstrekker_oin}` when the message carries none.
    oin: str | None
    namespaces: Mapping[str, str]
    rules: tuple[Rule, ...]
    lookups: Mapping[str, Lookup] = field(default_factory=dict)


@dataclass(frozen=True)
class EventTypeInfo:
    """One entry of the event catalogue (`GET /v1/event-types`)."""

    type: str
    registry: str
    rule: str
    description: str
    #: URL of the data schema, the events' `dataschema` attribute.
    dataschema: str
    #: JSON Schema (2020-12) of the events' `data`, derived from the rule's data spec.
    schema: Mapping[str, Any]
    #: Where the rule is defined, `file:line:column`.
    location: str
    #: The `v<N>` of the type (1 when it has no version segment).
    version: int = 1
    #: Every type of the same family (the type without its version segment), oldest first.
    versions: tuple[str, ...] = ()
    #: Dotted paths of the identifier fields in `data`.
    identifiers: tuple[str, ...] = ()
    #: `dataschema` of the informatiearm form, and that form's schema.
    informatiearm_dataschema: str = ""
    informatiearm_schema: Mapping[str, Any] = field(default_factory=dict)

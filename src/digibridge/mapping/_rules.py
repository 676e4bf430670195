"""A mapping rule compiled, once at load, into what makes its events from a message.

`CompiledRule` holds a rule's `match` as plain comparisons and a `when` reader, and its event as
readers (`_values.py`) for data, source, subject, extensions and time, the informatiearm
projection (the identifier paths) and the `dataref` as a list of pieces. Mapping a message is
then: compare, call the readers, build the two CloudEvents. The engine (`engine.py`) decides
which rules to try and collects what they make.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from lxml import etree

from digibridge.events import nlgov
from digibridge.events.types import CloudEvent
from digibridge.mapping._values import FieldProblem, Message, ValueCompiler, envelope_field
from digibridge.mapping._xpath import CompiledXPath
from digibridge.mapping.model import (
    ForEachSpec,
    LiteralSpec,
    MappingFile,
    ObjectSpec,
    Rule,
    TemplateSpec,
    ValueSpec,
    XPathSpec,
)
from digibridge.mapping.types import Levering

#: Namespace of the UUID v5 event ids. Fixed forever: changing it changes every event id.
EVENT_ID_NAMESPACE = uuid.UUID("d76a5a2f-6480-471a-bb6d-5cb72953637f")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_id(kenmerk: str, rule_name: str, index: int) -> str:
    """The deterministic id of the `index`-th event that rule `rule_name` makes of a message:
    `uuid5(EVENT_ID_NAMESPACE, "kenmerk|rule|index")`, computed without building `uuid.UUID`
    objects (a tenth of the mapping of a message went there)."""
    name = f"{kenmerk}|{rule_name}|{index}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


#: How many distinct computed sources a rule remembers as checked.
_MAX_CHECKED_SOURCES = 256

#: One piece of a `dataref`: its text from the event id, subject, informatiearm data and message.
_DatarefPiece = Callable[[str, str | None, Mapping[str, Any], Levering], object]


class CompiledRule:
    """One rule of a loaded mapping set, ready to map messages.

    `dataschema` and `informatiearm_dataschema` are the events' `dataschema` URLs, `base` the
    gateway's public base URL (the default `dataref` is `{base}/v1/events/{id}`).
    """

    def __init__(
        self,
        mapping_file: MappingFile,
        rule: Rule,
        *,
        base: str,
        dataschema: str,
        informatiearm_dataschema: str,
    ) -> None:
        self.rule = rule
        match = rule.match
        #: The message kind the rule is for: (basisregistratie, gebeurtenissoort).
        self.kind = (match.basisregistratie, match.gebeurtenissoort)
        #: Whether its expressions may leave their context's subtree (see `Message.payload`).
        self.escapes = _escapes(rule)
        compiler = ValueCompiler(rule.name, mapping_file.oin)
        self._fail = compiler.fail
        # The match's parts that are set, as (what, wanted, how to read it from a message).
        envelope_checks: tuple[tuple[str, str | None, Callable[[Levering], object]], ...] = (
            ("gebeurtenissoort", match.gebeurtenissoort, lambda m: m.gebeurtenissoort),
            (
                "gebeurtenissoort versie",
                match.gebeurtenissoort_versie,
                lambda m: m.gebeurtenissoort_versie,
            ),
            ("versieBerichttype", match.versie_berichttype, lambda m: m.versie_berichttype),
            ("payload root", match.payload, lambda m: m.payload.tag),
        )
        self._envelope_checks = tuple(check for check in envelope_checks if check[1] is not None)
        self._when = (
            None
            if match.when is None
            else (
                compiler.xpath(match.when.compiled, match.when.mark),
                f"when {match.when.expression!r} is false",
            )
        )
        self._items = (
            None if rule.items is None else compiler.xpath(rule.items.compiled, rule.items.mark)
        )
        event = rule.event
        self._type = event.type
        self._data = compiler.value(rule.data, "data")
        self._source = compiler.attribute(event.source, "source")
        # A literal source passed the NL GOV check at load; a computed one is checked per event.
        self._check_source = not isinstance(event.source, LiteralSpec)
        #: Computed sources that passed the check: a registry sends from a handful of OINs, so
        #: each is checked once (bounded, in case a message field varies wildly).
        self._sources_ok: set[str] = set()
        self._subject = (
            None if event.subject is None else compiler.attribute(event.subject, "subject")
        )
        self._extensions = tuple(
            (name, compiler.attribute(spec, f"extensions.{name}"), spec.mark)
            for name, spec in event.extensions
        )
        self._time = compiler.time(event.time)
        self._identifiers = rule.identifiers
        self._dataschema = dataschema
        self._informatiearm_dataschema = informatiearm_dataschema
        self._dataref: _Dataref = (
            _DefaultDataref(base)
            if rule.dataref is None
            else _TemplateDataref(rule.dataref, compiler, base, event.type, mapping_file.oin)
        )
        #: The buckets the rule's child paths look up in the `ChildIndex`.
        self.index_plan = compiler.plan

    # --- matching -----------------------------------------------------------------------------

    def mismatch(self, message: Message) -> str | None:
        """Why the rule does not apply to the message, or None when it does."""
        levering = message.levering
        for what, wanted, actual_of in self._envelope_checks:
            actual = actual_of(levering)
            if actual != wanted:
                return f"{what} is {actual!r}, the rule wants {wanted!r}"
        if self._when is not None:
            when, false = self._when
            if not _xpath_boolean(when(message.payload(self.escapes), message)):
                return false
        return None

    # --- events -------------------------------------------------------------------------------

    def events(self, message: Message) -> tuple[CloudEvent, ...] | str:
        """The rule's events for `message`, or why it does not apply; MappingError when it
        applies but the message lacks what the rule needs."""
        reason = self.mismatch(message)
        if reason is not None:
            return reason
        payload = message.payload(self.escapes)
        items = self.rule.items
        if items is None or self._items is None:
            return (self._event(payload, message, 0),)
        nodes = self._items(payload, message)
        if not isinstance(nodes, list) or not all(isinstance(n, etree._Element) for n in nodes):
            self._fail(f"for-each {items.expression!r} must select elements", items.mark)
        if not nodes:
            return f"for-each {items.expression!r} selects nothing"
        return tuple(self._event(node, message, index) for index, node in enumerate(nodes))

    def _event(self, node: etree._Element, message: Message, index: int) -> CloudEvent:
        try:
            return self._make(node, message, index)
        except FieldProblem as problem:
            raise problem.error(self.rule.name) from problem.__cause__

    def _make(self, node: etree._Element, message: Message, index: int) -> CloudEvent:
        rule = self.rule
        data = self._data(node, message)
        source = self._source(node, message)
        if source is None:  # pragma: no cover - the loader refuses an optional source
            self._fail("source has no value", rule.mark)
        source = str(source)
        if self._check_source and source not in self._sources_ok:
            self._check(nlgov.source_problems(source), "source", rule.mark)
            if len(self._sources_ok) < _MAX_CHECKED_SOURCES:
                self._sources_ok.add(source)
        subject = None
        if self._subject is not None:
            subject_value = self._subject(node, message)
            if subject_value is not None:
                subject = str(subject_value)
                self._check(nlgov.subject_problems(subject), "subject", rule.mark)
        extensions = {}
        for name, read, mark in self._extensions:
            value = read(node, message)
            if value is not None:
                if isinstance(value, str):
                    problems = nlgov.attribute_value_problems(name, value)
                    self._check(problems, f"extensions.{name}", mark)
                extensions[name] = value
        levering = message.levering
        new_id = event_id(levering.kenmerk, rule.name, index)
        time = self._time(node, message)
        arm_data = _pick(data, self._identifiers) if data else {}
        dataref = self._dataref(new_id, subject, arm_data, levering)
        informatiearm = CloudEvent.assembled(
            id=new_id,
            source=source,
            type=self._type,
            time=time,
            subject=subject,
            dataschema=self._informatiearm_dataschema,
            data=arm_data,
            extensions={**extensions, "dataref": dataref},
        )
        return CloudEvent.assembled(
            id=new_id,
            source=source,
            type=self._type,
            time=time,
            subject=subject,
            dataschema=self._dataschema,
            data=data if data is not None else {},
            extensions=extensions,
            informatiearm=informatiearm,
        )

    def _check(self, problems: list[str], what: str, mark: object) -> None:
        if problems:
            self._fail(f"{what}: NL GOV profile: {'; '.join(problems)}", mark)


#: The `dataref` of an event: from its id, subject, informatiearm data and message.
_Dataref = Callable[[str, str | None, Mapping[str, Any], Levering], str]


class _DefaultDataref:
    """`{base}/v1/events/{id}`: digibridge's own copy of the full event."""

    def __init__(self, base: str) -> None:
        self.prefix = f"{base}/v1/events/"

    def __call__(
        self, new_id: str, subject: str | None, arm_data: Mapping[str, Any], levering: Levering
    ) -> str:
        return self.prefix + new_id


class _TemplateDataref:
    """A rule's or file's `dataref` template: fields percent-encoded, `{base}` as it is, a
    field without a value or a personal number in the result a MappingError."""

    def __init__(
        self,
        template: TemplateSpec,
        compiler: ValueCompiler,
        base: str,
        event_type: str,
        oin: str | None,
    ) -> None:
        self.template = template
        self.fail = compiler.fail
        self.pieces: list[tuple[str, _DatarefPiece | str]] = []
        for index, part in enumerate(template.parts):
            if not index % 2 or part == "base":
                self.pieces.append((part, part if not index % 2 else base))
            else:
                self.pieces.append((part, _dataref_field(part, event_type, oin)))

    def __call__(
        self, new_id: str, subject: str | None, arm_data: Mapping[str, Any], levering: Levering
    ) -> str:
        template = self.template
        rendered = []
        for part, piece in self.pieces:
            if isinstance(piece, str):
                rendered.append(piece)
                continue
            value = piece(new_id, subject, arm_data, levering)
            if value is None or value == "":
                self.fail(f"dataref {template.template!r}: {{{part}}} has no value", template.mark)
            rendered.append(quote(str(value), safe=""))
        dataref = "".join(rendered)
        problems = nlgov.attribute_value_problems("dataref", dataref)
        if problems:
            self.fail(f"dataref: NL GOV profile: {'; '.join(problems)}", template.mark)
        return dataref


def _dataref_field(part: str, event_type: str, oin: str | None) -> _DatarefPiece:
    """The reader of one `{field}` of a dataref template (the loader allowed only these)."""
    if part.startswith("data."):
        path = tuple(part[5:].split("."))
        return lambda new_id, subject, arm_data, levering: _lookup_path(arm_data, path)
    if part == "id":
        return lambda new_id, subject, arm_data, levering: new_id
    if part == "type":
        return lambda new_id, subject, arm_data, levering: event_type
    if part == "subject":
        return lambda new_id, subject, arm_data, levering: subject or ""
    read = envelope_field(part, oin)
    return lambda new_id, subject, arm_data, levering: read(levering)


def _xpath_boolean(result: object) -> bool:
    """XPath 1.0 `boolean()` of an lxml result."""
    if isinstance(result, float):
        return not math.isnan(result) and result != 0
    return bool(result)


def _pick(data: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """The part of `data` under the identifier `paths`, nesting kept; absent ones left out."""
    picked: dict[str, Any] = {}
    for path in paths:
        value = _lookup_path(data, path)
        if value is None:
            continue
        target = picked
        for name in path[:-1]:
            target = target.setdefault(name, {})
        target[path[-1]] = value
    return picked


def _lookup_path(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = data
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            return None
        value = value[name]
    return value


def _escapes(rule: Rule) -> bool:
    """Whether any expression of `rule` may look outside its context node's subtree."""
    compiled: list[CompiledXPath] = []
    if rule.match.when is not None:
        compiled.append(rule.match.when.compiled)
    if rule.items is not None:
        compiled.append(rule.items.compiled)
    specs: list[ValueSpec] = [rule.data, rule.event.source]
    specs += [spec for spec in (rule.event.subject, rule.event.time) if spec is not None]
    specs += [spec for _, spec in rule.event.extensions]
    while specs:
        spec = specs.pop()
        if isinstance(spec, XPathSpec):
            compiled.append(spec.compiled)
        elif isinstance(spec, ForEachSpec):
            compiled.append(spec.nodes)
            specs.append(spec.item)
        elif isinstance(spec, ObjectSpec):
            specs += [child for _, child in spec.fields]
    return any(expression.escapes for expression in compiled)

"""XML → CloudEvents: a loaded set of mapping files and what it makes of one message.

Every rule whose `match` holds yields one event (rules are tried in file-name order, then file
order), so one message can become several events, e.g. a gv01 that records both a death and a
move. A message that no rule matches is refused with NoMatchingMapping, which says for each
candidate rule why it did not match.

The event `id` is a UUID v5 of the message's kenmerk, the rule name and the event's index within
the rule, so a re-sent message yields the same ids (the store dedupes on them) and adding a rule
never changes the ids of the other rules' events.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from lxml import etree

from digibridge.events import nlgov
from digibridge.events.types import CloudEvent, format_time
from digibridge.mapping._convert import AMSTERDAM, DEFAULT_CONVERTER, ConversionError, scalar
from digibridge.mapping._convert import parse_datetime as _parse_datetime
from digibridge.mapping._schema import data_schema
from digibridge.mapping.loader import load_directory
from digibridge.mapping.model import (
    EventTypeInfo,
    ForEachSpec,
    LiteralSpec,
    MappingFile,
    ObjectSpec,
    Rule,
    TemplateSpec,
    ValueSpec,
    XPathSpec,
)
from digibridge.mapping.types import Levering, MappingError, NoMatchingMapping

#: Namespace of the UUID v5 event ids. Fixed forever: changing it changes every event id.
EVENT_ID_NAMESPACE = uuid.UUID("d76a5a2f-6480-471a-bb6d-5cb72953637f")


def event_id(kenmerk: str, rule_name: str, index: int) -> str:
    """The deterministic id of the `index`-th event that rule `rule_name` makes of a message."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{kenmerk}|{rule_name}|{index}"))


class MappingSet:
    """The mapping files of one folder, loaded and checked; turns messages into events."""

    def __init__(self, files: Sequence[MappingFile], *, dataschema_base: str) -> None:
        self._files = tuple(files)
        self._base = dataschema_base.rstrip("/")
        self._rules = tuple(
            (mapping_file, rule) for mapping_file in files for rule in mapping_file.rules
        )
        self._event_types = [
            EventTypeInfo(
                type=rule.event.type,
                registry=rule.registry,
                rule=rule.name,
                description=rule.description,
                dataschema=self.dataschema(rule.event.type),
                schema=data_schema(rule, self.dataschema(rule.event.type)),
                location=str(rule.mark),
            )
            for _, rule in self._rules
        ]

    @classmethod
    def load(cls, directory: Path, *, dataschema_base: str) -> MappingSet:
        """Load every `*.yaml` in `directory`; MappingError(location="file:line:col") if wrong.

        `dataschema_base` is the gateway's public base URL; each event's `dataschema` is
        `{dataschema_base}/v1/event-types/{type}/schema`.
        """
        return cls(load_directory(directory), dataschema_base=dataschema_base)

    @property
    def event_types(self) -> list[EventTypeInfo]:
        """The catalogue: one entry per rule (and so per event type), in load order."""
        return list(self._event_types)

    @property
    def files(self) -> list[Path]:
        """The mapping files loaded, in the order their rules are tried."""
        return [mapping_file.path for mapping_file in self._files]

    def dataschema(self, event_type: str) -> str:
        """The URL of the JSON Schema of `event_type`'s data."""
        return f"{self._base}/v1/event-types/{event_type}/schema"

    def map(self, levering: Levering) -> list[CloudEvent]:
        """The events `levering` becomes; NoMatchingMapping or MappingError if none can be made."""
        # A copy of its own makes `/` the payload root (not the SOAP envelope around it), so
        # absolute paths mean the same for v4, v5 and a standalone file.
        payload = copy.deepcopy(levering.payload)
        variables = {
            mapping_file.path: _envelope_variables(levering, mapping_file.oin)
            for mapping_file in self._files
        }
        events: list[CloudEvent] = []
        misses: list[tuple[Rule, str]] = []
        for mapping_file, rule in self._rules:
            evaluation = _Evaluation(rule, variables[mapping_file.path])
            reason = evaluation.mismatch(levering, payload)
            if reason is not None:
                misses.append((rule, reason))
                continue
            events.append(self._event(evaluation, levering, payload, index=0))
        if not events:
            raise NoMatchingMapping(_explain(levering, payload, misses))
        return events

    def _event(
        self, evaluation: _Evaluation, levering: Levering, payload: etree._Element, *, index: int
    ) -> CloudEvent:
        rule = evaluation.rule
        event = rule.event
        data = evaluation.value(rule.data, payload, "data")
        source = evaluation.attribute(event.source, payload, "source")
        if source is None:  # pragma: no cover - the loader refuses an optional source
            evaluation.fail("source has no value", rule.mark)
        evaluation.check(nlgov.source_problems(str(source)), "source", rule.mark)
        subject = None
        if event.subject is not None:
            subject_value = evaluation.attribute(event.subject, payload, "subject")
            if subject_value is not None:
                subject = str(subject_value)
                evaluation.check(nlgov.subject_problems(subject), "subject", rule.mark)
        extensions = {}
        for name, spec in event.extensions:
            value = evaluation.attribute(spec, payload, f"extensions.{name}")
            if value is not None:
                extensions[name] = value
        return CloudEvent(
            id=event_id(levering.kenmerk, rule.name, index),
            source=str(source),
            type=event.type,
            time=evaluation.time(payload, levering),
            subject=subject,
            dataschema=self.dataschema(event.type),
            data=data if data is not None else {},
            extensions=extensions,
        )


class _Evaluation:
    """One rule applied to one message: evaluates specs and names the rule in every error."""

    def __init__(self, rule: Rule, variables: dict[str, str]) -> None:
        self.rule = rule
        self.variables = variables

    def fail(self, message: str, mark: object) -> NoReturn:
        raise MappingError(f"rule {self.rule.name!r} ({mark}): {message}")

    def check(self, problems: list[str], what: str, mark: object) -> None:
        if problems:
            self.fail(f"{what}: NL GOV profile: {'; '.join(problems)}", mark)

    def run(
        self, compiled: etree.XPath, expression: str, node: etree._Element, mark: object
    ) -> Any:
        try:
            return compiled(node, **self.variables)
        except etree.XPathError as exc:
            self.fail(f"XPath {expression!r} failed: {exc}", mark)

    # --- matching -----------------------------------------------------------------------------

    def mismatch(self, levering: Levering, payload: etree._Element) -> str | None:
        """Why the rule does not apply to the message, or None when it does."""
        match = self.rule.match
        for what, wanted, actual in (
            ("basisregistratie", match.basisregistratie, levering.basisregistratie),
            ("gebeurtenissoort", match.gebeurtenissoort, levering.gebeurtenissoort),
            (
                "gebeurtenissoort versie",
                match.gebeurtenissoort_versie,
                levering.gebeurtenissoort_versie,
            ),
            ("versieBerichttype", match.versie_berichttype, levering.versie_berichttype),
            ("payload root", match.payload, payload.tag),
        ):
            if wanted is not None and wanted != actual:
                return f"{what} is {actual!r}, the rule wants {wanted!r}"
        when = match.when
        if when is not None and not _xpath_boolean(
            self.run(when.compiled, when.expression, payload, when.mark)
        ):
            return f"when {when.expression!r} is false"
        return None

    # --- values -------------------------------------------------------------------------------

    def value(self, spec: ValueSpec, node: etree._Element, path: str) -> Any:
        """The JSON value of `spec` on `node`, None when absent (an error unless optional)."""
        result: Any
        if isinstance(spec, LiteralSpec):
            return spec.value
        if isinstance(spec, TemplateSpec):
            result = self.render(spec)
        elif isinstance(spec, XPathSpec):
            result = self.convert(
                spec, self.run(spec.compiled, spec.expression, node, spec.mark), path
            )
        elif isinstance(spec, ForEachSpec):
            result = self.for_each(spec, node, path)
        else:
            result = self.object(spec, node, path)
        if result is None and not spec.optional:
            self.fail(
                f"{path} is required, but the message has no value for it{_what(spec)}", spec.mark
            )
        return result

    def attribute(
        self, spec: ValueSpec, node: etree._Element, path: str
    ) -> str | int | bool | None:
        value = self.value(spec, node, path)
        if value is None or isinstance(value, str | int | bool):
            return value
        return str(value)

    def convert(self, spec: XPathSpec, result: object, path: str) -> Any:
        try:
            raw = scalar(result)
            return None if raw is None else spec.convert(raw)
        except ConversionError as exc:
            self.fail(f"{path}: {spec.convert.name}: {exc}", spec.mark)

    def object(self, spec: ObjectSpec, node: etree._Element, path: str) -> dict[str, Any] | None:
        result = {}
        for name, child in spec.fields:
            value = self.value(child, node, f"{path}.{name}")
            if value is not None:
                result[name] = value
        return result or None

    def for_each(self, spec: ForEachSpec, node: etree._Element, path: str) -> list[Any] | None:
        nodes = self.run(spec.nodes, spec.expression, node, spec.mark)
        if not isinstance(nodes, list):
            self.fail(f"{path}: for-each {spec.expression!r} must select elements", spec.mark)
        items = []
        for index, item_node in enumerate(nodes):
            if not isinstance(item_node, etree._Element):
                self.fail(f"{path}: for-each {spec.expression!r} must select elements", spec.mark)
            items.append(self.value(spec.item, item_node, f"{path}[{index}]"))
        return items or None

    def render(self, spec: TemplateSpec) -> str | None:
        pieces = []
        for index, part in enumerate(spec.parts):
            if index % 2:
                value = self.variables[part]
                if not value:
                    if spec.optional:
                        return None
                    self.fail(f"template {spec.template!r}: {{{part}}} has no value", spec.mark)
                pieces.append(value)
            else:
                pieces.append(part)
        return "".join(pieces) or None

    def time(self, payload: etree._Element, levering: Levering) -> datetime:
        """The registration time: the rule's `time`, else the registry's own timestamp."""
        spec = self.rule.event.time
        if spec is not None:
            result = self.run(spec.compiled, spec.expression, payload, spec.mark)
            try:
                raw = scalar(result)
                text = None if raw is None else DEFAULT_CONVERTER(raw)
                if text is not None:
                    return _parse_datetime(str(text))
            except ConversionError as exc:
                self.fail(f"time: {exc}", spec.mark)
            if not spec.optional:
                self.fail(
                    f"time is required, but the message has no value for it{_what(spec)}", spec.mark
                )
        return _aware(levering.tijdstempel_verstrekker)


def _envelope_variables(levering: Levering, default_oin: str | None) -> dict[str, str]:
    return {
        "form": levering.form,
        "kenmerk": levering.kenmerk,
        "kenmerk_verstrekker": levering.kenmerk_verstrekker,
        "referentie_id": levering.referentie_id or "",
        "basisregistratie": levering.basisregistratie,
        "gebeurtenissoort": levering.gebeurtenissoort,
        "gebeurtenissoort_versie": levering.gebeurtenissoort_versie,
        "versie_berichttype": levering.versie_berichttype,
        "abonnement": levering.abonnement,
        "abonnement_versie": levering.abonnement_versie,
        "tijdstempel_verstrekker": format_time(_aware(levering.tijdstempel_verstrekker)),
        "tijdstempel_digilevering": format_time(_aware(levering.tijdstempel_digilevering)),
        "verstrekker_oin": levering.verstrekker_oin or default_oin or "",
        "ontvanger_oin": levering.ontvanger_oin or "",
    }


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=AMSTERDAM) if value.tzinfo is None else value


def _xpath_boolean(result: object) -> bool:
    """XPath 1.0 `boolean()` of an lxml result."""
    if isinstance(result, float):
        return not math.isnan(result) and result != 0
    return bool(result)


def _what(spec: ValueSpec) -> str:
    if isinstance(spec, XPathSpec):
        return f" (XPath {spec.expression!r})"
    if isinstance(spec, ForEachSpec):
        return f" (for-each {spec.expression!r} selects nothing)"
    return ""


def _explain(levering: Levering, payload: etree._Element, misses: list[tuple[Rule, str]]) -> str:
    head = (
        f"no mapping rule matches basisregistratie {levering.basisregistratie!r}, "
        f"gebeurtenissoort {levering.gebeurtenissoort!r} "
        f"(versie {levering.gebeurtenissoort_versie!r}), payload root {payload.tag}"
    )
    candidates = [
        (rule, reason)
        for rule, reason in misses
        if rule.match.basisregistratie == levering.basisregistratie
    ]
    others = sorted(
        {rule.match.basisregistratie for rule, _ in misses} - {levering.basisregistratie}
    )
    if not candidates:
        known = ", ".join(repr(name) for name in others) or "none"
        return f"{head}: no rule is for this basisregistratie (rules exist for: {known})"
    lines = [f"{head}:"]
    lines += [f"  - {rule.name} ({rule.mark}): {reason}" for rule, reason in candidates]
    if others:
        lines.append(f"  (rules for other basisregistraties not tried: {', '.join(others)})")
    return "\n".join(lines)

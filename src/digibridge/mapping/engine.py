"""XML → CloudEvents: a loaded set of mapping files and what it makes of one message.

Every rule whose `match` holds yields one event, or one per element its rule-level `for-each`
selects (rules are tried in file-name order, then file order), so one message can become several
events: a gv01 that records both a death and a move, a BAG mutation of several objects. A message
that no rule matches is refused with NoMatchingMapping, which says for each candidate rule why it
did not match (`explain` gives the same per rule, for `digibridge map`).

The event `id` is a UUID v5 of the message's kenmerk, the rule name and the event's index within
the rule, so a re-sent message yields the same ids (the store dedupes on them) and adding a rule
never changes the ids of the other rules' events.

Every event carries its informatiearm form (`CloudEvent.informatiearm`): the same id and
attributes, `data` reduced to the rule's identifier fields, and a `dataref` extension pointing
at where the full event can be read (`{base}/v1/events/{id}` unless the file says otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digibridge.events import nlgov
from digibridge.events.types import CloudEvent
from digibridge.mapping._fastpath import IndexPlan
from digibridge.mapping._rules import EVENT_ID_NAMESPACE, CompiledRule, event_id
from digibridge.mapping._schema import data_schema, informatiearm_schema
from digibridge.mapping._values import Message
from digibridge.mapping.loader import load_directory
from digibridge.mapping.model import EventTypeInfo, MappingFile, Rule
from digibridge.mapping.types import Levering, NoMatchingMapping

__all__ = [
    "EVENT_ID_NAMESPACE",
    "INFORMATIEARM",
    "Explanation",
    "MappingSet",
    "RuleOutcome",
    "event_id",
]

INFORMATIEARM = "informatiearm"


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule made of one message: its events, or why it did not apply."""

    rule: Rule
    events: tuple[CloudEvent, ...] = ()
    #: Why the rule did not apply; None when it did.
    reason: str | None = None


@dataclass(frozen=True)
class Explanation:
    """The outcome of every rule for the message's basisregistratie, in the order tried."""

    outcomes: tuple[RuleOutcome, ...]
    #: The message's payload root in Clark notation (for messages about the outcome).
    payload_root: str = ""
    events: tuple[CloudEvent, ...] = field(default=())
    #: Every basisregistratie the set has rules for.
    registries: tuple[str, ...] = ()


class MappingSet:
    """The mapping files of one folder, loaded and checked; turns messages into events."""

    def __init__(self, files: Sequence[MappingFile], *, dataschema_base: str) -> None:
        self._files = tuple(files)
        self._base = dataschema_base.rstrip("/")
        self._rules = tuple(
            (mapping_file, rule) for mapping_file in files for rule in mapping_file.rules
        )
        # Every rule compiled once, here (`_rules.py`); a message only runs the closures.
        compiled = [
            CompiledRule(
                mapping_file,
                rule,
                base=self._base,
                dataschema=self.dataschema(rule.event.type),
                informatiearm_dataschema=self.dataschema(rule.event.type, INFORMATIEARM),
            )
            for mapping_file, rule in self._rules
        ]
        #: The rules per basisregistratie, in order: the candidates `explain` reports on.
        self._by_registry: dict[str, list[CompiledRule]] = {}
        #: The rules per (basisregistratie, gebeurtenissoort), in order: the only rules `map`
        #: tries, since every other rule of the registry fails on its gebeurtenissoort.
        self._by_kind: dict[tuple[str, str], list[CompiledRule]] = {}
        #: What the child index must bucket for the set's child paths.
        self._index_plan = IndexPlan()
        for each in compiled:
            self._by_registry.setdefault(each.kind[0], []).append(each)
            self._by_kind.setdefault(each.kind, []).append(each)
            self._index_plan |= each.index_plan
        families: dict[str, list[tuple[int, str]]] = {}
        for _, rule in self._rules:
            family, version = nlgov.type_version(rule.event.type)
            families.setdefault(family, []).append((version, rule.event.type))
        self._event_types = []
        for _, rule in self._rules:
            family, version = nlgov.type_version(rule.event.type)
            self._event_types.append(
                EventTypeInfo(
                    type=rule.event.type,
                    registry=rule.registry,
                    rule=rule.name,
                    description=rule.description,
                    dataschema=self.dataschema(rule.event.type),
                    schema=data_schema(rule, self.dataschema(rule.event.type)),
                    location=str(rule.mark),
                    version=version,
                    versions=tuple(name for _, name in sorted(families[family])),
                    identifiers=tuple(".".join(path) for path in rule.identifiers),
                    informatiearm_dataschema=self.dataschema(rule.event.type, INFORMATIEARM),
                    informatiearm_schema=informatiearm_schema(
                        rule, self.dataschema(rule.event.type, INFORMATIEARM)
                    ),
                )
            )

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

    @property
    def base(self) -> str:
        """The public base URL of `dataschema` and default `dataref` links."""
        return self._base

    def rebased(self, dataschema_base: str) -> MappingSet:
        """The same loaded files with another public base URL (no reload, no re-check)."""
        return MappingSet(self._files, dataschema_base=dataschema_base)

    def dataschema(self, event_type: str, form: str | None = None) -> str:
        """The URL of the JSON Schema of `event_type`'s data (in the informatiearm `form`)."""
        url = f"{self._base}/v1/event-types/{event_type}/schema"
        return f"{url}?form={form}" if form else url

    def map(self, levering: Levering) -> list[CloudEvent]:
        """The events `levering` becomes; NoMatchingMapping or MappingError if none can be made."""
        message = Message(levering, self._index_plan)
        events: list[CloudEvent] = []
        for rule in self._by_kind.get((levering.basisregistratie, levering.gebeurtenissoort), ()):
            made = rule.events(message)
            if not isinstance(made, str):
                events += made
        if not events:
            raise NoMatchingMapping(_explain(levering, self.explain(levering)))
        return events

    def explain(self, levering: Levering) -> Explanation:
        """The outcome of each rule for `levering`'s basisregistratie (rules for others are not
        tried); MappingError when a matching rule fails on the message."""
        message = Message(levering, self._index_plan)
        outcomes: list[RuleOutcome] = []
        events: list[CloudEvent] = []
        for rule in self._by_registry.get(levering.basisregistratie, ()):
            made = rule.events(message)
            if isinstance(made, str):
                outcomes.append(RuleOutcome(rule.rule, reason=made))
            else:
                outcomes.append(RuleOutcome(rule.rule, events=made))
                events += made
        return Explanation(
            tuple(outcomes), str(levering.payload.tag), tuple(events), tuple(self._by_registry)
        )


def _explain(levering: Levering, explanation: Explanation) -> str:
    head = (
        f"no mapping rule matches basisregistratie {levering.basisregistratie!r}, "
        f"gebeurtenissoort {levering.gebeurtenissoort!r} "
        f"(versie {levering.gebeurtenissoort_versie!r}), payload root {explanation.payload_root}"
    )
    candidates = [(outcome.rule, outcome.reason or "") for outcome in explanation.outcomes]
    others = sorted(set(explanation.registries) - {levering.basisregistratie})
    if not candidates:
        known = ", ".join(repr(name) for name in others) or "none"
        return f"{head}: no rule is for this basisregistratie (rules exist for: {known})"
    lines = [f"{head}:"]
    lines += [f"  - {rule.name} ({rule.mark}): {reason}" for rule, reason in candidates]
    if others:
        lines.append(f"  (rules for other basisregistraties not tried: {', '.join(others)})")
    return "\n".join(lines)

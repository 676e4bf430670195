"""Mapping files (YAML) → the typed model, every check done once, here.

The format is described in docs/mappings.md. The loader is strict so that a typo fails at start
instead of silently dropping data: unknown keys are errors (with a did-you-mean), YAML numbers
where text is meant are errors (`01` would become 1 and an OIN would lose its leading zeros),
every XPath is checked and compiled (`_xpath.py`), literal attributes pass the NL GOV checks
(`events/nlgov.py`). Every error is a MappingError whose location is `file:line:column`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, NoReturn

from digibridge.events import nlgov
from digibridge.mapping._convert import CONVERTERS, DEFAULT_CONVERTER, Converter
from digibridge.mapping._xpath import CompiledXPath, XPathProblem, compile_checked
from digibridge.mapping._yaml import Mark, MarkedList, MarkedMap, YamlError, load_marked
from digibridge.mapping.model import (
    DATAREF_FIELDS,
    ENVELOPE_VARIABLES,
    Condition,
    EventSpec,
    ForEachSpec,
    Items,
    LiteralSpec,
    Lookup,
    MappingFile,
    MatchSpec,
    ObjectSpec,
    Rule,
    TemplateSpec,
    ValueSpec,
    XPathSpec,
)
from digibridge.mapping.types import MappingError

MAPPING_SUFFIXES = (".yaml", ".yml")

_FILE_KEYS = ({"registry", "rules"}, {"description", "oin", "namespaces", "defaults", "lookups"})
_DEFAULTS_KEYS = (set[str](), {"source", "dataref"})
_RULE_KEYS = (
    {"name", "match", "event", "data"},
    {"description", "for-each", "identifiers", "dataref", "versions"},
)
_VERSION_KEYS = ({"type"}, {"description", "data", "identifiers", "dataref"})
_MATCH_KEYS = (
    {"basisregistratie", "gebeurtenissoort"},
    {"gebeurtenissoort_versie", "versie_berichttype", "payload", "when"},
)
_EVENT_KEYS = ({"type"}, {"source", "subject", "time", "extensions"})
#: The keys that make a mapping a value rather than a nested object, and what may go with each.
_VALUE_FORMS: Mapping[str, set[str]] = {
    "xpath": {"convert", "optional", "lookup"},
    "literal": set(),
    "template": {"optional"},
    "for-each": {"value", "optional"},
}

_RULE_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_FIELD_NAME = re.compile(r"[a-z][A-Za-z0-9]*")
_NCNAME = re.compile(r"[^\W\d][\w.\-]*")
_OIN = re.compile(r"[0-9]{20}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_LOOKUP_NAME = _RULE_NAME


def load_directory(directory: Path) -> list[MappingFile]:
    """Every mapping file in `directory` (sorted by name), checked alone and together."""
    files = [load_file(path) for path in mapping_paths(directory)]
    check_unique(files)
    return files


def mapping_paths(directory: Path) -> list[Path]:
    """The mapping files of `directory`, sorted by name; MappingError when there are none."""
    if not directory.is_dir():
        raise MappingError("mapping folder does not exist", location=display_path(directory))
    paths = sorted(
        path for path in directory.iterdir() if path.suffix in MAPPING_SUFFIXES and path.is_file()
    )
    if not paths:
        raise MappingError("no mapping files (*.yaml) in folder", location=display_path(directory))
    return paths


def load_file(path: Path) -> MappingFile:
    """One mapping file, checked on its own."""
    display = display_path(path)
    try:
        document = load_marked(path, display)
    except YamlError as exc:
        raise MappingError(exc.message, location=str(exc.mark)) from None
    if not isinstance(document, MarkedMap):
        _fail(
            "a mapping file must be a YAML mapping with 'registry' and 'rules'", Mark(display, 1, 1)
        )
    return _FileReader(path).read(document)


def check_unique(files: list[MappingFile]) -> None:
    """Rule names and event types are unique over all files."""
    names: dict[str, Mark] = {}
    types: dict[str, Mark] = {}
    for mapping_file in files:
        for rule in mapping_file.rules:
            if rule.name in names:
                _fail(f"rule name {rule.name!r} is also used at {names[rule.name]}", rule.mark)
            if rule.event.type in types:
                _fail(
                    f"event type {rule.event.type!r} is also emitted by the rule at "
                    f"{types[rule.event.type]}; one rule per type keeps one schema per type",
                    rule.mark,
                )
            names[rule.name] = rule.mark
            types[rule.event.type] = rule.mark


class _FileReader:
    """Reads one file; holds what later parts need (namespaces, default source)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.namespaces: dict[str, str] = {}
        self.lookups: dict[str, Lookup] = {}
        self.default_dataref: TemplateSpec | None = None

    def read(self, document: MarkedMap) -> MappingFile:
        _check_keys(document, _FILE_KEYS, "mapping file")
        registry = _string(document, "registry")
        oin = self._oin(document)
        if "namespaces" in document:
            self.namespaces = self._namespaces(document)
        if "lookups" in document:
            self.lookups = self._lookups(_mapping(document, "lookups"))
        _optional_string(document, "description")
        default_source: ValueSpec | None = None
        if "defaults" in document:
            defaults = _mapping(document, "defaults")
            _check_keys(defaults, _DEFAULTS_KEYS, "defaults")
            if "source" in defaults:
                default_source = self._source(defaults)
            if "dataref" in defaults:
                self.default_dataref = self._dataref_template(defaults)
        rules_raw = document["rules"]
        if not isinstance(rules_raw, MarkedList) or not rules_raw:
            _fail("'rules' must be a non-empty list of rules", document.value_marks["rules"])
        rules: list[Rule] = []
        for raw, mark in zip(rules_raw, rules_raw.item_marks, strict=True):
            if not isinstance(raw, MarkedMap):
                _fail("a rule must be a mapping with name, match, event and data", mark)
            rules += self._rule(raw, registry, default_source)
        return MappingFile(
            path=self.path,
            registry=registry,
            oin=oin,
            namespaces=dict(self.namespaces),
            rules=tuple(rules),
            lookups=dict(self.lookups),
        )

    # --- file level ---------------------------------------------------------------------------

    def _oin(self, document: MarkedMap) -> str | None:
        if "oin" not in document:
            return None
        oin = _string(document, "oin")
        if not _OIN.fullmatch(oin):
            _fail(f"oin {oin!r} must be 20 digits", document.value_marks["oin"])
        return oin

    def _namespaces(self, document: MarkedMap) -> dict[str, str]:
        raw = _mapping(document, "namespaces")
        namespaces = {}
        for prefix in raw:
            if not _NCNAME.fullmatch(prefix) or prefix.lower().startswith("xml"):
                _fail(f"{prefix!r} cannot be a namespace prefix", raw.key_marks[prefix])
            uri = _string(raw, prefix)
            if not uri.strip():
                _fail(f"namespace {prefix!r} needs a URI", raw.value_marks[prefix])
            namespaces[prefix] = uri
        return namespaces

    def _lookups(self, raw: MarkedMap) -> dict[str, Lookup]:
        lookups = {}
        for name in raw:
            if not _LOOKUP_NAME.fullmatch(name):
                _fail(f"lookup name {name!r} must be lower-case kebab-case", raw.key_marks[name])
            table = _mapping(raw, name)
            if not table:
                _fail(f"lookup {name!r} is empty", table.mark)
            lookups[name] = Lookup(
                name, {code: _string(table, code) for code in table}, raw.value_marks[name]
            )
        return lookups

    # --- rules --------------------------------------------------------------------------------

    def _rule(self, raw: MarkedMap, registry: str, default_source: ValueSpec | None) -> list[Rule]:
        """The rule, followed by one rule per entry of its `versions`."""
        _check_keys(raw, _RULE_KEYS, "rule")
        name = _string(raw, "name")
        if not _RULE_NAME.fullmatch(name):
            _fail(f"rule name {name!r} must be lower-case kebab-case", raw.value_marks["name"])
        match = self._match(_mapping(raw, "match"))
        items = None
        if "for-each" in raw:
            expression = _string(raw, "for-each")
            mark = raw.value_marks["for-each"]
            items = Items(expression, self._xpath(expression, mark), mark)
        event = self._event(_mapping(raw, "event"), default_source, raw.mark)
        data_raw = _mapping(raw, "data")
        data = self._object(data_raw, "data")
        identifiers = self._identifiers(raw, data)
        rule = Rule(
            name=name,
            description=(_optional_string(raw, "description") or "").strip(),
            registry=registry,
            match=match,
            event=event,
            data=data,
            mark=raw.mark,
            items=items,
            identifiers=identifiers,
            dataref=self._rule_dataref(raw, name, identifiers),
        )
        rules = [rule]
        if "versions" in raw:
            versions = raw["versions"]
            if not isinstance(versions, MarkedList) or not versions:
                _fail("versions must be a non-empty list", raw.value_marks["versions"])
            for version, mark in zip(versions, versions.item_marks, strict=True):
                if not isinstance(version, MarkedMap):
                    _fail("a version is a mapping with type (and data, description)", mark)
                rules.append(self._version(rule, data_raw, version, rules[-1]))
        return rules

    def _version(self, base: Rule, base_data: MarkedMap, raw: MarkedMap, previous: Rule) -> Rule:
        """A `versions:` entry: the base rule with another type and (merged) data."""
        _check_keys(raw, _VERSION_KEYS, "version")
        event_type = _string(raw, "type")
        mark = raw.value_marks["type"]
        _nlgov(nlgov.type_problems(event_type), mark)
        family, number = nlgov.type_version(event_type)
        base_family, _ = nlgov.type_version(base.event.type)
        _, previous_number = nlgov.type_version(previous.event.type)
        if family != base_family:
            _fail(
                f"version type {event_type!r} must be {base_family!r} with a version segment "
                f"(e.g. {base_family}.v{previous_number + 1})",
                mark,
            )
        if number <= previous_number:
            _fail(
                f"version type {event_type!r} must have a higher version than "
                f"{previous.event.type!r} (v{previous_number})",
                mark,
            )
        data_raw = base_data
        if "data" in raw:
            data_raw = _merge(base_data, _mapping(raw, "data"))
        data = self._object(data_raw, "data")
        identifiers = self._identifiers(raw, data) if "identifiers" in raw else base.identifiers
        for path in identifiers:
            _resolve(data, path, raw.mark)
        name = f"{base.name}-v{number}"
        dataref = self._rule_dataref(raw, name, identifiers) if "dataref" in raw else base.dataref
        description = _optional_string(raw, "description")
        return dataclasses.replace(
            base,
            name=name,
            description=(description or base.description).strip(),
            event=dataclasses.replace(base.event, type=event_type),
            data=data,
            mark=raw.mark,
            identifiers=identifiers,
            dataref=dataref,
        )

    def _identifiers(self, raw: MarkedMap, data: ObjectSpec) -> tuple[tuple[str, ...], ...]:
        if "identifiers" not in raw:
            return ()
        value = raw["identifiers"]
        mark = raw.value_marks["identifiers"]
        if not isinstance(value, MarkedList) or not all(isinstance(v, str) for v in value):
            _fail("identifiers must be a list of data field paths (vestiging.nummer)", mark)
        paths = []
        for path_text, item_mark in zip(value, value.item_marks, strict=True):
            path = tuple(path_text.split("."))
            _resolve(data, path, item_mark)
            paths.append(path)
        return tuple(paths)

    def _rule_dataref(
        self, raw: MarkedMap, rule_name: str, identifiers: tuple[tuple[str, ...], ...]
    ) -> TemplateSpec | None:
        template = self._dataref_template(raw) if "dataref" in raw else self.default_dataref
        if template is None:
            return None
        known = {".".join(path) for path in identifiers}
        for index, part in enumerate(template.parts):
            if index % 2 and part.startswith("data.") and part[5:] not in known:
                _fail(
                    f"dataref field {{{part}}} is not an identifier of rule {rule_name!r} "
                    f"(identifiers: {', '.join(sorted(known)) or 'none'})",
                    template.mark,
                )
        return template

    def _dataref_template(self, raw: MarkedMap) -> TemplateSpec:
        text = _string(raw, "dataref")
        mark = raw.value_marks["dataref"]
        template = self._template(
            text, mark, optional=False, fields=(*ENVELOPE_VARIABLES, *DATAREF_FIELDS), data=True
        )
        starts_with_base = template.parts[0] == "" and template.parts[1:2] == ("base",)
        if not (template.parts[0].startswith(("https://", "http://")) or starts_with_base):
            _fail(f"dataref {text!r} must be an http(s) URL or start with {{base}}", mark)
        return template

    def _match(self, raw: MarkedMap) -> MatchSpec:
        _check_keys(raw, _MATCH_KEYS, "match")
        when = None
        if "when" in raw:
            expression = _string(raw, "when")
            mark = raw.value_marks["when"]
            when = Condition(expression, self._xpath(expression, mark), mark)
        return MatchSpec(
            basisregistratie=_string(raw, "basisregistratie"),
            gebeurtenissoort=_string(raw, "gebeurtenissoort"),
            gebeurtenissoort_versie=_optional_string(raw, "gebeurtenissoort_versie"),
            versie_berichttype=_optional_string(raw, "versie_berichttype"),
            payload=self._element_name(raw) if "payload" in raw else None,
            when=when,
        )

    def _element_name(self, raw: MarkedMap) -> str:
        """`prefix:local` or `{uri}local` → Clark notation."""
        name = _string(raw, "payload")
        mark = raw.value_marks["payload"]
        clark = re.fullmatch(r"\{([^{}]+)\}([^\W\d][\w.\-]*)", name)
        if clark:
            return name
        prefix, _, local = name.rpartition(":")
        if not _NCNAME.fullmatch(local) or (prefix and not _NCNAME.fullmatch(prefix)):
            _fail(f"payload {name!r} must be prefix:name or {{namespace}}name", mark)
        if not prefix:
            return local
        if prefix not in self.namespaces:
            _fail(f"unknown namespace prefix {prefix!r} in payload {name!r}", mark)
        return f"{{{self.namespaces[prefix]}}}{local}"

    def _event(
        self, raw: MarkedMap, default_source: ValueSpec | None, rule_mark: Mark
    ) -> EventSpec:
        _check_keys(raw, _EVENT_KEYS, "event")
        event_type = _string(raw, "type")
        _nlgov(nlgov.type_problems(event_type), raw.value_marks["type"])
        source = self._source(raw) if "source" in raw else default_source
        if source is None:
            _fail("the rule has no event.source and the file no defaults.source", rule_mark)
        subject = None
        if raw.get("subject") is not None:
            subject = self._attribute(raw["subject"], raw.value_marks["subject"], "event.subject")
        time = None
        if "time" in raw:
            time = self._time(raw["time"], raw.value_marks["time"])
        extensions = []
        if "extensions" in raw:
            extensions_raw = _mapping(raw, "extensions")
            for name, value in extensions_raw.items():
                _nlgov(nlgov.attribute_name_problems(name), extensions_raw.key_marks[name])
                mark = extensions_raw.value_marks[name]
                spec = self._attribute(value, mark, f"event.extensions.{name}")
                if isinstance(spec, XPathSpec) and spec.convert.name == "number":
                    _fail("extension attributes are strings, integers or booleans", mark)
                extensions.append((name, spec))
        return EventSpec(
            type=event_type,
            source=source,
            subject=subject,
            time=time,
            extensions=tuple(extensions),
        )

    def _source(self, raw: MarkedMap) -> ValueSpec:
        """`source`: a plain string is a template (a URN, maybe with {verstrekker_oin})."""
        value = raw["source"]
        mark = raw.value_marks["source"]
        if isinstance(value, str):
            spec: ValueSpec = self._template(value, mark, optional=False)
        else:
            spec = self._attribute(value, mark, "source")
        if isinstance(spec, TemplateSpec):
            literal_start = spec.parts[0]
            if len(spec.parts) == 1:
                _nlgov(nlgov.source_problems(literal_start), mark)
            elif not literal_start.startswith("urn:nld:"):
                _fail(f"source template {spec.template!r} must start with 'urn:nld:'", mark)
        elif isinstance(spec, LiteralSpec):
            _nlgov(nlgov.source_problems(str(spec.value)), mark)
        if spec.optional:
            _fail("source is required; it cannot be optional", mark)
        return spec

    def _time(self, value: Any, mark: Mark) -> XPathSpec:
        """`time`: an XPath read as xs:dateTime (naive = Amsterdam time) or, with
        `convert: compact-datetime`, as yyyyMMddHHmmss[SSS]."""
        spec = self._value(value, mark, "event.time", default_convert=CONVERTERS["datetime"])
        time_converters = ("datetime", "compact-datetime")
        if not isinstance(spec, XPathSpec) or spec.convert.name not in time_converters:
            _fail("event.time must be an XPath with convert: datetime or compact-datetime", mark)
        return spec

    def _attribute(self, value: Any, mark: Mark, path: str) -> ValueSpec:
        spec = self._value(value, mark, path)
        if isinstance(spec, ObjectSpec | ForEachSpec):
            _fail(f"{path} must be a single value, not an object or a list", mark)
        return spec

    # --- values -------------------------------------------------------------------------------

    def _value(
        self,
        value: Any,
        mark: Mark,
        path: str,
        *,
        default_convert: Converter = DEFAULT_CONVERTER,
    ) -> ValueSpec:
        if isinstance(value, str):
            return self._xpath_spec(value, mark, default_convert, optional=False)
        if not isinstance(value, MarkedMap):
            _fail(
                f"{path}: a value is an XPath string, a mapping with one of "
                f"{', '.join(_VALUE_FORMS)}, or a nested object; got {_describe(value)}",
                mark,
            )
        forms = [key for key in _VALUE_FORMS if key in value]
        if not forms:
            return self._object(value, path)
        if len(forms) > 1:
            _fail(f"{path}: use one of {' / '.join(forms)}, not several", value.mark)
        form = forms[0]
        _check_keys(value, ({form}, _VALUE_FORMS[form]), f"{form} value")
        optional = _boolean(value, "optional", default=False)
        if form == "literal":
            literal = value["literal"]
            if not isinstance(literal, str | int | float):
                _fail("literal must be a string, number or boolean", value.value_marks["literal"])
            return LiteralSpec(literal, value.mark)
        if form == "template":
            template = _string(value, "template")
            return self._template(template, value.value_marks["template"], optional=optional)
        if form == "for-each":
            return self._for_each(value, path, optional=optional)
        convert = default_convert
        lookup = self._lookup(value) if "lookup" in value else None
        if "convert" in value:
            convert_name = _string(value, "convert")
            if convert_name not in CONVERTERS:
                _fail(
                    f"unknown conversion {convert_name!r} (known: {', '.join(CONVERTERS)})",
                    value.value_marks["convert"],
                )
            convert = CONVERTERS[convert_name]
        expression = _string(value, "xpath")
        mark = value.value_marks["xpath"]
        return XPathSpec(expression, self._xpath(expression, mark), convert, optional, mark, lookup)

    def _lookup(self, value: MarkedMap) -> Lookup:
        if "convert" in value:
            _fail("use lookup or convert, not both", value.key_marks["convert"])
        name = _string(value, "lookup")
        if name not in self.lookups:
            known = ", ".join(self.lookups) or "none; define them under 'lookups'"
            _fail(f"unknown lookup {name!r} (known: {known})", value.value_marks["lookup"])
        return self.lookups[name]

    def _xpath_spec(
        self, expression: str, mark: Mark, convert: Converter, *, optional: bool
    ) -> XPathSpec:
        return XPathSpec(expression, self._xpath(expression, mark), convert, optional, mark)

    def _for_each(self, value: MarkedMap, path: str, *, optional: bool) -> ForEachSpec:
        expression = _string(value, "for-each")
        mark = value.value_marks["for-each"]
        if "value" not in value:
            _fail(f"{path}: for-each needs a 'value' evaluated for each node", value.mark)
        item = self._value(value["value"], value.value_marks["value"], f"{path}[]")
        if item.optional:
            _fail(f"{path}: the value of a for-each item cannot be optional", value.mark)
        return ForEachSpec(expression, self._xpath(expression, mark), item, optional, value.mark)

    def _object(self, value: MarkedMap, path: str) -> ObjectSpec:
        if not value:
            _fail(f"{path} is an empty object", value.mark)
        fields = []
        for name, child in value.items():
            if not _FIELD_NAME.fullmatch(name):
                _fail(
                    f"{path}: field name {name!r} must be lowerCamelCase (a-z, A-Z, 0-9)",
                    value.key_marks[name],
                )
            fields.append((name, self._value(child, value.value_marks[name], f"{path}.{name}")))
        return ObjectSpec(tuple(fields), value.mark)

    def _template(
        self,
        template: str,
        mark: Mark,
        *,
        optional: bool,
        fields: tuple[str, ...] = ENVELOPE_VARIABLES,
        data: bool = False,
    ) -> TemplateSpec:
        parts = _PLACEHOLDER.split(template)
        for index, part in enumerate(parts):
            if index % 2 and part not in fields and not (data and part.startswith("data.")):
                more = ", data.<identifier>" if data else ""
                _fail(f"unknown template field {{{part}}} (known: {', '.join(fields)}{more})", mark)
            if not index % 2 and ("{" in part or "}" in part):
                _fail(f"template {template!r} has an unmatched brace", mark)
        return TemplateSpec(template, tuple(parts), optional, mark)

    def _xpath(self, expression: str, mark: Mark) -> CompiledXPath:
        try:
            return compile_checked(expression, self.namespaces, ENVELOPE_VARIABLES)
        except XPathProblem as exc:
            _fail(str(exc), mark)


# --- helpers -------------------------------------------------------------------------------------


def _resolve(data: ObjectSpec, path: tuple[str, ...], mark: Mark) -> None:
    """Check that `path` names a field of `data`, through nested objects."""
    spec: ValueSpec = data
    for depth, name in enumerate(path):
        fields = dict(spec.fields) if isinstance(spec, ObjectSpec) else {}
        if name not in fields:
            where = ".".join(path[:depth]) or "data"
            known = ", ".join(fields) or "none: it is not an object"
            _fail(f"identifier {'.'.join(path)!r}: {where} has no field {name!r} ({known})", mark)
        spec = fields[name]


def _merge(base: MarkedMap, overrides: MarkedMap) -> MarkedMap:
    """`base` with the top-level fields of `overrides` added or replaced; `null` removes one."""
    merged = MarkedMap(overrides.mark)
    for key, value in base.items():
        if key not in overrides:
            merged[key] = value
            merged.key_marks[key] = base.key_marks[key]
            merged.value_marks[key] = base.value_marks[key]
    for key, value in overrides.items():
        if value is None and key not in base:
            _fail(
                f"data.{key}: null removes a field of the base rule, which has none",
                overrides.key_marks[key],
            )
        if value is not None:
            merged[key] = value
            merged.key_marks[key] = overrides.key_marks[key]
            merged.value_marks[key] = overrides.value_marks[key]
    return merged


def _fail(message: str, mark: Mark) -> NoReturn:
    raise MappingError(message, location=str(mark))


def _nlgov(problems: list[str], mark: Mark) -> None:
    if problems:
        _fail("NL GOV profile: " + "; ".join(problems), mark)


def _check_keys(node: MarkedMap, keys: tuple[Collection[str], Collection[str]], what: str) -> None:
    required, optional = keys
    known = [*required, *optional]
    for key in node:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            _fail(
                f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(known))}){hint}",
                node.key_marks[key],
            )
    for key in sorted(required):
        if key not in node:
            _fail(f"{what} is missing {key!r}", node.mark)


def _string(node: MarkedMap, key: str) -> str:
    """`node[key]` as a string; a YAML number or date is refused with a hint to quote it."""
    if key not in node:
        _fail(f"missing {key!r}", node.mark)
    value = node[key]
    if not isinstance(value, str):
        hint = ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            hint = f' (YAML read a number; quote it: {key}: "...")'
        _fail(f"{key} must be text, got {_describe(value)}{hint}", node.value_marks[key])
    return value


def _optional_string(node: MarkedMap, key: str) -> str | None:
    return _string(node, key) if key in node else None


def _boolean(node: MarkedMap, key: str, *, default: bool) -> bool:
    value = node.get(key, default)
    if not isinstance(value, bool):
        _fail(f"{key} must be true or false", node.value_marks[key])
    return value


def _mapping(node: MarkedMap, key: str) -> MarkedMap:
    value = node[key]
    if not isinstance(value, MarkedMap):
        _fail(f"{key} must be a mapping, got {_describe(value)}", node.value_marks[key])
    return value


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, MarkedMap):
        return "a mapping"
    if isinstance(value, MarkedList):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def display_path(path: Path) -> str:
    """The path as people see it: relative to the working folder when it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

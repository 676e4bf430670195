"""Value specs compiled into closures, once at load, so mapping a message interprets nothing.

Everything about a value is known when its file is loaded: which of the five forms it is,
whether its XPath is a child path (walked over the message's `ChildIndex`) or needs lxml,
which conversion and lookup table apply, whether it is required, and the field path its errors
name. `ValueCompiler` settles all of that once per spec and returns a `Reader`: a closure of the
context node and the `Message`, which does only the work that depends on the message. A
mapping set maps every message with the same few hundred closures; the model (`model.py`)
stays the single description of the language and the source of the schemas.

Errors. A value that is missing or unreadable raises `FieldProblem` carrying its field path
relative to the nearest enclosing `for-each` item; that `for-each` puts `[i]` in front, and the
rule turns it into a `MappingError` naming itself (`FieldProblem.error`). So paths are built
only when something is wrong, never per value. Problems that are not about one field (an
XPath that fails, a template field without a value) are `MappingError`s straight away.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, NoReturn

from lxml import etree

from digibridge.events.types import format_time
from digibridge.mapping._convert import (
    AMSTERDAM,
    DEFAULT_CONVERTER,
    ConversionError,
    Scalar,
    parse_datetime,
    scalar,
)
from digibridge.mapping._fastpath import ChildIndex, IndexPlan
from digibridge.mapping._xpath import CompiledXPath
from digibridge.mapping.model import (
    ForEachSpec,
    LiteralSpec,
    ObjectSpec,
    TemplateSpec,
    ValueSpec,
    XPathSpec,
)
from digibridge.mapping.types import Levering, MappingError

#: A compiled value: its JSON value on a context node of a message, None when absent.
Reader = Callable[[etree._Element, "Message"], Any]
#: One envelope field of a message, as text (absent ones are empty strings).
EnvelopeField = Callable[[Levering], str]

_MISSING = " is required, but the message has no value for it"


class _ChildField(NamedTuple):
    """One field of an object read by `_one_parent_object`."""

    name: str
    outer: Any
    inner: Any
    #: None: the default conversion (trimmed text, empty is absent).
    convert: Callable[[Scalar], Any] | None
    required: bool
    missing: str
    mark: object


class Message:
    """What the readers share while one message is mapped: the Levering, the index of its
    elements' children, and the payload as a document of its own once a rule needs that."""

    __slots__ = ("_own", "index", "levering")

    def __init__(self, levering: Levering, plan: IndexPlan | None) -> None:
        self.levering = levering
        self.index = ChildIndex(plan)
        # A payload that already is its own document (a parsed file, a test) needs no copy.
        self._own: etree._Element | None = (
            levering.payload if levering.payload.getparent() is None else None
        )

    def payload(self, escapes: bool) -> etree._Element:
        """The payload root, where it is; for rules whose expressions may leave their subtree
        (absolute paths, `..`, reverse axes), a copy of its own, so that `/` is the payload root
        (not the SOAP envelope around it) for v4, v5 and a standalone file alike."""
        if not escapes:
            return self.levering.payload
        if self._own is None:
            self._own = copy.deepcopy(self.levering.payload)
        return self._own


class FieldProblem(Exception):
    """A value's problem, raised where it is found; the rule adds its name (`error`)."""

    def __init__(self, path: str, detail: str, mark: object) -> None:
        super().__init__(f"{path}{detail}")
        self.path = path
        self.detail = detail
        self.mark = mark

    def within(self, prefix: str) -> FieldProblem:
        """The same problem, seen from the enclosing value at `prefix`."""
        return FieldProblem(f"{prefix}{self.path}", self.detail, self.mark)

    def error(self, rule_name: str) -> MappingError:
        """The MappingError that names the rule, the mapping line and the field."""
        return MappingError(f"rule {rule_name!r} ({self.mark}): {self.path}{self.detail}")


def aware(value: datetime) -> datetime:
    """A registry timestamp without an offset is Dutch local time."""
    return value.replace(tzinfo=AMSTERDAM) if value.tzinfo is None else value


_ENVELOPE: Mapping[str, EnvelopeField] = {
    "form": lambda levering: levering.form,
    "kenmerk": lambda levering: levering.kenmerk,
    "kenmerk_verstrekker": lambda levering: levering.kenmerk_verstrekker,
    "referentie_id": lambda levering: levering.referentie_id or "",
    "basisregistratie": lambda levering: levering.basisregistratie,
    "gebeurtenissoort": lambda levering: levering.gebeurtenissoort,
    "gebeurtenissoort_versie": lambda levering: levering.gebeurtenissoort_versie,
    "versie_berichttype": lambda levering: levering.versie_berichttype,
    "abonnement": lambda levering: levering.abonnement,
    "abonnement_versie": lambda levering: levering.abonnement_versie,
    "tijdstempel_verstrekker": lambda levering: format_time(
        aware(levering.tijdstempel_verstrekker)
    ),
    "tijdstempel_digilevering": lambda levering: format_time(
        aware(levering.tijdstempel_digilevering)
    ),
    "ontvanger_oin": lambda levering: levering.ontvanger_oin or "",
}


def envelope_field(name: str, default_oin: str | None) -> EnvelopeField:
    """How to read envelope variable `name` (`model.ENVELOPE_VARIABLES`) from a message; only
    the fields a rule uses are ever computed. `verstrekker_oin` falls back to the file's OIN."""
    if name == "verstrekker_oin":
        return lambda levering: levering.verstrekker_oin or default_oin or ""
    return _ENVELOPE[name]


class ValueCompiler:
    """Compiles the specs of one rule into Readers; every error names that rule.

    `plan` collects the buckets the rule's child paths look up in the index, so the mapping
    set can tell `ChildIndex` which to build.
    """

    def __init__(self, rule_name: str, default_oin: str | None) -> None:
        self.rule_name = rule_name
        self.default_oin = default_oin
        self.plan = IndexPlan()

    def fail(self, message: str, mark: object) -> NoReturn:
        """A MappingError about the rule as a whole (not about one field)."""
        raise MappingError(f"rule {self.rule_name!r} ({mark}): {message}")

    def xpath(self, compiled: CompiledXPath, mark: object) -> Reader:
        """The raw result of `compiled` (fast form or lxml), as lxml would give it."""
        self.plan |= compiled.index_plan
        if compiled.fast is not None:
            fast = compiled.fast.evaluate
            return lambda node, message: fast(node, message.index)
        xpath = compiled.xpath
        variables = tuple(
            (name, envelope_field(name, self.default_oin)) for name in compiled.variables
        )
        fail = self.fail

        def evaluate(node: etree._Element, message: Message) -> Any:
            try:
                if not variables:
                    return xpath(node)
                levering = message.levering
                return xpath(node, **{name: read(levering) for name, read in variables})
            except etree.XPathError as exc:
                fail(f"XPath {compiled.expression!r} failed: {exc}", mark)

        return evaluate

    def value(self, spec: ValueSpec, path: str) -> Reader:
        """The Reader of `spec` at field `path` (relative to the enclosing for-each item)."""
        if isinstance(spec, XPathSpec):
            return self._xpath_value(spec, path)
        if isinstance(spec, LiteralSpec):
            constant = spec.value
            return lambda node, message: constant
        if isinstance(spec, TemplateSpec):
            return self._template(spec, path)
        if isinstance(spec, ForEachSpec):
            return self._for_each(spec, path)
        return self._object(spec, path)

    def attribute(self, spec: ValueSpec, path: str) -> Reader:
        """A value for a context attribute: a string, integer or boolean (others as text)."""
        read = self.value(spec, path)
        if isinstance(spec, TemplateSpec):  # text already, or nothing
            return read

        def read_attribute(node: etree._Element, message: Message) -> Any:
            value = read(node, message)
            if value is None or isinstance(value, str | int | bool):
                return value
            return str(value)

        return read_attribute

    def time(self, spec: XPathSpec | None) -> Callable[[etree._Element, Message], datetime]:
        """The registration time: the rule's `time`, else the registry's own timestamp."""
        if spec is None:
            return lambda node, message: aware(message.levering.tijdstempel_verstrekker)
        evaluate = self.xpath(spec.compiled, spec.mark)
        convert = spec.convert.function
        fail = self.fail
        missing = f"time{_MISSING} (XPath {spec.expression!r})"

        def read_time(node: etree._Element, message: Message) -> datetime:
            result = evaluate(node, message)
            try:
                raw = scalar(result)
                # Both time conversions give RFC 3339 text (or nothing), read back here.
                text = None if raw is None else convert(raw)
                if text is not None:
                    return parse_datetime(str(text))
            except ConversionError as exc:
                fail(f"time: {exc}", spec.mark)
            if not spec.optional:
                fail(missing, spec.mark)
            return aware(message.levering.tijdstempel_verstrekker)

        return read_time

    # --- the five forms -----------------------------------------------------------------------

    def _xpath_value(self, spec: XPathSpec, path: str) -> Reader:
        required = not spec.optional
        mark = spec.mark
        missing = f"{_MISSING} (XPath {spec.expression!r})"
        convert = self._converter(spec, path)
        first = spec.compiled.first
        if first is None:  # anything but a child path: its XPath result, reduced to a scalar
            evaluate = self.xpath(spec.compiled, mark)
            name = spec.convert.name

            def read_result(node: etree._Element, message: Message) -> Any:
                try:
                    raw = scalar(evaluate(node, message))
                except ConversionError as exc:
                    raise FieldProblem(path, f": {name}: {exc}", mark) from exc
                if raw is not None and (value := convert(raw)) is not None:
                    return value
                if required:
                    raise FieldProblem(path, missing, mark)
                return None

            return read_result

        # A child path (most values of every mapping): its first item's string-value, read
        # here without building the node-set; the default conversion (trim, empty is absent)
        # is done inline.
        self.plan |= spec.compiled.index_plan
        two_keys = spec.compiled.two_keys
        if two_keys is not None:
            return self._child_value(spec, path, two_keys, convert)
        if spec.convert is DEFAULT_CONVERTER and spec.lookup is None:

            def read_text(node: etree._Element, message: Message) -> Any:
                item = first(node, message.index)
                if item is not None:
                    if type(item) is not str:
                        item = (item.text or "") if len(item) == 0 else _string_value(item)
                    if text := item.strip():
                        return text
                if required:
                    raise FieldProblem(path, missing, mark)
                return None

            return read_text

        def read_converted(node: etree._Element, message: Message) -> Any:
            item = first(node, message.index)
            if item is not None:
                if type(item) is not str:
                    item = (item.text or "") if len(item) == 0 else _string_value(item)
                if (value := convert(item)) is not None:
                    return value
            if required:
                raise FieldProblem(path, missing, mark)
            return None

        return read_converted

    def _child_value(
        self,
        spec: XPathSpec,
        path: str,
        two_keys: tuple[Any, Any],
        convert: Callable[[Scalar], Any],
    ) -> Reader:
        """A value of a two-step child path (most values of every mapping), read inline: the
        index lookups of `first_of_two` and the conversion in one closure."""
        outer, inner = two_keys
        required = not spec.optional
        mark = spec.mark
        missing = f"{_MISSING} (XPath {spec.expression!r})"
        # The default conversion (trim, empty is absent) inline; others by their function.
        plain = spec.convert is DEFAULT_CONVERTER and spec.lookup is None

        def read_child(node: etree._Element, message: Message) -> Any:
            index = message.index
            parents = index.parents
            buckets = parents.get(node)
            if buckets is None:
                buckets = index.build(node)
            for parent in buckets.get(outer, ()):
                children = parents.get(parent)
                if children is None:
                    children = index.build(parent)
                hits = children.get(inner)
                if hits:
                    item = hits[0]
                    text = (item.text or "") if len(item) == 0 else _string_value(item)
                    if plain:
                        if text := text.strip():
                            return text
                    elif (value := convert(text)) is not None:
                        return value
                    break
            if required:
                raise FieldProblem(path, missing, mark)
            return None

        return read_child

    def _converter(self, spec: XPathSpec, path: str) -> Callable[[Scalar], Any]:
        """`spec`'s conversion of one XPath scalar, then its lookup table; errors name `path`."""
        function = spec.convert.function
        name = spec.convert.name
        mark = spec.mark
        lookup = spec.lookup

        def convert(raw: Scalar) -> Any:
            try:
                return function(raw)
            except ConversionError as exc:
                raise FieldProblem(path, f": {name}: {exc}", mark) from exc

        if lookup is None:
            return convert
        table = lookup.table
        unknown = f" is not in lookup {lookup.name!r} ({lookup.mark})"

        def convert_and_look_up(raw: Scalar) -> Any:
            value = convert(raw)
            if value is None:
                return None
            label = table.get(str(value))
            if label is None:
                raise FieldProblem(path, f": code {value!r}{unknown}", mark)
            return label

        return convert_and_look_up

    def _template(self, spec: TemplateSpec, path: str) -> Reader:
        texts = spec.parts[::2]
        fields = [(name, envelope_field(name, self.default_oin)) for name in spec.parts[1::2]]
        optional = spec.optional
        fail = self.fail
        if len(fields) == 1:  # `urn:nld:oin:{verstrekker_oin}:systeem:BRP`, every event's source
            (name, read), (before, after) = fields[0], texts

            def render_one(node: etree._Element, message: Message) -> Any:
                value = read(message.levering)
                if not value:
                    if not optional:
                        fail(f"template {spec.template!r}: {{{name}}} has no value", spec.mark)
                    return None
                return before + value + after

            return render_one

        def render(node: etree._Element, message: Message) -> Any:
            pieces = [texts[0]]
            for (name, read), text in zip(fields, texts[1:], strict=True):
                value = read(message.levering)
                if not value:
                    if optional:
                        return None
                    fail(f"template {spec.template!r}: {{{name}}} has no value", spec.mark)
                pieces += (value, text)
            if rendered := "".join(pieces):
                return rendered
            if not optional:
                raise FieldProblem(path, _MISSING, spec.mark)
            return None

        return render

    def _for_each(self, spec: ForEachSpec, path: str) -> Reader:
        nodes_of = self.xpath(spec.nodes, spec.mark)
        item = self.value(spec.item, "")
        required = not spec.optional
        not_elements = f": for-each {spec.expression!r} must select elements"
        missing = f"{_MISSING} (for-each {spec.expression!r} selects nothing)"

        def read_array(node: etree._Element, message: Message) -> Any:
            nodes = nodes_of(node, message)
            if not isinstance(nodes, list):
                raise FieldProblem(path, not_elements, spec.mark)
            items = []
            for index, item_node in enumerate(nodes):
                if not isinstance(item_node, etree._Element):
                    raise FieldProblem(path, not_elements, spec.mark)
                try:
                    items.append(item(item_node, message))
                except FieldProblem as problem:
                    raise problem.within(f"{path}[{index}]") from problem.__cause__
            if items:
                return items
            if required:
                raise FieldProblem(path, missing, spec.mark)
            return None

        return read_array

    def _plain_child_fields(self, spec: ObjectSpec, path: str) -> tuple[_ChildField, ...] | None:
        """Every field's `_ChildField` when all are two-step child paths (the address objects
        of a BRP move), else None."""
        found = []
        for name, child in spec.fields:
            if not isinstance(child, XPathSpec):
                return None
            two_keys = child.compiled.two_keys
            if two_keys is None:
                return None
            plain = child.convert is DEFAULT_CONVERTER and child.lookup is None
            found.append(
                _ChildField(
                    name,
                    *two_keys,
                    None if plain else self._converter(child, f"{path}.{name}"),
                    not child.optional,
                    f"{_MISSING} (XPath {child.expression!r})",
                    child.mark,
                )
            )
            self.plan |= child.compiled.index_plan
        return tuple(found) if found else None

    def _one_parent_object(
        self, fields: tuple[_ChildField, ...], required: bool, path: str, mark: object
    ) -> Reader:
        """An object whose fields are all child paths through the same parent (`categorie 08`),
        read in one loop: the parent is looked up once for the object, not once per field, and
        no reader is called per value. The same results as `_xpath_value` per field."""
        outer = fields[0].outer
        inners = tuple(
            (field.name, field.inner, field.convert, field.required, field.missing, field.mark)
            for field in fields
        )

        def read_one_parent_object(node: etree._Element, message: Message) -> Any:
            index = message.index
            parents = index.parents
            buckets = parents.get(node)
            if buckets is None:
                buckets = index.build(node)
            found = []
            for parent in buckets.get(outer, ()):
                children = parents.get(parent)
                found.append(index.build(parent) if children is None else children)
            result = {}
            for name, inner, convert, field_required, missing, field_mark in inners:
                for children in found:
                    hits = children.get(inner)
                    if hits:
                        item = hits[0]
                        text = (item.text or "") if len(item) == 0 else _string_value(item)
                        if convert is None:
                            if text := text.strip():
                                result[name] = text
                        elif (value := convert(text)) is not None:
                            result[name] = value
                        break
                if field_required and name not in result:
                    raise FieldProblem(f"{path}.{name}", missing, field_mark)
            if result:
                return result
            if required:
                raise FieldProblem(path, _MISSING, mark)
            return None

        return read_one_parent_object

    def _object(self, spec: ObjectSpec, path: str) -> Reader:
        fields = tuple((name, self.value(child, f"{path}.{name}")) for name, child in spec.fields)
        required = not spec.optional
        plain = self._plain_child_fields(spec, path)
        if plain is not None and len({field.outer for field in plain}) == 1:
            return self._one_parent_object(plain, required, path, spec.mark)

        def read_object(node: etree._Element, message: Message) -> Any:
            result = {}
            for name, read in fields:
                value = read(node, message)
                if value is not None:
                    result[name] = value
            if result:
                return result
            if required:
                raise FieldProblem(path, _MISSING, spec.mark)
            return None

        return read_object


def _string_value(element: etree._Element) -> str:
    """XPath string-value of an element with children: all its descendant text."""
    text = scalar([element])
    return text if isinstance(text, str) else ""

"""The commonest mapping expressions, evaluated without lxml's XPath: child paths, and `and`/`or`
of comparisons of them.

Nearly every value of every mapping is a child path
(`gba:categorie[@nummer='08']/gba:element[@nummer='1110']`), and most `when` conditions compare
such paths. lxml spends several microseconds per XPath call before it looks at a node; here a
path is a chain of dictionary lookups in a `ChildIndex`, which buckets each parent's children
once per message. Each form is turned into a closure when it is compiled (`evaluate`, and for a
path also `first`), so evaluating it is one plain function call.

A fast form gives exactly what lxml gives for the expression; `tests/mapping/test_xpath.py`
checks that for every expression of the bundled mappings on every element of every sample.
`fast_form` returns None for anything it does not recognise, and lxml evaluates that.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

_NCNAME = r"[^\W\d][\w.\-]*"
#: One step of a plain child path: `prefix:name` with `[@attr='literal']` predicates.
_STEP = re.compile(
    rf"(?:(?P<prefix>{_NCNAME}):)?(?P<name>{_NCNAME})"
    rf"(?P<predicates>(?:\[@(?:{_NCNAME}:)?{_NCNAME}\s*=\s*(?:'[^']*'|\"[^\"]*\")\])*)"
)
_PREDICATE = re.compile(
    rf"\[@(?:(?P<prefix>{_NCNAME}):)?(?P<name>{_NCNAME})\s*=\s*(?:'(?P<a>[^']*)'|\"(?P<b>[^\"]*)\")\]"
)
_ATTRIBUTE = re.compile(rf"@(?:(?P<prefix>{_NCNAME}):)?(?P<name>{_NCNAME})")
_TOP_LEVEL = re.compile(r"""\[[^\]]*\]|'[^']*'|"[^"]*"|\s+(and|or)\s+|\s*(!=|=)\s*""")

#: (tag in Clark notation, ((attribute, value), ...)) per step.
_Step = tuple[str, tuple[tuple[str, str], ...]]
#: Per step: the index key (the tag, or (tag, attribute, value) of its first predicate) and
#: the predicates left to test one by one.
_Key = tuple[Any, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class IndexPlan:
    """What a `ChildIndex` must bucket for a set of child paths: the tags they step to without
    a predicate, and the attributes their first predicates test. A mapping set knows this at
    load; bucketing only that makes indexing a parent markedly cheaper."""

    tags: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()

    def __or__(self, other: IndexPlan) -> IndexPlan:
        return IndexPlan(self.tags | other.tags, self.attributes | other.attributes)


class ChildIndex:
    """The children of the elements of one message, bucketed by tag and by (tag, attribute,
    value), each parent indexed once, when a child path first steps through it.

    A mapping reads one message with many similar paths (`gba:categorie[@nummer='08']/…` a dozen
    times); with the index each step is a dictionary lookup instead of a scan. Valid for one
    message: use a new one for the next. With a `plan`, only the buckets the plan names are
    built (paths outside the plan find nothing); without, every tag and every attribute.
    """

    def __init__(self, plan: IndexPlan | None = None) -> None:
        self.parents: dict[etree._Element, dict[Any, list[etree._Element]]] = {}
        self.plan = plan
        #: The common plan, where every predicate tests one attribute (e.g. `@nummer`).
        self._one = (
            next(iter(plan.attributes)) if plan is not None and len(plan.attributes) == 1 else None
        )

    def build(self, parent: etree._Element) -> dict[Any, list[etree._Element]]:
        """Index the children of `parent`: by tag, and by (tag, attribute, value)."""
        name = self._one
        if name is None or self.plan is None:
            buckets = self._build_any(parent)
            self.parents[parent] = buckets
            return buckets
        # The common plan inline, without a loop over attribute names per child and without
        # allocating a list for a bucket that exists: this runs for every parent of a message.
        tags = self.plan.tags
        buckets = {}
        get_bucket = buckets.get
        for child in parent:
            tag = child.tag
            if type(tag) is not str:  # comments, processing instructions
                continue
            if tag in tags:
                bucket = get_bucket(tag)
                if bucket is None:
                    buckets[tag] = [child]
                else:
                    bucket.append(child)
            value = child.get(name)
            if value is not None:
                key = (tag, name, value)
                bucket = get_bucket(key)
                if bucket is None:
                    buckets[key] = [child]
                else:
                    bucket.append(child)
        self.parents[parent] = buckets
        return buckets

    def _build_any(self, parent: etree._Element) -> dict[Any, list[etree._Element]]:
        buckets: dict[Any, list[etree._Element]] = {}
        plan = self.plan
        tags = None if plan is None else plan.tags
        attributes = None if plan is None else plan.attributes
        for child in parent:
            tag = child.tag
            if type(tag) is not str:  # comments, processing instructions
                continue
            if tags is None or tag in tags:
                buckets.setdefault(tag, []).append(child)
            for name in child.keys() if attributes is None else attributes:
                value = child.get(name)
                if value is not None:
                    buckets.setdefault((tag, name, value), []).append(child)
        return buckets


#: A fast form, evaluated on a context node with the message's index.
Evaluate = Callable[[etree._Element, ChildIndex], Any]


@dataclass(frozen=True)
class ChildPath:
    """Child steps with attribute-equality predicates, optionally ending in `@attr` (or `.`).

    `evaluate` gives exactly what lxml gives for it (elements in document order, or attribute
    strings): child steps from distinct parents never repeat a node and keep document order.
    `first` gives the first of those without building the lists (None when there is none):
    what a value needs, since a node-set's string-value is its first node's.
    """

    steps: tuple[_Step, ...]
    attribute: str | None
    keys: tuple[_Key, ...] = field(init=False, repr=False)
    evaluate: Evaluate = field(init=False, repr=False, compare=False)
    first: Evaluate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys: list[_Key] = []
        for tag, predicates in self.steps:
            if predicates:
                (name, value), *rest = predicates
                keys.append(((tag, name, value), tuple(rest)))
            else:
                keys.append((tag, ()))
        object.__setattr__(self, "keys", tuple(keys))
        object.__setattr__(self, "evaluate", _selector(self.keys, self.attribute))
        object.__setattr__(self, "first", _first(self.keys, self.attribute))

    @property
    def two_keys(self) -> tuple[Any, Any] | None:
        """The two index keys when the path is `a[@n='x']/b[@n='y']`-shaped, else None: the
        shape of nearly every value, which readers walk inline."""
        return _two_plain_keys(self.keys, self.attribute)

    @property
    def plan(self) -> IndexPlan:
        """The buckets this path looks up."""
        return IndexPlan(
            frozenset(key for key, _ in self.keys if isinstance(key, str)),
            frozenset(key[1] for key, _ in self.keys if isinstance(key, tuple)),
        )

    def __call__(self, node: etree._Element, index: ChildIndex) -> list[Any]:
        result: list[Any] = self.evaluate(node, index)
        return result


def _two_plain_keys(keys: tuple[_Key, ...], attribute: str | None) -> tuple[Any, Any] | None:
    """The two index keys of `a[@n='x']/b[@n='y']` (the shape of nearly every value), else None."""
    if len(keys) == 2 and attribute is None and not keys[0][1] and not keys[1][1]:
        return keys[0][0], keys[1][0]
    return None


def _selector(keys: tuple[_Key, ...], attribute: str | None) -> Evaluate:
    """The node-set of a child path, as a list."""
    two = _two_plain_keys(keys, attribute)
    if two is not None:
        outer, inner = two

        def select_two(node: etree._Element, index: ChildIndex) -> list[Any]:
            parents = index.parents
            buckets = parents.get(node)
            if buckets is None:
                buckets = index.build(node)
            found: list[Any] = []
            for parent in buckets.get(outer, ()):
                children = parents.get(parent)
                if children is None:
                    children = index.build(parent)
                hits = children.get(inner)
                if hits:
                    found += hits
            return found

        return select_two

    def select(node: etree._Element, index: ChildIndex) -> list[Any]:
        parents = index.parents
        nodes = [node]
        for key, rest in keys:
            found: list[etree._Element] = []
            for parent in nodes:
                buckets = parents.get(parent)
                if buckets is None:
                    buckets = index.build(parent)
                hits = buckets.get(key)
                if hits:
                    if rest:
                        hits = [c for c in hits if all(c.get(n) == v for n, v in rest)]
                    found += hits
            if not found:
                return found
            nodes = found
        if attribute is None:
            return nodes
        return [value for element in nodes if (value := element.get(attribute)) is not None]

    return select


def _first(keys: tuple[_Key, ...], attribute: str | None) -> Evaluate:
    """The first item of a child path: a closure per step, chained. Depth-first over parents
    in document order gives the document-order first item, since child steps from distinct
    parents never interleave."""
    two = _two_plain_keys(keys, attribute)
    if two is not None:
        outer, inner = two

        def first_of_two(node: etree._Element, index: ChildIndex) -> Any:
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
                    return hits[0]
            return None

        return first_of_two
    if not keys:
        if attribute is None:
            return lambda node, index: node
        return lambda node, index: node.get(attribute)
    (key, rest), after = keys[0], _first(keys[1:], attribute)

    def step(node: etree._Element, index: ChildIndex) -> Any:
        buckets = index.parents.get(node)
        if buckets is None:
            buckets = index.build(node)
        for child in buckets.get(key, ()):
            if rest and not all(child.get(n) == v for n, v in rest):
                continue
            found = after(child, index)
            if found is not None:
                return found
        return None

    return step


def string_value(item: Any) -> str:
    """XPath string-value of a child path's item (an element or an attribute value)."""
    if type(item) is str:
        return item
    if len(item) == 0:
        return str(item.text or "")
    return "".join(text for text in item.itertext() if isinstance(text, str))


@dataclass(frozen=True)
class Comparison:
    """`path = 'literal'`, `path != 'literal'`, `path = path`, `path != path` (XPath 1.0: true
    when some pair of string-values compares so), or a lone path read as a boolean."""

    left: ChildPath
    operator: str | None = None
    right: ChildPath | str | None = None
    evaluate: Evaluate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evaluate", self._compile())

    @property
    def plan(self) -> IndexPlan:
        """The buckets its paths look up."""
        right = self.right.plan if isinstance(self.right, ChildPath) else IndexPlan()
        return self.left.plan | right

    def __call__(self, node: etree._Element, index: ChildIndex) -> bool:
        result: bool = self.evaluate(node, index)
        return result

    def _compile(self) -> Evaluate:
        if self.operator is None:
            first = self.left.first
            return lambda node, index: first(node, index) is not None
        left = self.left.evaluate
        right = self.right
        wanted = self.operator == "="
        literal = right if isinstance(right, str) else None
        right_nodes = right.evaluate if isinstance(right, ChildPath) else None

        def compare(node: etree._Element, index: ChildIndex) -> bool:
            items = left(node, index)
            if not items:
                return False
            if right_nodes is None:
                values = [literal]
            else:
                values = [string_value(item) for item in right_nodes(node, index)]
            for item in items:
                text = string_value(item)
                for value in values:
                    if (text == value) is wanted:
                        return True
            return False

        return compare


@dataclass(frozen=True)
class Boolean:
    """`a and b and …` or `a or b or …` of comparisons (one operator throughout)."""

    operator: str
    parts: tuple[Comparison, ...]
    evaluate: Evaluate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tests = tuple(part.evaluate for part in self.parts)
        # `and` stops at the first false part, `or` at the first true one.
        stop_at = self.operator == "or"
        result_at_stop, result_otherwise = stop_at, not stop_at

        def combine(node: etree._Element, index: ChildIndex) -> bool:
            for test in tests:
                if test(node, index) is stop_at:
                    return result_at_stop
            return result_otherwise

        object.__setattr__(self, "evaluate", combine)

    @property
    def plan(self) -> IndexPlan:
        """The buckets its paths look up."""
        plan = IndexPlan()
        for part in self.parts:
            plan |= part.plan
        return plan

    def __call__(self, node: etree._Element, index: ChildIndex) -> bool:
        result: bool = self.evaluate(node, index)
        return result


FastForm = ChildPath | Comparison | Boolean


def fast_form(expression: str, namespaces: Mapping[str, str]) -> FastForm | None:
    """A fast form of `expression` when it is a child path, or `and`/`or` of comparisons of
    child paths with each other or with a string literal; None for anything else."""
    path = child_path(expression, namespaces)
    if path is not None:
        return path
    text = expression.strip()
    pieces: list[str] = []
    operators: list[str] = []
    start = 0
    for match in _TOP_LEVEL.finditer(text):
        operator = match.group(1) or match.group(2)
        if operator is not None:
            pieces.append(text[start : match.start()])
            operators.append(operator)
            start = match.end()
    pieces.append(text[start:])
    joins = {op for op in operators if op in ("and", "or")}
    comparisons = _comparisons(pieces, operators, namespaces)
    if len(joins) > 1 or not comparisons:
        return None
    if len(comparisons) == 1:
        return comparisons[0]
    return Boolean(joins.pop() if joins else "and", tuple(comparisons))


def _comparisons(
    pieces: list[str], operators: list[str], namespaces: Mapping[str, str]
) -> list[Comparison]:
    """`pieces` (split at `operators`) as comparisons; empty when one is not a simple one."""
    comparisons: list[Comparison] = []
    position = 0
    while position < len(pieces):
        left = child_path(pieces[position], namespaces)
        operator = operators[position] if position < len(operators) else None
        if operator not in ("=", "!="):
            if left is None:
                return []
            comparisons.append(Comparison(left))
            position += 1
            continue
        raw = pieces[position + 1].strip()
        right: ChildPath | str | None = None
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            right = raw[1:-1]
        elif raw != ".":
            right = child_path(raw, namespaces)
        following = operators[position + 1] if position + 1 < len(operators) else None
        if left is None or right is None or following in ("=", "!="):
            return []
        comparisons.append(Comparison(left, operator, right))
        position += 2
    return comparisons


def _clark(prefix: str | None, name: str, namespaces: Mapping[str, str]) -> str:
    return f"{{{namespaces[prefix]}}}{name}" if prefix else name


def child_path(expression: str, namespaces: Mapping[str, str]) -> ChildPath | None:
    """The fast form of `expression`, or None when it is anything more than a child path."""
    text = expression.strip()
    if text == ".":
        return ChildPath((), None)
    parts = text.split("/")
    if "" in parts:  # absolute paths and `//` are not child paths
        return None
    attribute = None
    last = _ATTRIBUTE.fullmatch(parts[-1])
    if last is not None:
        attribute = _clark(last.group("prefix"), last.group("name"), namespaces)
        parts = parts[:-1]
    steps: list[_Step] = []
    for part in parts:
        step = _STEP.fullmatch(part)
        if step is None:
            return None
        predicates = tuple(
            (
                _clark(match.group("prefix"), match.group("name"), namespaces),
                match.group("a") if match.group("a") is not None else match.group("b"),
            )
            for match in _PREDICATE.finditer(step.group("predicates"))
        )
        steps.append((_clark(step.group("prefix"), step.group("name"), namespaces), predicates))
    return ChildPath(tuple(steps), attribute)

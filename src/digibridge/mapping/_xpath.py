"""XPath 1.0 expressions from mapping files: checked, then compiled once.

A mapping file is configuration, not code, so an expression may use only what XPath 1.0 itself
offers: location paths over the payload, the core function library, and the envelope variables
(`$kenmerk`, …). lxml's compiler accepts far more than it can evaluate (`php:function(…)`,
`document(…)` and unknown prefixes all compile, and fail only when run), so `compile_xpath`
first reads the expression's tokens and refuses, with a clear message:

- any prefixed function call (extension functions: EXSLT `re:test`, `str:tokenize`, `php:…`);
- any unprefixed function outside the XPath 1.0 core library (`document`, `unparsed-text`, …);
- a namespace prefix the mapping file does not declare; an unknown variable; an unknown axis.

Then it compiles with `regexp=False` (no EXSLT regular expressions) and no extensions, and runs
the expression once against an empty probe element, which catches what only evaluation reports
(wrong number of arguments, for one). Evaluating cannot touch files or the network: nothing that
could is registered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from digibridge.mapping._fastpath import (
    ChildIndex,
    ChildPath,
    Evaluate,
    FastForm,
    IndexPlan,
    fast_form,
)

CORE_FUNCTIONS = frozenset(
    {
        # node-set
        "last",
        "position",
        "count",
        "id",
        "local-name",
        "namespace-uri",
        "name",
        # string
        "string",
        "concat",
        "starts-with",
        "contains",
        "substring-before",
        "substring-after",
        "substring",
        "string-length",
        "normalize-space",
        "translate",
        # boolean
        "boolean",
        "not",
        "true",
        "false",
        "lang",
        # number
        "number",
        "sum",
        "floor",
        "ceiling",
        "round",
    }
)
NODE_TYPES = frozenset({"node", "text", "comment", "processing-instruction"})
AXES = frozenset(
    {
        "ancestor",
        "ancestor-or-self",
        "attribute",
        "child",
        "descendant",
        "descendant-or-self",
        "following",
        "following-sibling",
        "namespace",
        "parent",
        "preceding",
        "preceding-sibling",
        "self",
    }
)
_OPERATOR_NAMES = frozenset({"and", "or", "div", "mod"})

_NCNAME = r"[^\W\d][\w.\-]*"
_TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
    | (?P<literal>"[^"]*"|'[^']*')
    | (?P<number>\d+(?:\.\d*)?|\.\d+)
    | \$(?P<variable>{_NCNAME}(?::{_NCNAME})?)
    | (?P<axis>{_NCNAME})\s*::
    | (?P<name>(?:(?P<prefix>{_NCNAME}):)?(?:{_NCNAME}|\*))
    | (?P<punct>//|\.\.|!=|<=|>=|[/()\[\]@,|+\-=<>*.])
    """,
    re.VERBOSE,
)
# After these a name is a name test or function, and `*` a wildcard (XPath 1.0 §3.7).
_EXPECTS_OPERAND = frozenset(
    {
        "@",
        "::",
        "(",
        "[",
        ",",
        "/",
        "//",
        "|",
        "+",
        "-",
        "=",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "operator",
    }
)

_PROBE = etree.Element("digibridge-probe")


class XPathProblem(ValueError):
    """An expression that is not allowed or does not compile."""


@dataclass(frozen=True)
class CompiledXPath:
    """A checked, compiled expression and the envelope variables it reads.

    Passing lxml only the variables an expression uses (usually none) makes evaluation several
    times cheaper than handing it every envelope field on every call; a plain child path
    (`gba:categorie[@nummer='08']/gba:element[@nummer='1120']`, most of every mapping) and
    comparisons of them are walked directly (`fast`, see `_fastpath.py`), cheaper again.
    """

    expression: str
    xpath: etree.XPath = field(compare=False, repr=False)
    variables: tuple[str, ...]
    fast: FastForm | None = field(default=None, compare=False, repr=False)
    #: The expression may look outside its context node's subtree (an absolute path, `..`, a
    #: reverse or sibling axis, `id()`): it needs the payload as a document of its own.
    escapes: bool = True

    @property
    def first(self) -> Evaluate | None:
        """For a child path, the walker of its first item (a node-set's string-value is that
        item's); None for any other expression."""
        return self.fast.first if isinstance(self.fast, ChildPath) else None

    @property
    def two_keys(self) -> tuple[Any, Any] | None:
        """For a two-step child path with plain predicates, its two `ChildIndex` keys."""
        return self.fast.two_keys if isinstance(self.fast, ChildPath) else None

    @property
    def index_plan(self) -> IndexPlan:
        """What a `ChildIndex` must bucket for this expression's fast form."""
        return IndexPlan() if self.fast is None else self.fast.plan

    def __call__(
        self, node: etree._Element, values: Mapping[str, str], index: ChildIndex | None = None
    ) -> Any:
        if self.fast is not None:
            return self.fast.evaluate(node, index or ChildIndex())
        if not self.variables:
            return self.xpath(node)
        return self.xpath(node, **{name: values[name] for name in self.variables})


def compile_checked(
    expression: str, namespaces: Mapping[str, str], variables: Iterable[str]
) -> CompiledXPath:
    """`compile_xpath`, keeping which variables the expression reads (and a fast form)."""
    used: set[str] = set()
    compiled = compile_xpath(expression, namespaces, variables, used=used)
    fast = fast_form(expression, namespaces)
    escapes = _escapes(expression)
    return CompiledXPath(expression, compiled, tuple(sorted(used)), fast, escapes)


_OUTWARD_AXES = frozenset(AXES - {"attribute", "child", "descendant", "descendant-or-self", "self"})


def _escapes(expression: str) -> bool:
    """Whether `expression` may reach outside the subtree of its context node."""
    previous: str | None = None
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:  # pragma: no cover - checked by _check_tokens before
            return True
        position = match.end()
        kind = match.lastgroup
        if kind == "space":
            continue
        if kind == "punct":
            punct = match.group("punct")
            if punct == ".." or (
                punct in ("/", "//") and (previous is None or previous in _EXPECTS_OPERAND)
            ):
                return True
            previous = punct
            continue
        if kind == "axis" and match.group("axis") in _OUTWARD_AXES:
            return True
        name = match.group("name") if kind == "name" else None
        if name == "id" and expression[position:].lstrip().startswith("("):
            return True
        operator = previous is not None and previous not in _EXPECTS_OPERAND
        if name is not None and operator and (name in _OPERATOR_NAMES or name == "*"):
            previous = "operator"
        else:
            previous = {"axis": "::"}.get(kind or "", kind)
    return False


def compile_xpath(
    expression: str,
    namespaces: Mapping[str, str],
    variables: Iterable[str],
    *,
    used: set[str] | None = None,
) -> etree.XPath:
    """Check `expression` against the rules above and compile it; XPathProblem if it fails.

    The names of the variables it reads are added to `used` when given.
    """
    known_variables = frozenset(variables)
    seen = _check_tokens(expression, namespaces, known_variables)
    if used is not None:
        used.update(seen)
    try:
        compiled = etree.XPath(
            expression,
            namespaces=dict(namespaces),
            regexp=False,
            smart_strings=False,
        )
        compiled(_PROBE, **dict.fromkeys(known_variables, ""))
    except etree.XPathError as exc:
        raise XPathProblem(f"XPath {expression!r}: {exc}") from None
    return compiled


def _check_tokens(
    expression: str, namespaces: Mapping[str, str], variables: frozenset[str]
) -> set[str]:
    """Check every token; the variables the expression reads."""
    if not expression.strip():
        raise XPathProblem("XPath expression is empty")
    previous: str | None = None  # the previous token's kind or punctuation
    seen: set[str] = set()
    depth = 0
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise XPathProblem(
                f"XPath {expression!r}: unexpected {expression[position]!r} at {position + 1}"
            )
        position = match.end()
        if match.lastgroup == "space":
            continue
        if match.lastgroup == "punct":
            depth += {"(": 1, ")": -1}.get(match.group("punct"), 0)
            if depth < 0:
                raise XPathProblem(f"XPath {expression!r}: unbalanced ')' at {position}")
        previous = _check_token(expression, match, previous, namespaces, variables)
        if match.lastgroup == "variable":
            seen.add(match.group("variable"))
    if depth:
        raise XPathProblem(f"XPath {expression!r}: unbalanced '('")
    return seen


def _check_token(
    expression: str,
    match: re.Match[str],
    previous: str | None,
    namespaces: Mapping[str, str],
    variables: frozenset[str],
) -> str:
    """Check one token; returns what the next token sees as `previous`."""
    kind = match.lastgroup or ""
    if kind == "punct":
        return match.group("punct")
    if kind == "axis":
        if match.group("axis") not in AXES:
            raise XPathProblem(f"XPath {expression!r}: unknown axis {match.group('axis')!r}")
        return "::"
    if kind == "variable":
        if match.group("variable") not in variables:
            known = ", ".join(f"${v}" for v in sorted(variables))
            raise XPathProblem(
                f"XPath {expression!r}: unknown variable ${match.group('variable')} "
                f"(known: {known})"
            )
        return kind
    if kind in ("name", "prefix"):
        name = match.group("name")
        operator_position = previous is not None and previous not in _EXPECTS_OPERAND
        if operator_position and (name in _OPERATOR_NAMES or name == "*"):
            return "operator"  # and, or, div, mod, or * as multiplication
        _check_name(expression, name, match.group("prefix"), match.end(), namespaces)
        return "name"
    return kind


def _check_name(
    expression: str,
    name: str,
    prefix: str | None,
    end: int,
    namespaces: Mapping[str, str],
) -> None:
    is_call = expression[end:].lstrip().startswith("(")
    if is_call and prefix is not None:
        raise XPathProblem(
            f"XPath {expression!r}: extension function {name}() is not allowed "
            "(XPath 1.0 core functions only)"
        )
    if is_call and name not in CORE_FUNCTIONS and name not in NODE_TYPES:
        raise XPathProblem(
            f"XPath {expression!r}: function {name}() is not an XPath 1.0 core function"
        )
    if prefix is not None and prefix != "xml" and prefix not in namespaces:
        declared = ", ".join(sorted(namespaces)) or "none"
        raise XPathProblem(
            f"XPath {expression!r}: unknown namespace prefix {prefix!r} (declared: {declared})"
        )

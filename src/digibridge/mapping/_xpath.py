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

from lxml import etree

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


def compile_xpath(
    expression: str, namespaces: Mapping[str, str], variables: Iterable[str]
) -> etree.XPath:
    """Check `expression` against the rules above and compile it; XPathProblem if it fails."""
    known_variables = frozenset(variables)
    _check_tokens(expression, namespaces, known_variables)
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
) -> None:
    if not expression.strip():
        raise XPathProblem("XPath expression is empty")
    previous: str | None = None  # the previous token's kind or punctuation
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
    if depth:
        raise XPathProblem(f"XPath {expression!r}: unbalanced '('")


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

"""Which subscriptions want which events: `types`, `source` and the Subscriptions API filters.

Filters are validated once when a subscription is created (`validate_filters`, raising
`FilterError` that names the offending filter) and evaluated per event by `subscription_matches`.
Dialects: `exact`, `prefix`, `suffix` (attribute → value, case-sensitive), `all`, `any`, `not`,
and `sql` (CloudEvents SQL v1, `events.cesql`). A `sql` expression is compiled once per distinct
text (a bounded cache shared by every subscription) and matches only when it yields Boolean true
without any evaluation error (CESQL §1.2). Operator documentation: docs/filters.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from digibridge.errors import DigibridgeError
from digibridge.events.cesql import CesqlParseError, CompiledExpression, ValueType
from digibridge.events.cesql import compile_expression as _compile
from digibridge.store.types import NewEvent, Subscription

_ATTRIBUTE_DIALECTS = ("exact", "prefix", "suffix")
_NESTED_DIALECTS = ("all", "any")
SUPPORTED_DIALECTS = (*_ATTRIBUTE_DIALECTS, *_NESTED_DIALECTS, "not", "sql")
#: Longest `sql` expression accepted; real filters are a few hundred characters at most.
MAX_SQL_LENGTH = 4096
#: Distinct `sql` expressions kept compiled; more than any deployment has subscriptions.
SQL_CACHE_SIZE = 4096


class FilterError(DigibridgeError):
    """A filter expression that cannot be used; `pointer` is a JSON pointer into the request."""

    def __init__(self, message: str, *, pointer: str) -> None:
        super().__init__(f"{pointer}: {message}")
        self.message = message
        self.pointer = pointer


def validate_filters(filters: Sequence[Any], pointer: str = "/filters") -> None:
    for index, expression in enumerate(filters):
        _validate(expression, f"{pointer}/{index}")


def _validate(expression: Any, pointer: str) -> None:
    if not isinstance(expression, Mapping) or len(expression) != 1:
        raise FilterError("a filter is an object with exactly one dialect key", pointer=pointer)
    ((dialect, argument),) = expression.items()
    if dialect in _ATTRIBUTE_DIALECTS:
        if not isinstance(argument, Mapping) or not argument:
            raise FilterError(
                f"'{dialect}' takes an object of attribute names to strings", pointer=pointer
            )
        for name, value in argument.items():
            if not (isinstance(name, str) and name.isascii() and name.isalnum() and name.islower()):
                raise FilterError(
                    f"{name!r} is not a CloudEvents attribute name (lower-case a-z, 0-9)",
                    pointer=f"{pointer}/{dialect}",
                )
            if not isinstance(value, str):
                raise FilterError("filter values are strings", pointer=f"{pointer}/{dialect}")
    elif dialect in _NESTED_DIALECTS:
        if not isinstance(argument, list) or not argument:
            raise FilterError(f"'{dialect}' takes a non-empty list of filters", pointer=pointer)
        validate_filters(argument, f"{pointer}/{dialect}")
    elif dialect == "not":
        _validate(argument, f"{pointer}/not")
    elif dialect == "sql":
        _validate_sql(argument, f"{pointer}/sql")
    else:
        raise FilterError(
            f"filter dialect {dialect!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_DIALECTS)})",
            pointer=pointer,
        )


def _validate_sql(text: Any, pointer: str) -> None:
    """Compile the expression, and refuse what could never match: a parse error, a call of a
    function that does not exist, or a result that is statically not a Boolean."""
    if not isinstance(text, str):
        raise FilterError("'sql' takes a CloudEvents SQL expression as a string", pointer=pointer)
    if len(text) > MAX_SQL_LENGTH:
        raise FilterError(
            f"the CloudEvents SQL expression is longer than {MAX_SQL_LENGTH} characters",
            pointer=pointer,
        )
    try:
        compiled = _compile(text)
    except CesqlParseError as exc:
        raise FilterError(
            f"invalid CloudEvents SQL expression: {exc.message} at column {exc.column}",
            pointer=pointer,
        ) from None
    if compiled.missing_functions:
        error = compiled.missing_functions[0]
        raise FilterError(
            f"invalid CloudEvents SQL expression: {error.message} at column {error.position + 1}",
            pointer=pointer,
        )
    if compiled.type in (ValueType.INTEGER, ValueType.STRING):
        raise FilterError(
            f"the CloudEvents SQL expression yields {compiled.type.value}, "
            "a filter needs a Boolean expression",
            pointer=pointer,
        )


@lru_cache(maxsize=SQL_CACHE_SIZE)
def _sql_filter(text: str) -> CompiledExpression | None:
    """The compiled expression, once per distinct text; None for text that does not compile
    (only possible for a subscription stored by something other than the API), which matches
    nothing rather than failing the ingest transaction."""
    try:
        return _compile(text)
    except CesqlParseError:
        return None


class SqlCacheInfo(NamedTuple):
    hits: int
    #: Compilations: one per distinct expression text (again only after eviction).
    misses: int
    size: int


def sql_cache_info() -> SqlCacheInfo:
    """How the `sql` expression cache is doing (for tests and diagnostics)."""
    info = _sql_filter.cache_info()
    return SqlCacheInfo(info.hits, info.misses, info.currsize)


def _holds(expression: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    ((dialect, argument),) = expression.items()
    if dialect == "sql":
        compiled = _sql_filter(argument) if isinstance(argument, str) else None
        return compiled is not None and compiled.matches(attributes)
    if dialect == "all":
        return all(_holds(inner, attributes) for inner in argument)
    if dialect == "any":
        return any(_holds(inner, attributes) for inner in argument)
    if dialect == "not":
        return not _holds(argument, attributes)
    return all(
        _attribute_holds(dialect, attributes.get(name), wanted) for name, wanted in argument.items()
    )


def _attribute_holds(dialect: str, value: Any, wanted: str) -> bool:
    if value is None:
        return False
    text = value if isinstance(value, str) else str(value)
    if dialect == "exact":
        return text == wanted
    if dialect == "prefix":
        return text.startswith(wanted)
    return text.endswith(wanted)


def subscription_matches(subscription: Subscription, event: NewEvent) -> bool:
    """True when the subscription wants the event (types, source and every filter hold)."""
    if subscription.types and event.type not in subscription.types:
        return False
    if subscription.source is not None and event.source != subscription.source:
        return False
    return all(_holds(expression, event.attributes) for expression in subscription.filters)

"""Which subscriptions want which events: `types`, `source` and the Subscriptions API filters.

Filters are validated once when a subscription is created (`validate_filters`, raising
`FilterError` that names the offending filter) and evaluated per event by `subscription_matches`.
Dialects: `exact`, `prefix`, `suffix` (attribute → value, case-sensitive), `all`, `any`, `not`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from digibridge.errors import DigibridgeError
from digibridge.store.types import NewEvent, Subscription

_ATTRIBUTE_DIALECTS = ("exact", "prefix", "suffix")
_NESTED_DIALECTS = ("all", "any")
SUPPORTED_DIALECTS = (*_ATTRIBUTE_DIALECTS, *_NESTED_DIALECTS, "not")


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
    else:
        raise FilterError(
            f"filter dialect {dialect!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_DIALECTS)})",
            pointer=pointer,
        )


def _holds(expression: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    ((dialect, argument),) = expression.items()
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

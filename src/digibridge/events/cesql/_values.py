"""CESQL's three types, their zero values, and the casts between them (spec §3.1, §3.7).

Values are plain Python `bool`, `int` and `str`. Because `bool` is a subclass of `int` in
Python, types are always told apart with `type(value) is ...`, never `isinstance`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from digibridge.events.cesql.errors import ErrorKind, EvaluationError

Value = bool | int | str

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


class ValueType(Enum):
    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"
    #: Statically unknown: an attribute, whose type is only known per event.
    ANY = "Any"


ZERO: dict[ValueType, Value] = {
    ValueType.BOOLEAN: False,
    ValueType.INTEGER: 0,
    ValueType.STRING: "",
}


def type_of(value: Value) -> ValueType:
    kind = type(value)
    if kind is bool:
        return ValueType.BOOLEAN
    if kind is int:
        return ValueType.INTEGER
    return ValueType.STRING


def from_attribute(raw: Any) -> Value:
    """An attribute value as CESQL sees it: JSON strings, booleans and 32-bit integers keep their
    type (extensions like `sequence` may be either); anything else is its string form."""
    kind = type(raw)
    if kind is str or kind is bool:
        return raw  # type: ignore[no-any-return]
    if kind is int and INT_MIN <= raw <= INT_MAX:
        return raw  # type: ignore[no-any-return]
    return str(raw)


def in_range(number: int) -> bool:
    return INT_MIN <= number <= INT_MAX


def parse_integer(text: str) -> int | None:
    """A string as a 32-bit integer (optional sign, decimal digits only), or None."""
    if _INTEGER_TEXT.fullmatch(text) is None:
        return None
    number = int(text)
    return number if in_range(number) else None


def parse_boolean(text: str) -> bool | None:
    """`true`/`false` in any letter case, or None."""
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


def to_string(value: Value) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)


def describe(value: Value) -> str:
    shown = repr(value) if type(value) is str else to_string(value)
    return f"{type_of(value).value} {shown}"


class Scope:
    """One evaluation: the event's attributes and the errors met so far."""

    __slots__ = ("attributes", "errors")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = attributes
        self.errors: list[EvaluationError] = []

    def fail(self, kind: ErrorKind, message: str, position: int) -> None:
        self.errors.append(EvaluationError(kind, message, position))

    def cast(self, value: Value, target: ValueType, position: int) -> Value:
        """The implicit cast of §3.7; a value that cannot be cast becomes the target's zero value
        and a cast error. Integer to Boolean is explicit only (`BOOL(x)`), as the TCK pins."""
        source = type_of(value)
        if source is target or target is ValueType.ANY:
            return value
        if target is ValueType.STRING:
            return to_string(value)
        if target is ValueType.INTEGER:
            if source is ValueType.BOOLEAN:
                return 1 if value else 0
            number = parse_integer(value)  # type: ignore[arg-type]
            if number is not None:
                return number
        elif source is ValueType.STRING:
            flag = parse_boolean(value)  # type: ignore[arg-type]
            if flag is not None:
                return flag
        self.fail(ErrorKind.CAST, f"cannot cast {describe(value)} to {target.value}", position)
        return ZERO[target]

    def clamp(self, number: int, position: int) -> int:
        """A result outside the 32-bit range is a math error; the value saturates at the bound
        (as the specification prescribes for `ABS(-2147483648)`)."""
        if in_range(number):
            return number
        self.fail(ErrorKind.MATH, f"{number} overflows a 32-bit integer", position)
        return INT_MAX if number > INT_MAX else INT_MIN

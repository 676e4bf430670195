"""The built-in functions of CESQL v1 (spec §3.5) and how a call is dispatched.

Names are case-insensitive. A function is found by name and arity: fixed-arity overloads
first, then a variadic one whose fixed part fits. Arguments are cast to the parameter types
before the call (`LENGTH(TRUE)` is 4); the explicit casts `INT`, `BOOL` and `STRING` take any
type and do the conversion themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from digibridge.events.cesql._nodes import Node, evaluate_operand, zero_of
from digibridge.events.cesql._values import (
    INT_MAX,
    INT_MIN,
    Scope,
    Value,
    ValueType,
    describe,
    parse_boolean,
    parse_integer,
    to_string,
)
from digibridge.events.cesql.errors import ErrorKind, EvaluationError

BOOLEAN, INTEGER, STRING, ANY = (
    ValueType.BOOLEAN,
    ValueType.INTEGER,
    ValueType.STRING,
    ValueType.ANY,
)
#: (scope, arguments already cast, position of the call) -> result.
Implementation = Callable[[Scope, Sequence[Value], int], Value]
# TRIM removes these (ASCII whitespace), not every Unicode space.
_WHITESPACE = " \t\n\v\f\r"


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    parameters: tuple[ValueType, ...]
    returns: ValueType
    implementation: Implementation
    #: Type of the repeated trailing parameter of a variadic function.
    variadic: ValueType | None = None

    def parameter(self, index: int) -> ValueType:
        if index < len(self.parameters):
            return self.parameters[index]
        return self.variadic or ANY


def _text(value: Value) -> str:
    return value if type(value) is str else to_string(value)


def _number(value: Value) -> int:
    return int(value)


def _int(scope: Scope, args: Sequence[Value], at: int) -> Value:
    (value,) = args
    if type(value) is str:
        number = parse_integer(value)
        if number is None:
            scope.fail(ErrorKind.CAST, f"cannot cast {describe(value)} to Integer", at)
            return 0
        return number
    return int(value)


def _bool(scope: Scope, args: Sequence[Value], at: int) -> Value:
    (value,) = args
    if type(value) is str:
        flag = parse_boolean(value)
        if flag is None:
            scope.fail(ErrorKind.CAST, f"cannot cast {describe(value)} to Boolean", at)
            return False
        return flag
    return bool(value)  # an Integer is true unless 0


def _left(scope: Scope, args: Sequence[Value], at: int) -> Value:
    text, count = _text(args[0]), _number(args[1])
    if count < 0:
        scope.fail(ErrorKind.FUNCTION_EVALUATION, f"LEFT of a negative length {count}", at)
        return text
    return text[:count]


def _right(scope: Scope, args: Sequence[Value], at: int) -> Value:
    text, count = _text(args[0]), _number(args[1])
    if count < 0:
        scope.fail(ErrorKind.FUNCTION_EVALUATION, f"RIGHT of a negative length {count}", at)
        return text
    return text[max(len(text) - count, 0) :]


def _substring(scope: Scope, args: Sequence[Value], at: int) -> Value:
    """1-based `pos`, negative counts from the end, 0 gives ''; out of range is an error."""
    text, position = _text(args[0]), _number(args[1])
    length = _number(args[2]) if len(args) == 3 else None
    if position > len(text) or position < -len(text):
        scope.fail(
            ErrorKind.FUNCTION_EVALUATION,
            f"SUBSTRING position {position} is outside a string of length {len(text)}",
            at,
        )
        return ""
    if length is not None and length < 0:
        scope.fail(ErrorKind.FUNCTION_EVALUATION, f"SUBSTRING of a negative length {length}", at)
        return ""
    if position == 0:
        return ""
    start = position - 1 if position > 0 else len(text) + position
    return text[start:] if length is None else text[start : start + length]


def _abs(scope: Scope, args: Sequence[Value], at: int) -> Value:
    number = _number(args[0])
    if number == INT_MIN:
        scope.fail(ErrorKind.MATH, f"ABS({INT_MIN}) overflows a 32-bit integer", at)
        return INT_MAX
    return abs(number)


_BUILTINS = (
    Function("LENGTH", (STRING,), INTEGER, lambda _s, a, _at: len(_text(a[0]))),
    Function("CONCAT", (), STRING, lambda _s, a, _at: "".join(map(_text, a)), variadic=STRING),
    Function(
        "CONCAT_WS",
        (STRING,),
        STRING,
        lambda _s, a, _at: _text(a[0]).join(map(_text, a[1:])),
        variadic=STRING,
    ),
    Function("LOWER", (STRING,), STRING, lambda _s, a, _at: _text(a[0]).lower()),
    Function("UPPER", (STRING,), STRING, lambda _s, a, _at: _text(a[0]).upper()),
    Function("TRIM", (STRING,), STRING, lambda _s, a, _at: _text(a[0]).strip(_WHITESPACE)),
    Function("LEFT", (STRING, INTEGER), STRING, _left),
    Function("RIGHT", (STRING, INTEGER), STRING, _right),
    Function("SUBSTRING", (STRING, INTEGER), STRING, _substring),
    Function("SUBSTRING", (STRING, INTEGER, INTEGER), STRING, _substring),
    Function("ABS", (INTEGER,), INTEGER, _abs),
    Function("INT", (ANY,), INTEGER, _int),
    Function("BOOL", (ANY,), BOOLEAN, _bool),
    Function("STRING", (ANY,), STRING, lambda _s, a, _at: to_string(a[0])),
    Function(
        "IS_BOOL", (STRING,), BOOLEAN, lambda _s, a, _at: parse_boolean(_text(a[0])) is not None
    ),
    Function(
        "IS_INT", (STRING,), BOOLEAN, lambda _s, a, _at: parse_integer(_text(a[0])) is not None
    ),
)


def resolve(name: str, arity: int) -> Function | None:
    """The built-in `name` (any case) taking `arity` arguments, or None."""
    upper = name.upper()
    candidates = [f for f in _BUILTINS if f.name == upper]
    for function in candidates:
        if function.variadic is None and len(function.parameters) == arity:
            return function
    for function in candidates:
        if function.variadic is not None and len(function.parameters) <= arity:
            return function
    return None


def call(function: Function, arguments: Sequence[Node], position: int) -> Node:
    implementation, returns = function.implementation, function.returns
    zero = zero_of(returns)
    targets = tuple(function.parameter(index) for index in range(len(arguments)))

    def run(scope: Scope) -> Value:
        values: list[Value] = []
        for argument, target in zip(arguments, targets, strict=True):
            value, failed = evaluate_operand(scope, argument)
            if failed:
                return zero
            values.append(scope.cast(value, target, argument.position))
        return implementation(scope, values, position)

    return Node(returns, run, position)


def missing(name: str, arity: int, position: int) -> tuple[Node, EvaluationError]:
    """A call no built-in answers: false, with a missingFunction error, at every evaluation;
    and that error, for the compiler to report up front."""
    error = EvaluationError(
        ErrorKind.MISSING_FUNCTION,
        f"there is no function {name.upper()} taking {arity} argument(s)",
        position,
    )

    def run(scope: Scope) -> Value:
        scope.errors.append(error)
        return False

    return Node(BOOLEAN, run, position), error

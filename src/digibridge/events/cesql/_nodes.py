"""The compiled form of an expression: a tree of small closures, built once by the parser.

Each `Node` knows its static type and evaluates against a `Scope`. Error propagation follows
the specification and its TCK: an operator whose operand's evaluation raised an error yields its
own zero value (`missing + 1` is 0, `NOT missing` is false), and so does a binary operator that
cannot cast an operand (`'abc' < 1` is false, with a cast error, §3.4). The unary operators
negate the zero value of the operand they could not cast instead (`NOT 10` is true, with a cast
error: pinned by the TCK). Left-associative runs (`a AND b AND c`, `1 + 2 + 3`) are one `chain` node
evaluated in a loop, so long runs do not nest Python calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from digibridge.events.cesql._like import LikePattern
from digibridge.events.cesql._values import (
    ZERO,
    Scope,
    Value,
    ValueType,
    from_attribute,
    type_of,
)
from digibridge.events.cesql.errors import ErrorKind

Evaluate = Callable[[Scope], Value]
#: One step of a left-associative run: (scope, left value, did the left side fail) -> value.
Step = Callable[[Scope, Value, bool], Value]

BOOLEAN, INTEGER, STRING = ValueType.BOOLEAN, ValueType.INTEGER, ValueType.STRING


@dataclass(frozen=True, slots=True)
class Node:
    type: ValueType
    run: Evaluate
    position: int


def literal(value: Value, position: int) -> Node:
    return Node(type_of(value), lambda _scope: value, position)


def attribute(name: str, position: int) -> Node:
    def run(scope: Scope) -> Value:
        raw = scope.attributes.get(name)
        if raw is None:
            scope.fail(
                ErrorKind.MISSING_ATTRIBUTE, f"the event has no attribute {name!r}", position
            )
            return False
        return from_attribute(raw)

    return Node(ValueType.ANY, run, position)


def exists(name: str, position: int) -> Node:
    return Node(BOOLEAN, lambda scope: scope.attributes.get(name) is not None, position)


def evaluate_operand(scope: Scope, node: Node) -> tuple[Value, bool]:
    """The operand's value and whether its evaluation raised an error."""
    before = len(scope.errors)
    value = node.run(scope)
    return value, len(scope.errors) != before


def logical_not(operand: Node, position: int) -> Node:
    def run(scope: Scope) -> Value:
        value, failed = evaluate_operand(scope, operand)
        if failed:
            return False
        return not scope.cast(value, BOOLEAN, position)

    return Node(BOOLEAN, run, position)


def negate(operand: Node, position: int) -> Node:
    def run(scope: Scope) -> Value:
        value, failed = evaluate_operand(scope, operand)
        if failed:
            return 0
        return scope.clamp(-int(scope.cast(value, INTEGER, position)), position)

    return Node(INTEGER, run, position)


def chain(first: Node, steps: Sequence[tuple[Step, ValueType]]) -> Node:
    if not steps:
        return first
    run_first = first.run
    functions = tuple(step for step, _type in steps)

    def run(scope: Scope) -> Value:
        errors = scope.errors
        before = len(errors)
        value = run_first(scope)
        for step in functions:
            value = step(scope, value, len(errors) != before)
        return value

    return Node(steps[-1][1], run, first.position)


# -- logic ------------------------------------------------------------------------------------


def cast_or_none(scope: Scope, value: Value, target: ValueType, position: int) -> Value | None:
    """The cast, or None (with the cast error recorded) when the value cannot be cast."""
    before = len(scope.errors)
    result = scope.cast(value, target, position)
    return None if len(scope.errors) != before else result


def _right_boolean(scope: Scope, right: Node) -> Value:
    value, failed = evaluate_operand(scope, right)
    if failed:
        return False
    return cast_or_none(scope, value, BOOLEAN, right.position) or False


def and_step(right: Node, position: int) -> Step:
    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed or not cast_or_none(scope, left, BOOLEAN, position):
            return False  # short circuit: the right operand is not evaluated
        return _right_boolean(scope, right)

    return step


def or_step(right: Node, position: int) -> Step:
    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed:
            return False
        flag = cast_or_none(scope, left, BOOLEAN, position)
        if flag is None:
            return False
        if flag:
            return True  # short circuit: the right operand is not evaluated
        return _right_boolean(scope, right)

    return step


def xor_step(right: Node, position: int) -> Step:
    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed:
            return False
        value, right_failed = evaluate_operand(scope, right)
        if right_failed:
            return False
        a = cast_or_none(scope, left, BOOLEAN, position)
        b = cast_or_none(scope, value, BOOLEAN, right.position)
        return False if a is None or b is None else a != b

    return step


# -- arithmetic and comparison ----------------------------------------------------------------


def _quotient(scope: Scope, left: int, right: int, position: int) -> int:
    if right == 0:
        scope.fail(ErrorKind.MATH, "division by zero", position)
        return 0
    magnitude = abs(left) // abs(right)  # truncated, not floored: rounds towards zero
    return scope.clamp(magnitude if (left < 0) == (right < 0) else -magnitude, position)


def _remainder(scope: Scope, left: int, right: int, position: int) -> int:
    if right == 0:
        scope.fail(ErrorKind.MATH, "modulo by zero", position)
        return 0
    remainder = abs(left) % abs(right)  # takes the sign of the dividend
    return remainder if left >= 0 else -remainder


ARITHMETIC: dict[str, Callable[[Scope, int, int, int], int]] = {
    "+": lambda scope, a, b, at: scope.clamp(a + b, at),
    "-": lambda scope, a, b, at: scope.clamp(a - b, at),
    "*": lambda scope, a, b, at: scope.clamp(a * b, at),
    "/": _quotient,
    "%": _remainder,
}

ORDERING: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def arithmetic_step(operator: str, right: Node, position: int) -> Step:
    apply = ARITHMETIC[operator]

    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed:
            return 0
        value, right_failed = evaluate_operand(scope, right)
        if right_failed:
            return 0
        a = cast_or_none(scope, left, INTEGER, position)
        b = cast_or_none(scope, value, INTEGER, right.position)
        if a is None or b is None:
            return 0
        return apply(scope, int(a), int(b), position)

    return step


def equality_step(negated: bool, right: Node, position: int) -> Step:
    """`=`, `!=`, `<>`: defined for every type alike, so the left operand is cast to the right
    operand's type (§3.7: `'TRUE' = true` compares booleans, `true = 'TRUE'` strings)."""

    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed:
            return False
        value, right_failed = evaluate_operand(scope, right)
        if right_failed:
            return False
        cast = cast_or_none(scope, left, type_of(value), position)
        return False if cast is None else (cast == value) != negated

    return step


def ordering_step(operator: str, right: Node, position: int) -> Step:
    compare = ORDERING[operator]

    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed:
            return False
        value, right_failed = evaluate_operand(scope, right)
        if right_failed:
            return False
        a = cast_or_none(scope, left, INTEGER, position)
        b = cast_or_none(scope, value, INTEGER, right.position)
        return False if a is None or b is None else compare(int(a), int(b))

    return step


def like_step(pattern: LikePattern, negated: bool, position: int) -> Step:
    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed:
            return False
        return pattern.matches(str(scope.cast(left, STRING, position))) != negated

    return step


def in_step(items: Sequence[Node], negated: bool, position: int) -> Step:
    """Set members are cast to the left operand's type (§3.7) and compared like `=`."""

    def step(scope: Scope, left: Value, failed: bool) -> Value:
        if failed:
            return False
        target = type_of(left)
        for item in items:
            value, item_failed = evaluate_operand(scope, item)
            if item_failed:
                return False
            cast = cast_or_none(scope, value, target, item.position)
            if cast is None:
                return False
            if cast == left:
                return not negated
        return negated

    return step


def zero_of(value_type: ValueType) -> Value:
    return ZERO.get(value_type, False)

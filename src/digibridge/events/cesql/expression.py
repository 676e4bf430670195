"""Compile once, evaluate many: the public face of the CESQL engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from digibridge.events.cesql._parser import Parser
from digibridge.events.cesql._values import Scope, Value, ValueType
from digibridge.events.cesql.errors import EvaluationError


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """The value an expression yields for one event, and the errors met on the way (CESQL is
    total: on an error the failing part yields its type's zero value and evaluation goes on)."""

    value: Value
    errors: tuple[EvaluationError, ...]

    @property
    def matched(self) -> bool:
        """The filter reading (CESQL §1.2): Boolean true and no error."""
        return self.value is True and not self.errors


class CompiledExpression:
    """A parsed expression, safe to share between threads and evaluate any number of times."""

    __slots__ = ("_run", "missing_functions", "text", "type")

    def __init__(self, text: str) -> None:
        parser = Parser(text)
        root = parser.parse()
        self.text = text
        #: The static result type; `ValueType.ANY` for a bare attribute name.
        self.type: ValueType = root.type
        #: Calls to functions that do not exist (by name and arity): known at compile time,
        #: reported as missingFunction errors by every evaluation.
        self.missing_functions: tuple[EvaluationError, ...] = tuple(parser.missing_functions)
        self._run = root.run

    def evaluate(self, attributes: Mapping[str, Any]) -> EvaluationResult:
        """Evaluate against an event's context attributes (JSON-format values by name)."""
        scope = Scope(attributes)
        value = self._run(scope)
        return EvaluationResult(value, tuple(scope.errors))

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """True only when the expression yields Boolean true without any error."""
        scope = Scope(attributes)
        return self._run(scope) is True and not scope.errors

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r})"


def compile_expression(text: str) -> CompiledExpression:
    """Parse `text`; raises `CesqlParseError` (with the position) when it is not CESQL v1."""
    return CompiledExpression(text)

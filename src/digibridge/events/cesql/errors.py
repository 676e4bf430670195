"""What can go wrong with a CESQL expression.

    DigibridgeError
    └── CesqlError
        └── CesqlParseError   the text is not a CESQL expression (raised by `compile_expression`)

Evaluation never raises: CESQL is total, so every evaluation yields a value plus a list of
`EvaluationError`s, each of one of the kinds the specification and its TCK name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from digibridge.errors import DigibridgeError


class ErrorKind(StrEnum):
    """The CESQL v1 error kinds, spelled as the TCK spells them."""

    PARSE = "parse"
    MATH = "math"
    CAST = "cast"
    MISSING_ATTRIBUTE = "missingAttribute"
    MISSING_FUNCTION = "missingFunction"
    FUNCTION_EVALUATION = "functionEvaluation"


@dataclass(frozen=True, slots=True)
class EvaluationError:
    """One error met while evaluating; `position` is the 0-based offset of the culprit."""

    kind: ErrorKind
    message: str
    position: int

    def __str__(self) -> str:
        return f"{self.kind}: {self.message} (column {self.position + 1})"


class CesqlError(DigibridgeError):
    """Root of the CESQL engine's exceptions."""


class CesqlParseError(CesqlError, ValueError):
    """The expression text does not parse; `position` is the 0-based offset where it failed."""

    kind = ErrorKind.PARSE

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(f"{message} (column {position + 1})")
        self.message = message
        self.position = position

    @property
    def column(self) -> int:
        """1-based column, as shown to people."""
        return self.position + 1

"""CloudEvents SQL Expression Language v1 (CESQL): the `sql` subscription filter dialect.

    compile_expression(text) -> CompiledExpression      raises CesqlParseError(position)
    CompiledExpression.evaluate(attributes) -> EvaluationResult(value, errors)

Modules: `_lexer` (tokens), `_parser` (recursive descent), `_nodes` (the compiled closures:
operators, casting and error propagation), `_functions` (built-ins), `_like` (LIKE patterns),
`_values` (types, casts, zero values), `errors`. Operator docs: docs/filters.md.
"""

from digibridge.events.cesql._values import ValueType
from digibridge.events.cesql.errors import CesqlError, CesqlParseError, ErrorKind, EvaluationError
from digibridge.events.cesql.expression import (
    CompiledExpression,
    EvaluationResult,
    compile_expression,
)

__all__ = [
    "CesqlError",
    "CesqlParseError",
    "CompiledExpression",
    "ErrorKind",
    "EvaluationError",
    "EvaluationResult",
    "ValueType",
    "compile_expression",
]

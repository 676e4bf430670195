"""Recursive-descent parser: CESQL tokens to a tree of `Node`s.

Precedence, loosest first (left-associative within a level, except the logic operators):

    AND OR XOR (one level, right-associative)  <  = != <> < <= > >=, [NOT] LIKE, [NOT] IN
        <  + -  <  * / %  <  unary NOT and -  <  literals, attributes, EXISTS, calls, ( ... )

as in the reference grammar of CESQL v1 (`CESQLParser.g4` of the CloudEvents SDKs): mixing
`AND` and `OR` without parentheses does not follow the usual SQL precedence.

Unary NOT binds tightest, as in CESQL's reference grammar: `NOT a = b` is `(NOT a) = b`; write
`NOT (a = b)`. Nesting (parentheses, unary operators, function calls, IN lists) is limited to
`MAX_NESTING` levels, so hostile input gets a parse error and never a RecursionError.
"""

from __future__ import annotations

from collections.abc import Callable

from digibridge.events.cesql import _functions, _nodes
from digibridge.events.cesql._lexer import Token, TokenKind, tokenize
from digibridge.events.cesql._like import LikePattern
from digibridge.events.cesql._nodes import Node, Step
from digibridge.events.cesql._values import INT_MAX, INT_MIN, ValueType
from digibridge.events.cesql.errors import CesqlParseError, EvaluationError

MAX_NESTING = 48

_KEYWORDS = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"})
_COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
BOOLEAN = ValueType.BOOLEAN

Operand = Callable[[], Node]
MakeStep = Callable[[Node, int], Step]


class Parser:
    """Parses one expression; `missing_functions` lists calls that can never be dispatched."""

    def __init__(self, text: str) -> None:
        self._tokens = tokenize(text)
        self._index = 0
        self._nesting = 0
        self.missing_functions: list[EvaluationError] = []

    def parse(self) -> Node:
        if self._peek().kind is TokenKind.END:
            raise CesqlParseError("the expression is empty", position=self._peek().position)
        node = self._logic()
        token = self._peek()
        if token.kind is not TokenKind.END:
            raise CesqlParseError(f"unexpected {token.describe()}", position=token.position)
        return node

    # -- tokens -----------------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _next(self) -> Token:
        token = self._peek()
        self._index += 1
        return token

    def _keyword(self, *words: str, ahead: int = 0) -> str | None:
        token = self._peek(ahead)
        if token.kind is TokenKind.WORD and token.text.upper() in words:
            return token.text.upper()
        return None

    def _symbol(self, *symbols: str) -> str | None:
        token = self._peek()
        return token.text if token.kind is TokenKind.SYMBOL and token.text in symbols else None

    def _expect(self, symbol: str, context: str) -> Token:
        token = self._next()
        if token.kind is not TokenKind.SYMBOL or token.text != symbol:
            raise CesqlParseError(
                f"expected {symbol!r} {context}, found {token.describe()}", position=token.position
            )
        return token

    def _enter(self, position: int) -> None:
        self._nesting += 1
        if self._nesting > MAX_NESTING:
            raise CesqlParseError(
                f"the expression nests deeper than {MAX_NESTING} levels", position=position
            )

    # -- levels -----------------------------------------------------------------------------

    _LOGIC: dict[str, MakeStep] = {
        "AND": _nodes.and_step,
        "OR": _nodes.or_step,
        "XOR": _nodes.xor_step,
    }

    def _logic(self, first: Node | None = None) -> Node:
        """`AND`, `OR` and `XOR`: one level, right-associative, as in CESQL's reference grammar
        (`a AND b OR c` is `a AND (b OR c)`). A run of one operator is a flat chain (they are
        associative, short-circuits included); where the operator changes, the rest of the
        expression is the right operand."""
        first = self._comparison() if first is None else first
        word = self._keyword(*self._LOGIC)
        steps: list[tuple[Step, ValueType]] = []
        while word is not None:
            position = self._next().position
            operand = self._comparison()
            following = self._keyword(*self._LOGIC)
            if following is not None and following != word:
                self._enter(position)
                operand = self._logic(operand)
                self._nesting -= 1
                following = None
            steps.append((self._LOGIC[word](operand, position), BOOLEAN))
            word = following
        return _nodes.chain(first, steps)

    def _comparison(self) -> Node:
        first = self._additive()
        steps: list[tuple[Step, ValueType]] = []
        while True:
            symbol = self._symbol(*_COMPARISONS)
            if symbol is not None:
                position = self._next().position
                right = self._additive()
                step = (
                    _nodes.equality_step(symbol != "=", right, position)
                    if symbol in ("=", "!=", "<>")
                    else _nodes.ordering_step(symbol, right, position)
                )
                steps.append((step, BOOLEAN))
                continue
            negated = (
                self._keyword("NOT") is not None
                and self._keyword("LIKE", "IN", ahead=1) is not None
            )
            operator = self._keyword("LIKE", "IN", ahead=1 if negated else 0)
            if operator is None:
                return _nodes.chain(first, steps)
            if negated:
                self._next()
            position = self._next().position
            if operator == "LIKE":
                steps.append((self._like(negated, position), BOOLEAN))
            else:
                steps.append((self._in(negated, position), BOOLEAN))

    def _like(self, negated: bool, position: int) -> Step:
        token = self._next()
        if token.kind is not TokenKind.STRING:
            raise CesqlParseError(
                f"LIKE takes a string literal pattern, found {token.describe()}",
                position=token.position,
            )
        return _nodes.like_step(LikePattern(token.value), negated, position)

    def _in(self, negated: bool, position: int) -> Step:
        opening = self._expect("(", "to open the IN set")
        self._enter(opening.position)
        items = [self._logic()]
        while self._symbol(","):
            self._next()
            items.append(self._logic())
        self._expect(")", f"to close the IN set opened at column {opening.position + 1}")
        self._nesting -= 1
        return _nodes.in_step(tuple(items), negated, position)

    def _additive(self) -> Node:
        return self._arithmetic(("+", "-"), self._multiplicative)

    def _multiplicative(self) -> Node:
        return self._arithmetic(("*", "/", "%"), self._unary)

    def _arithmetic(self, symbols: tuple[str, ...], operand: Operand) -> Node:
        first = operand()
        steps: list[tuple[Step, ValueType]] = []
        while (symbol := self._symbol(*symbols)) is not None:
            position = self._next().position
            right = operand()
            steps.append((_nodes.arithmetic_step(symbol, right, position), ValueType.INTEGER))
        return _nodes.chain(first, steps)

    def _unary(self) -> Node:
        token = self._peek()
        sign = self._symbol("-", "+")
        if sign is not None and self._peek(1).kind is TokenKind.INTEGER:
            self._next()
            digits = self._next()
            return _nodes.literal(_integer(sign + digits.text, token.position), token.position)
        if sign == "-" or self._keyword("NOT"):
            self._next()
            self._enter(token.position)
            operand = self._unary()
            self._nesting -= 1
            if sign == "-":
                return _nodes.negate(operand, token.position)
            return _nodes.logical_not(operand, token.position)
        return self._primary()

    def _primary(self) -> Node:
        token = self._next()
        if token.kind is TokenKind.INTEGER:
            return _nodes.literal(_integer(token.text, token.position), token.position)
        if token.kind is TokenKind.STRING:
            return _nodes.literal(token.value, token.position)
        if token.kind is TokenKind.SYMBOL and token.text == "(":
            self._enter(token.position)
            node = self._logic()
            self._expect(")", f"to close the '(' at column {token.position + 1}")
            self._nesting -= 1
            return node
        if token.kind is not TokenKind.WORD:
            raise CesqlParseError(f"unexpected {token.describe()}", position=token.position)
        return self._word(token)

    def _word(self, token: Token) -> Node:
        """A boolean literal, EXISTS, a function call or an attribute name."""
        word = token.text.upper()
        if word in ("TRUE", "FALSE"):
            return _nodes.literal(word == "TRUE", token.position)
        if word == "EXISTS":
            name = self._next()
            return _nodes.exists(_attribute_name(name, "EXISTS"), token.position)
        if self._symbol("(") and word not in _KEYWORDS:
            return self._call(token)
        if word in _KEYWORDS:
            raise CesqlParseError(f"unexpected keyword {token.text!r}", position=token.position)
        return _nodes.attribute(_attribute_name(token, None), token.position)

    def _call(self, name: Token) -> Node:
        opening = self._next()
        self._enter(opening.position)
        arguments: list[Node] = []
        if not self._symbol(")"):
            arguments.append(self._logic())
            while self._symbol(","):
                self._next()
                arguments.append(self._logic())
        self._expect(")", f"to close the call of {name.text} at column {name.position + 1}")
        self._nesting -= 1
        if not all(char.isalpha() or char == "_" for char in name.text) or name.text[0] == "_":
            raise CesqlParseError(
                f"{name.text!r} is not a function name (letters and _)", position=name.position
            )
        function = _functions.resolve(name.text, len(arguments))
        if function is None:
            node, error = _functions.missing(name.text, len(arguments), name.position)
            self.missing_functions.append(error)
            return node
        return _functions.call(function, arguments, name.position)


def _integer(text: str, position: int) -> int:
    number = int(text)
    if not INT_MIN <= number <= INT_MAX:
        raise CesqlParseError(
            f"integer literal {text} is outside the 32-bit range", position=position
        )
    return number


def _attribute_name(token: Token, after: str | None) -> str:
    """Attribute names are CloudEvents names (a-z, 0-9); letter case is ignored."""
    name = token.text.lower()
    if token.kind is not TokenKind.WORD or not name.isalnum() or token.text.upper() in _KEYWORDS:
        where = f" after {after}" if after else ""
        raise CesqlParseError(
            f"expected an attribute name{where}, found {token.describe()}", position=token.position
        )
    return name

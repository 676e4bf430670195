"""Splits CESQL text into tokens: words, integers, strings and operator symbols."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from digibridge.events.cesql.errors import CesqlParseError


class TokenKind(Enum):
    WORD = "word"  # keyword, attribute or function name: [A-Za-z0-9_]+ with a letter or _
    INTEGER = "integer"  # unsigned digits; signs are unary operators folded by the parser
    STRING = "string"
    SYMBOL = "symbol"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    position: int
    #: The unescaped content of a string literal; the text itself for every other token.
    value: str

    def describe(self) -> str:
        return "end of expression" if self.kind is TokenKind.END else repr(self.text)


_SYMBOLS = ("!=", "<>", "<=", ">=", "(", ")", ",", "=", "<", ">", "+", "-", "*", "/", "%")
# Tab, carriage return and line feed separate tokens like a space (CESQL's lexer grammar).
_SPACE = frozenset(" \t\r\n")


def _is_word_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char in _SPACE:
            index += 1
        elif char in "'\"":
            index = _string(text, index, tokens)
        elif _is_word_char(char):
            start = index
            while index < length and _is_word_char(text[index]):
                index += 1
            word = text[start:index]
            kind = TokenKind.INTEGER if word.isdigit() else TokenKind.WORD
            tokens.append(Token(kind, word, start, word))
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, index)), None)
            if symbol is None:
                raise CesqlParseError(f"unexpected character {char!r}", position=index)
            tokens.append(Token(TokenKind.SYMBOL, symbol, index, symbol))
            index += len(symbol)
    tokens.append(Token(TokenKind.END, "", length, ""))
    return tokens


def _string(text: str, start: int, tokens: list[Token]) -> int:
    """A `'…'` or `"…"` literal. As in CESQL's lexer grammar a backslash pairs with the next
    character: `\\'` is the delimiter itself, any other pair is kept as written (so `'a\\%'`
    reaches LIKE intact); a doubled delimiter (`''`) is the delimiter too."""
    quote = text[start]
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            escaped = text[index + 1]
            chars.append(escaped if escaped == quote else char + escaped)
            index += 2
        elif char == quote and text.startswith(quote, index + 1):
            chars.append(quote)
            index += 2
        elif char == quote:
            tokens.append(Token(TokenKind.STRING, text[start : index + 1], start, "".join(chars)))
            return index + 1
        else:
            chars.append(char)
            index += 1
    raise CesqlParseError(f"string literal opened with {quote} is never closed", position=start)

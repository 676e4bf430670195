"""The CESQL engine beyond the TCK: hostile text, Unicode, typed attributes, precedence,
integer edges, and the errors' kinds and positions."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digibridge.events.cesql import (
    CesqlParseError,
    CompiledExpression,
    ErrorKind,
    ValueType,
    compile_expression,
)

EVENT = {"specversion": "1.0", "id": "e-1", "source": "urn:test", "type": "nl.test"}


def evaluate(text: str, **attributes: object) -> tuple[object, list[str]]:
    result = compile_expression(text).evaluate({**EVENT, **attributes})
    return result.value, [error.kind.value for error in result.errors]


def parse_error(text: str) -> CesqlParseError:
    with pytest.raises(CesqlParseError) as caught:
        compile_expression(text)
    return caught.value


# -- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000 + "TRUE" + ")" * 5000,
        "NOT " * 5000 + "TRUE",
        "-" * 5000 + "1",
        "LOWER(" * 3000 + "'x'" + ")" * 3000,
        "1 IN (" * 3000 + "1" + ")" * 3000,
        " OR ".join(["x AND x"] * 3000),
    ],
    ids=["parentheses", "not", "minus", "calls", "in", "alternating-logic"],
)
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(text: str) -> None:
    error = parse_error(text)
    assert "nests deeper than" in error.message
    assert error.position < 400


def test_nesting_up_to_the_limit_still_works() -> None:
    assert evaluate("(" * 40 + "1 + 1" + ")" * 40 + " = 2") == (True, [])


def test_a_very_long_flat_expression_compiles_and_evaluates() -> None:
    """Runs of one operator are evaluated in a loop, not nested calls."""
    text = " OR ".join(f"id = 'e-{n}'" for n in range(2, 5_000)) + " OR id = 'e-1'"
    assert len(text) > 50_000
    assert compile_expression(text).evaluate(EVENT).value is True
    assert evaluate(" + ".join(["1"] * 5_000)) == (5_000, [])


def test_like_patterns_cannot_backtrack_exponentially() -> None:
    started = time.perf_counter()
    value = evaluate("subject LIKE '" + "%a" * 40 + "%b'", subject="a" * 20_000)
    assert value == (False, [])
    assert time.perf_counter() - started < 2.0


_TOKENS = (
    *"()+-*/%,=<>",
    *("!=", "<>", "<=", ">=", "AND", "or", "XoR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "false"),
    *("id", "subject", "sequence", "missing", "0", "7", "2147483647", "-2147483648"),
    *("'a%_'", '"x\\"', "'\u00e9'", "LENGTH", "SUBSTRING", "ABS", "INT", "BOOL", "CONCAT_WS"),
)


def _compiled_or_error(text: str) -> CompiledExpression | CesqlParseError:
    try:
        return compile_expression(text)
    except CesqlParseError as error:
        return error


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.text(max_size=60), st.lists(st.sampled_from(_TOKENS), max_size=25).map(" ".join))
)
def test_any_text_compiles_or_is_a_parse_error_and_evaluation_never_raises(text: str) -> None:
    compiled = _compiled_or_error(text)
    if isinstance(compiled, CesqlParseError):
        assert 0 <= compiled.position <= len(text)
        return
    result = compiled.evaluate({**EVENT, "subject": "s", "sequence": "00000007"})
    assert type(result.value) in (bool, int, str)
    assert all(error.kind is not ErrorKind.PARSE for error in result.errors)


@pytest.mark.parametrize(
    ("text", "column", "mention"),
    [
        ("", 1, "empty"),
        ("   ", 4, "empty"),
        ("type = ", 8, "end of expression"),
        ("type = 'x", 8, "never closed"),
        ("type # 'x'", 6, "'#'"),
        ("subject LIKE 123", 14, "string literal pattern"),
        ("2147483648 = 1", 1, "32-bit"),
        ("-2147483649 = 1", 1, "32-bit"),
        ("(TRUE", 6, "to close the '(' at column 1"),
        ("LOWER('a'", 10, "to close the call of LOWER"),
        ("TRUE TRUE", 6, "unexpected 'TRUE'"),
        ("my_attr = 'x'", 1, "attribute name"),
        ("EXISTS 'id'", 8, "attribute name after EXISTS"),
        ("EXISTS AND", 8, "attribute name after EXISTS"),
        ("caf\u00e9 = 'x'", 4, "'\u00e9'"),
        ("1 IN 2", 6, "to open the IN set"),
        ("+ 'a'", 1, "unexpected '+'"),
    ],
)
def test_parse_errors_say_what_and_where(text: str, column: int, mention: str) -> None:
    error = parse_error(text)
    assert error.column == column, error
    assert mention in error.message
    assert error.kind is ErrorKind.PARSE
    assert f"(column {column})" in str(error)


# -- Unicode ------------------------------------------------------------------------------------


def test_unicode_strings_count_characters_not_bytes() -> None:
    assert evaluate("LENGTH('\u00e9\u20ac\U0001f600')") == (3, [])
    assert evaluate("UPPER('\u00e9cole') = '\u00c9COLE'") == (True, [])
    assert evaluate("subject LIKE 'stra_e'", subject="stra\u00dfe") == (True, [])
    assert evaluate("subject LIKE '_'", subject="\U0001f600") == (True, [])
    assert evaluate("subject = 'Z\u00fcrich'", subject="Z\u00fcrich") == (True, [])


def test_string_escapes_and_like_escapes() -> None:
    assert evaluate("'it''s' = \"it's\"") == (True, [])
    assert evaluate("subject LIKE 'C:\\\\%'", subject="C:\\dir") == (True, [])
    assert evaluate("subject LIKE '100\\%'", subject="100%") == (True, [])
    assert evaluate("subject LIKE '100\\%'", subject="1000") == (False, [])
    assert evaluate("'a\nb' LIKE 'a_b'") == (True, [])


# -- attributes as digibridge stores them --------------------------------------------------------


def test_attribute_types_follow_the_json_format() -> None:
    assert evaluate("sequence = 5", sequence="5") == (True, [])
    assert evaluate("sequence = 5", sequence=5) == (True, [])
    assert evaluate("sequence > 4 AND sequence < 6", sequence="00000005") == (True, [])
    assert evaluate("flag", flag=True) == (True, [])
    assert evaluate("flag = 'true'", flag=True) == (True, [])
    assert evaluate("big = '4294967296'", big=4294967296) == (True, [])
    assert evaluate("IS_INT(sequence)", sequence="x1") == (False, [])


def test_attribute_names_ignore_letter_case_and_none_is_absent() -> None:
    assert evaluate("SOURCE = 'urn:test' AND Type = 'nl.test'") == (True, [])
    assert evaluate("EXISTS subject", subject=None) == (False, [])
    assert evaluate("subject = 'x'", subject=None) == (False, ["missingAttribute"])


# -- semantics the TCK leaves open ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # AND, OR and XOR are one right-associative level, as in the reference grammar
        # (CESQLParser.g4): `a AND b OR c` is `a AND (b OR c)`, not SQL's `(a AND b) OR c`.
        ("TRUE OR TRUE AND FALSE", True),
        ("FALSE AND TRUE OR TRUE", False),
        ("TRUE XOR TRUE OR TRUE", False),
        ("TRUE AND TRUE XOR TRUE AND TRUE", False),
        ("(FALSE AND TRUE) OR TRUE", True),
        ("NOT FALSE AND FALSE", False),
        ("NOT (1 = 2)", True),
        ("1 + 2 * 3", 7),
        ("10 - 2 - 3", 5),
        ("-7 / 2", -3),
        ("7 % -3", 1),
        ("-7 % 3", -1),
        ("1 < 2 = TRUE", True),
        ("1 + 1 IN (2, 3)", True),
        ("'ab' NOT IN ('a', 'b')", True),
        ("CONCAT('a', 1, TRUE)", "a1true"),
        ("concat_ws('-', 'a', 'b')", "a-b"),
        ("TRIM('\t\n x \r ')", "x"),
        ("INT('+5')", 5),
        ("IS_BOOL('False')", True),
        ("IS_INT('-2147483648')", True),
        ("IS_INT('2147483648')", False),
        ("STRING(-0)", "0"),
        ("SUBSTRING('', 0)", ""),
        ("RIGHT('abc', 0)", ""),
        ("-2147483648 = INT('-2147483648')", True),
    ],
)
def test_values(text: str, value: object) -> None:
    assert evaluate(text) == (value, [])


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("2147483647 + 1", 2147483647, "math"),
        ("-2147483648 - 1", -2147483648, "math"),
        ("65536 * 65536", 2147483647, "math"),
        ("-2147483648 / -1", 2147483647, "math"),
        ("--2147483648", 2147483647, "math"),
        ("INT(' 1')", 0, "cast"),
        ("INT('1.5')", 0, "cast"),
        ("'abc' < 1", False, "cast"),
        ("1 = TRUE", False, "cast"),
        ("'abc' = 0", False, "cast"),
        ("'x' + 1", 0, "cast"),
        ("10 OR TRUE", False, "cast"),
        ("1 IN ('a', 1)", False, "cast"),
        ("SUBSTRING('abc', 2, -1)", "", "functionEvaluation"),
        ("NOPE(1)", False, "missingFunction"),
        ("LENGTH()", False, "missingFunction"),
        ("LENGTH(missing) = 0", False, "missingAttribute"),
    ],
)
def test_errors_come_with_the_zero_or_saturated_value(text: str, value: object, kind: str) -> None:
    assert evaluate(text) == (value, [kind])


def test_errors_carry_the_position_of_the_culprit() -> None:
    result = compile_expression("type = 'nl.test' AND 10 / (1 - 1) = 0").evaluate(EVENT)
    (error,) = result.errors
    assert (error.kind, error.position) == (ErrorKind.MATH, 24)
    assert "division by zero" in str(error)


def test_missing_functions_are_known_at_compile_time() -> None:
    compiled = compile_expression("type = 'x' OR FOO(1, 2)")
    assert [(e.kind, e.position) for e in compiled.missing_functions] == [
        (ErrorKind.MISSING_FUNCTION, 14)
    ]
    assert "FOO taking 2 argument(s)" in compiled.missing_functions[0].message


def test_static_types() -> None:
    assert compile_expression("1 + 1").type is ValueType.INTEGER
    assert compile_expression("LOWER(type)").type is ValueType.STRING
    assert compile_expression("type LIKE 'nl.%'").type is ValueType.BOOLEAN
    assert compile_expression("type").type is ValueType.ANY


def test_one_compiled_expression_serves_many_events_independently() -> None:
    compiled = compile_expression("subject = 'a'")
    missing = compiled.evaluate(EVENT)
    hit = compiled.evaluate({**EVENT, "subject": "a"})
    assert (missing.value, [e.kind for e in missing.errors]) == (
        False,
        [ErrorKind.MISSING_ATTRIBUTE],
    )
    assert (hit.value, hit.errors, hit.matched) == (True, (), True)
    assert not missing.matched
    assert compiled.matches({**EVENT, "subject": "a"})

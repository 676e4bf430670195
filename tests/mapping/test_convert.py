"""Conversions from XPath results to JSON values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from digibridge.mapping._convert import CONVERTERS, ConversionError, parse_datetime, scalar


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("string", "  Proefstraat \n", "Proefstraat"),
        ("string", "   ", None),
        ("string", 3.0, "3"),
        ("string", 2.5, "2.5"),
        ("string", float("nan"), None),
        ("string", True, "true"),
        ("integer", " 0012 ", 12),
        ("integer", 4.0, 4),
        ("integer", "", None),
        ("number", "5.5", 5.5),
        ("number", "10", 10),
        ("boolean", "J", True),
        ("boolean", "n", False),
        ("boolean", "true", True),
        ("boolean", False, False),
        ("lo-date", "20250310", "2025-03-10"),
        ("lo-date", "19700500", "1970-05"),
        ("lo-date", "19700000", "1970"),
        ("lo-date", "00000000", None),
        ("date", "2025-03-01", "2025-03-01"),
        ("date", "2025-03-01+01:00", "2025-03-01"),
        ("datetime", "2025-03-14T10:15:42.118", "2025-03-14T09:15:42.118Z"),
        ("datetime", "2025-07-01T12:00:00", "2025-07-01T10:00:00Z"),
        ("datetime", "2025-03-14T10:15:00+01:00", "2025-03-14T09:15:00Z"),
        ("compact-datetime", "20250506081458250", "2025-05-06T06:14:58.250Z"),
        ("compact-datetime", "2025031410154211", "2025-03-14T09:15:42.110Z"),
        ("compact-datetime", "20250101000000", "2024-12-31T23:00:00Z"),
        ("compact-datetime", "00000000000000000", None),
        ("compact-datetime", " ", None),
    ],
)
def test_conversion(name: str, raw: str | float | bool, expected: object) -> None:
    assert CONVERTERS[name](raw) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("integer", "12a"),
        ("integer", 2.5),
        ("integer", True),
        ("number", "twee"),
        ("boolean", "misschien"),
        ("lo-date", "2025-03-10"),
        ("lo-date", "20251340"),
        ("lo-date", "20251300"),
        ("date", "01-03-2025"),
        ("datetime", "2025-03-14"),
        ("datetime", "gisteren"),
        ("compact-datetime", "2025-05-06T08:14:58"),
        ("compact-datetime", "20251306081458250"),
        ("compact-datetime", "202505060814582501"),
    ],
)
def test_unreadable_values_are_errors(name: str, raw: str | float | bool) -> None:
    with pytest.raises(ConversionError):
        CONVERTERS[name](raw)


def test_scalar_takes_the_string_value_of_the_first_node() -> None:
    root = etree.fromstring(b"<a x='1'><b>een <i>twee</i></b><b>drie</b><!--c--></a>")
    assert scalar(root.xpath("b")) == "een twee"
    assert scalar(root.xpath("@x", smart_strings=False)) == "1"
    assert scalar(root.xpath("comment()")) == "c"
    assert scalar(root.xpath("nothing")) is None
    assert scalar(root.xpath("count(b)")) == 2.0


def test_parse_datetime_keeps_an_offset() -> None:
    assert parse_datetime("2025-03-14T09:30:05Z") == datetime(2025, 3, 14, 9, 30, 5, tzinfo=UTC)

"""Typed conversions of XPath results into JSON values (`convert:` in a mapping file).

An XPath result is first reduced to one scalar the way XPath's own `string()` would (a node-set
becomes the string-value of its first node, or nothing when empty); a conversion then turns that
into a JSON value, or None when there is no value (an empty string, an unknown LO GBA date).
Each conversion also states the JSON Schema of what it produces, so the event catalogue is
derived from the same table that does the work and cannot drift from it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from digibridge.events.types import format_time

#: Timestamps without an offset are Dutch local time (the registries' own clock).
AMSTERDAM = ZoneInfo("Europe/Amsterdam")

Scalar = str | float | bool
JsonScalar = str | int | float | bool


class ConversionError(ValueError):
    """A value that the requested conversion cannot read."""


@dataclass(frozen=True)
class Converter:
    """One named conversion: what it does and the JSON Schema of its results."""

    name: str
    function: Callable[[Scalar], JsonScalar | None]
    schema: Mapping[str, Any]

    def __call__(self, value: Scalar) -> JsonScalar | None:
        return self.function(value)


def scalar(result: object) -> Scalar | None:
    """Reduce an lxml XPath result to one scalar, as XPath `string()` would pick it."""
    if isinstance(result, bool | float | str):
        return result
    if isinstance(result, list):
        return _first_string(result[0]) if result else None
    raise ConversionError(f"unsupported XPath result {type(result).__name__}")


def _first_string(first: object) -> str:
    if isinstance(first, str):  # attribute values and text() results
        return first
    if isinstance(first, etree._Element):
        # A leaf (the common case) or a comment/processing instruction: its text is its value.
        if len(first) == 0 or not isinstance(first.tag, str):
            return first.text or ""
        return "".join(text for text in first.itertext() if isinstance(text, str))
    if isinstance(first, tuple):  # namespace axis: (prefix, uri)
        return str(first[1])
    raise ConversionError(f"unsupported XPath result {type(first).__name__}")


# Compiled once: a conversion runs for most values of every message.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LO_DATE = re.compile(r"[0-9]{8}")
_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(Z|[+-][0-9]{2}:[0-9]{2})?")


def _string(value: Scalar) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return value.strip() or None


def _integer(value: Scalar) -> int | None:
    if isinstance(value, bool):
        raise ConversionError(f"{value!r} is a boolean, not an integer")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not value.is_integer():
            raise ConversionError(f"{value!r} is not a whole number")
        return int(value)
    text = value.strip()
    if not text:
        return None
    if not _INTEGER.fullmatch(text):
        raise ConversionError(f"{text!r} is not an integer")
    return int(text)


def _number(value: Scalar) -> float | int | None:
    if isinstance(value, bool):
        raise ConversionError(f"{value!r} is a boolean, not a number")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ConversionError(f"{text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        return None
    return int(value) if value.is_integer() else value


_TRUE = frozenset({"true", "1", "j", "ja", "y", "yes"})
_FALSE = frozenset({"false", "0", "n", "nee", "no"})


def _boolean(value: Scalar) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value != 0
    text = value.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConversionError(f"{value.strip()!r} is not a boolean (true/false, 1/0, J/N)")


def _lo_date(value: Scalar) -> str | None:
    """YYYYMMDD where 00 means unknown (LO GBA): the known part as an ISO date, or nothing."""
    text = _string(value)
    if text is None:
        return None
    if not _LO_DATE.fullmatch(text):
        raise ConversionError(f"{text!r} is not a date YYYYMMDD")
    year, month, day = text[:4], text[4:6], text[6:]
    if year == "0000":
        return None
    if month == "00":
        return year
    if day == "00":
        if not 1 <= int(month) <= 12:
            raise ConversionError(f"{text!r} has no valid month")
        return f"{year}-{month}"
    iso = f"{year}-{month}-{day}"
    try:
        date.fromisoformat(iso)  # only checks it: the digits are already the ISO form
    except ValueError:
        raise ConversionError(f"{text!r} is not a valid date") from None
    return iso


def _date(value: Scalar) -> str | None:
    """xs:date (an optional timezone is dropped: a calendar date has none in JSON)."""
    text = _string(value)
    if text is None:
        return None
    match = _DATE.fullmatch(text)
    if match is None:
        raise ConversionError(f"{text!r} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(match.group(1)).isoformat()
    except ValueError:
        raise ConversionError(f"{text!r} is not a valid date") from None


def parse_datetime(text: str) -> datetime:
    """xs:dateTime as an aware datetime; a value without offset is Amsterdam local time."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConversionError(f"{raw!r} is not a date-time (xs:dateTime)") from None
    if "T" not in raw:
        raise ConversionError(f"{raw!r} is a date, not a date-time")
    return value.replace(tzinfo=AMSTERDAM) if value.tzinfo is None else value


def _datetime(value: Scalar) -> str | None:
    text = _string(value)
    return None if text is None else format_time(parse_datetime(text))


_COMPACT_DATETIME = re.compile(
    r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{0,3})"
)


def _compact_datetime(value: Scalar) -> str | None:
    """`yyyyMMddHHmmss` + up to 3 digits of fraction (LO GBA tijdstempel `…SSS`, BAG `…SS`),
    Dutch local time, as RFC 3339 UTC; all zeros (unknown) is no value."""
    text = _string(value)
    if text is None:
        return None
    match = _COMPACT_DATETIME.fullmatch(text)
    if match is None:
        raise ConversionError(f"{text!r} is not a timestamp yyyyMMddHHmmss[SSS]")
    if not text.strip("0"):
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = match.group(7)
    micro = int(fraction.ljust(3, "0")) * 1000 if fraction else 0
    try:
        moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=AMSTERDAM)
    except ValueError:
        raise ConversionError(f"{text!r} is not a valid timestamp") from None
    return format_time(moment)


def _define(*converters: Converter) -> Mapping[str, Converter]:
    return MappingProxyType({converter.name: converter for converter in converters})


CONVERTERS: Mapping[str, Converter] = _define(
    Converter("string", _string, {"type": "string"}),
    Converter("integer", _integer, {"type": "integer"}),
    Converter("number", _number, {"type": "number"}),
    Converter("boolean", _boolean, {"type": "boolean"}),
    Converter(
        "lo-date",
        _lo_date,
        {"type": "string", "pattern": r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$"},
    ),
    Converter("date", _date, {"type": "string", "format": "date"}),
    Converter("datetime", _datetime, {"type": "string", "format": "date-time"}),
    Converter("compact-datetime", _compact_datetime, {"type": "string", "format": "date-time"}),
)
DEFAULT_CONVERTER = CONVERTERS["string"]

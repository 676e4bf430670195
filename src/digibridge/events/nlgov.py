"""The NL GOV profile for CloudEvents, as checks on attribute values.

Each check returns a list of problems (empty when the value is fine) rather than raising, so a
caller can report every problem of one event or one mapping rule in one pass and attach its own
context (a mapping file position, an event id). The mapping loader runs the checks on literal
values at load time; the engine runs them on values computed from a message; tests run
`event_problems` on whole events.

What is checked (STANDARDS.md §4):

- `type`: reverse-DNS, lower-case segments of a-z, 0-9 and inner hyphens, at least two segments,
  the first one letters only (a TLD such as `nl`), at most one version segment `v<N>`.
- `source`: a URN in the `nld` namespace (`urn:nld:<nid>:<rest>`); `urn:nld:oin:` must be
  followed by a 20-digit OIN.
- attribute names: a-z and 0-9 only, at most 20 characters; extensions must not reuse the
  name of a core attribute.
- `subject`: not a BSN or an A-nummer (the profile's privacy section: no sensitive data in
  attributes). Both are recognised by their check digits, so other 9- or 10-digit keys pass.
- other string attributes (`dataref` URLs, extensions): no 9- or 10-digit run in them is a BSN
  or an A-nummer.
"""

from __future__ import annotations

import itertools
import re

from digibridge.events.types import JSON_CONTENT_TYPE, SPECVERSION, CloudEvent

#: Context attributes defined by CloudEvents 1.0.2 itself (plus the JSON format's data members).
CORE_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        "data",
        "data_base64",
    }
)

_TYPE_SEGMENT = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TLD_SEGMENT = re.compile(r"[a-z]+")
_VERSION_SEGMENT = re.compile(r"v[0-9]+")
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
_MAX_ATTRIBUTE_NAME = 20
_NLD_URN = re.compile(r"urn:nld:([a-z0-9][a-z0-9-]{0,31}):(\S+)")
_OIN = re.compile(r"[0-9]{20}")
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{9,10}(?![0-9])")
_BSN_LENGTH = 9
_A_NUMMER_LENGTH = 10


def type_problems(value: str) -> list[str]:
    """Problems of `value` as an NL GOV event `type`."""
    segments = value.split(".")
    if len(segments) < 2:
        return [f"type {value!r} must be reverse-DNS with at least two segments (nl.brp.…)"]
    problems = []
    bad = [segment for segment in segments if not _TYPE_SEGMENT.fullmatch(segment)]
    if bad:
        problems.append(
            f"type {value!r}: segment(s) {', '.join(map(repr, bad))} must be lower-case "
            "a-z, 0-9 and inner hyphens"
        )
    elif not _TLD_SEGMENT.fullmatch(segments[0]):
        problems.append(f"type {value!r} must start with a top-level domain such as 'nl'")
    versions = [segment for segment in segments if _VERSION_SEGMENT.fullmatch(segment)]
    if len(versions) > 1:
        problems.append(
            f"type {value!r} has {len(versions)} version segments ({', '.join(versions)}); "
            "at most one is allowed"
        )
    return problems


def type_version(value: str) -> tuple[str, int]:
    """The family of a type (the type without its `v<N>` segment) and N (1 without one)."""
    segments = value.split(".")
    versions = [segment for segment in segments if _VERSION_SEGMENT.fullmatch(segment)]
    if not versions:
        return value, 1
    family = ".".join(segment for segment in segments if segment != versions[0])
    return family, int(versions[0][1:])


def source_problems(value: str) -> list[str]:
    """Problems of `value` as an NL GOV `source` (a `urn:nld:` URN naming the publisher)."""
    match = _NLD_URN.fullmatch(value)
    if match is None:
        return [
            f"source {value!r} must be a URN in the nld namespace, "
            "e.g. urn:nld:oin:00000001001172773000:systeem:BRP"
        ]
    if match.group(1) == "oin":
        oin = match.group(2).split(":", 1)[0]
        if not _OIN.fullmatch(oin):
            return [f"source {value!r}: the OIN after urn:nld:oin: must be 20 digits"]
    return []


def attribute_name_problems(name: str, *, extension: bool = True) -> list[str]:
    """Problems of `name` as a context attribute name (an extension unless `extension=False`)."""
    problems = []
    if not _ATTRIBUTE_NAME.fullmatch(name):
        problems.append(f"attribute name {name!r} must consist of a-z and 0-9 only")
    if len(name) > _MAX_ATTRIBUTE_NAME:
        problems.append(f"attribute name {name!r} is longer than {_MAX_ATTRIBUTE_NAME} characters")
    if extension and name in CORE_ATTRIBUTES:
        problems.append(f"attribute name {name!r} is a core attribute, not an extension")
    return problems


def subject_problems(value: str) -> list[str]:
    """Problems of `value` as a `subject`: it must not be a BSN or an A-nummer."""
    if is_bsn(value):
        return [f"subject {value!r} looks like a BSN; personal numbers must not be attributes"]
    if is_a_nummer(value):
        return [
            f"subject {value!r} looks like an A-nummer; personal numbers must not be attributes"
        ]
    return []


def attribute_value_problems(name: str, value: str) -> list[str]:
    """Problems of a string attribute value: a personal number (BSN, A-nummer) inside it."""
    for run in _DIGIT_RUN.findall(value):
        if is_bsn(run) or is_a_nummer(run):
            return [
                f"{name} {value!r} contains {run}, which looks like a BSN or an A-nummer; "
                "personal numbers must not be attributes"
            ]
    return []


def event_problems(event: CloudEvent) -> list[str]:
    """Every NL GOV profile problem of a whole event, for tests and for `digibridge check`."""
    attributes = event.attributes()
    problems = []
    if attributes.get("specversion") != SPECVERSION:
        problems.append(f"specversion must be {SPECVERSION!r}")
    if not event.id:
        problems.append("id must not be empty")
    problems += type_problems(event.type)
    problems += source_problems(event.source)
    if event.subject is not None:
        problems += subject_problems(event.subject)
    if event.time is None:
        problems.append("time (the registration time) must be set")
    if event.data is not None and event.datacontenttype != JSON_CONTENT_TYPE:
        problems.append(f"datacontenttype must be {JSON_CONTENT_TYPE!r}")
    for name, value in attributes.items():
        problems += attribute_name_problems(name, extension=name not in CORE_ATTRIBUTES)
        if name not in CORE_ATTRIBUTES and isinstance(value, str):
            problems += attribute_value_problems(name, value)
    return problems


def is_bsn(value: str) -> bool:
    """True when `value` is nine digits that pass the BSN 11-test (weights 9..2 and -1)."""
    if len(value) != _BSN_LENGTH or not value.isascii() or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    total = sum(weight * digit for weight, digit in zip(range(9, 1, -1), digits, strict=False))
    total -= digits[8]
    return total % 11 == 0 and value != "000000000"


def is_a_nummer(value: str) -> bool:
    """True when `value` is ten digits that pass the LO GBA A-nummer checks.

    No leading zero, no two equal adjacent digits, digit sum ≡ 0 or 5 (mod 11), and the sum of
    digit * 2^position ≡ 0 (mod 11).
    """
    if len(value) != _A_NUMMER_LENGTH or not value.isascii() or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    if digits[0] == 0 or any(a == b for a, b in itertools.pairwise(digits)):
        return False
    if sum(digits) % 11 not in (0, 5):
        return False
    return sum(digit << position for position, digit in enumerate(digits)) % 11 == 0

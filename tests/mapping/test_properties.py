"""Property: random well-formed DigiLevering messages never crash the engine.

Every sample message, with random values put into (and random elements taken out of) its
payload, either maps to events that are valid (NL GOV profile, data and informatiearm data fit
their schemas) or is refused with a MappingError. Anything else (a KeyError, a TypeError, a
ValueError from a conversion) is a bug.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from digibridge.events.nlgov import event_problems
from digibridge.mapping.engine import MappingSet
from digibridge.mapping.types import MappingError
from digibridge.wus.digilevering import read_levering
from tests.mapping.conftest import sample_paths

#: Text XML 1.0 can carry: no control characters, surrogates or non-characters.
XML_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn", "Co")),
    max_size=24,
)
#: Values that look like what the mappings expect, so conversions are exercised at their edges.
PLAUSIBLE = st.one_of(
    st.from_regex(r"[0-9]{0,18}", fullmatch=True),
    st.sampled_from(
        [
            *("", " ", "00000000", "20250230", "2025-13-01", "2025-03-01", "J", "N", "X"),
            *("true", "NaN", "1e999", "-0", "2025-03-14T10:15:42", "999993653", "1010101025"),
            *("PND", "VBO", "NUM", "Eigendomsoverdracht", "sbiActiviteit", "OPH", "V", "'"),
        ]
    ),
)
ACTIONS = st.sampled_from(["keep", "keep", "keep", "text", "plausible", "remove"])


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A sample message with its payload values shuffled about."""
    sample: Path = draw(st.sampled_from(sample_paths()))
    root = etree.fromstring(sample.read_bytes())
    payload = next(
        element
        for element in root.iter()
        if etree.QName(element).localname in ("gebeurtenisinhoud", "Inhoud")
    )[0]
    for element in list(payload.iter()):
        if element is payload or not isinstance(element.tag, str):
            continue
        action = draw(ACTIONS)
        if action == "remove" and element.getparent() is not None:
            element.getparent().remove(element)
            continue
        if len(element) == 0 and action in ("text", "plausible"):
            element.text = draw(XML_TEXT if action == "text" else PLAUSIBLE)
        for name in element.attrib:
            if draw(ACTIONS) in ("text", "plausible"):
                element.set(name, draw(PLAUSIBLE))
    return etree.tostring(root)


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(document=messages())
def test_random_payload_values_map_or_give_a_mapping_error(
    mappings: MappingSet, document: bytes
) -> None:
    levering = read_levering(document)
    try:
        events = mappings.map(levering)
    except MappingError:
        return
    schemas = {info.type: info for info in mappings.event_types}
    for event in events:
        assert event_problems(event) == []
        assert event.informatiearm is not None
        assert event_problems(event.informatiearm) == []
        info = schemas[event.type]
        jsonschema.Draft202012Validator(info.schema).validate(event.data)
        jsonschema.Draft202012Validator(info.informatiearm_schema).validate(
            event.informatiearm.data
        )

"""Properties of the engine on random well-formed DigiLevering messages.

It never crashes, and its inline readers of child paths give exactly what its general readers
give.

Every sample message, with random values put into (and random elements taken out of) its
payload, either maps to events that are valid (NL GOV profile, data and informatiearm data fit
their schemas) or is refused with a MappingError. Anything else (a KeyError, a TypeError, a
ValueError from a conversion) is a bug.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from digibridge.events.nlgov import event_problems
from digibridge.mapping._xpath import CompiledXPath
from digibridge.mapping.engine import MappingSet
from digibridge.mapping.types import MappingError
from digibridge.wus.digilevering import read_levering
from tests.mapping.conftest import DATASCHEMA_BASE, MAPPINGS, sample_paths

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
ACTIONS = st.sampled_from(
    ["keep", "keep", "keep", "text", "plausible", "remove", "pad", "duplicate"]
)


#: Changes that mostly keep a message mappable: the readers' results are compared, not errors.
GENTLE_ACTIONS = st.sampled_from(["keep"] * 8 + ["pad", "pad", "duplicate", "plausible"])


@st.composite
def messages(
    draw: st.DrawFn, actions: st.SearchStrategy[str] = ACTIONS, attributes: bool = True
) -> bytes:
    """A sample message with its payload values (and `attributes`' values) shuffled about."""
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
        action = draw(actions)
        if action == "remove" and element.getparent() is not None:
            element.getparent().remove(element)
            continue
        if action == "duplicate" and element.getparent() is not None:
            # A repeated element (a second category 08): readers must take the first in
            # document order that has what they look for.
            duplicate = copy.deepcopy(element)
            for leaf in duplicate.iter():
                if isinstance(leaf.tag, str) and len(leaf) == 0 and leaf.text:
                    leaf.text = f"9{leaf.text}"
            element.addnext(duplicate)
        if len(element) == 0 and action in ("text", "plausible"):
            element.text = draw(XML_TEXT if action == "text" else PLAUSIBLE)
        if len(element) == 0 and action == "pad":
            element.text = f" \n\t{element.text or ''} "
        for name in element.attrib if attributes else ():
            if draw(actions) in ("text", "plausible"):
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


@pytest.fixture(scope="module")
def general_readers() -> MappingSet:
    """The bundled mappings compiled without the inline child-path readers (`two_keys`), so
    every value goes through the general reader of its XPath."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CompiledXPath, "two_keys", property(lambda self: None))
        return MappingSet.load(MAPPINGS, dataschema_base=DATASCHEMA_BASE)


def _outcome(mappings: MappingSet, document: bytes) -> object:
    try:
        events = mappings.map(read_levering(document))
    except MappingError as exc:
        return str(exc)
    return [
        (event.to_json_bytes(), event.informatiearm and event.informatiearm.to_json_bytes())
        for event in events
    ]


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(document=messages(GENTLE_ACTIONS, attributes=False))
def test_inline_readers_agree_with_the_general_ones(
    mappings: MappingSet, general_readers: MappingSet, document: bytes
) -> None:
    assert _outcome(mappings, document) == _outcome(general_readers, document)

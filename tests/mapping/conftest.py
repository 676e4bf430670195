"""Helpers for mapping tests: Levering records from message files, and the bundled mappings.

Messages go through the gateway's own parser (`parse_levering`, XSD-validated), so every fixture
message is also a valid DigiLevering message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from digibridge.mapping.engine import MappingSet
from digibridge.mapping.types import Levering
from digibridge.wus.digilevering import parse_levering

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = ROOT / "samples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONFORMANCE = ROOT / "tests" / "conformance"
#: The base URL the golden files were generated with.
DATASCHEMA_BASE = "https://digibridge.example"


def sample_paths() -> list[Path]:
    return sorted(SAMPLES.glob("*.xml"))


def levering_from_file(path: Path) -> Levering:
    """The Levering the gateway would make of a body document (XSD-validated)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return parse_levering(etree.parse(str(path), parser).getroot())


@pytest.fixture(scope="session")
def mappings() -> MappingSet:
    return MappingSet.load(MAPPINGS, dataschema_base=DATASCHEMA_BASE)

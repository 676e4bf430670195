"""Test-only helpers: Levering records straight from sample files, and the bundled mappings.

The real parser (`digibridge.wus.digilevering.parse_levering`) validates against the XSD; these
tests only need the handful of envelope fields, read by local name, so they do not depend on it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree

from digibridge.mapping.engine import MappingSet
from digibridge.mapping.types import Levering

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = ROOT / "samples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONFORMANCE = ROOT / "tests" / "conformance"
#: The base URL the golden files were generated with.
DATASCHEMA_BASE = "https://digibridge.example"


def sample_paths() -> list[Path]:
    return sorted(SAMPLES.glob("*.xml"))


def _children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _find(element: etree._Element, *path: str) -> etree._Element | None:
    for name in path:
        element_or_none = next(
            (c for c in _children(element) if etree.QName(c).localname == name), None
        )
        if element_or_none is None:
            return None
        element = element_or_none
    return element


def _text(element: etree._Element, *path: str) -> str:
    found = _find(element, *path)
    assert found is not None, f"{'/'.join(path)} missing"
    return (found.text or "").strip()


def _optional(element: etree._Element, *path: str) -> str | None:
    found = _find(element, *path)
    return None if found is None else (found.text or "").strip()


def _payload(container: etree._Element | None) -> etree._Element:
    assert container is not None
    (payload,) = _children(container)
    return payload


def levering_from_element(root: etree._Element) -> Levering:
    """A Levering from a v4 or v5 DigiLevering body element."""
    if etree.QName(root).localname == "VerstrekkingAanAfnemer":
        return Levering(
            form="v4",
            kenmerk=_text(root, "kenmerkDigilevering"),
            kenmerk_verstrekker=_text(root, "kenmerkLV"),
            referentie_id=_optional(root, "referentieId"),
            basisregistratie=_text(root, "basisregistratie"),
            gebeurtenissoort=_text(root, "gebeurtenissoort", "naam"),
            gebeurtenissoort_versie=_text(root, "gebeurtenissoort", "versie"),
            versie_berichttype=_text(root, "versieBerichttype"),
            abonnement=_text(root, "abonnement", "naam"),
            abonnement_versie=_text(root, "abonnement", "versie"),
            tijdstempel_verstrekker=datetime.fromisoformat(_text(root, "datumtijdstempelLV")),
            tijdstempel_digilevering=datetime.fromisoformat(
                _text(root, "datumtijdstempelDigilevering")
            ),
            verstrekker_oin=None,
            ontvanger_oin=None,
            payload=_payload(_find(root, "gebeurtenisinhoud")),
        )
    header = ("BerichtHeader",)
    stuur = ("Stuurgegevens",)
    return Levering(
        form="v5",
        kenmerk=_text(root, *header, "KenmerkLogius"),
        kenmerk_verstrekker=_text(root, *header, "KenmerkVerstrekker"),
        referentie_id=_optional(root, *header, "ReferentieId"),
        basisregistratie=_text(root, *stuur, "Basisregistratie"),
        gebeurtenissoort=_text(root, *stuur, "Gebeurtenissoort", "Naam"),
        gebeurtenissoort_versie=_text(root, *stuur, "Gebeurtenissoort", "Versie"),
        versie_berichttype=_text(root, *stuur, "VersieBerichttype"),
        abonnement=_text(root, *stuur, "Abonnement", "Naam"),
        abonnement_versie=_text(root, *stuur, "Abonnement", "Versie"),
        tijdstempel_verstrekker=datetime.fromisoformat(
            _text(root, *header, "DatumtijdstempelVerstrekker")
        ),
        tijdstempel_digilevering=datetime.fromisoformat(
            _text(root, *header, "DatumtijdstempelLogius")
        ),
        verstrekker_oin=_text(root, *header, "VerstrekkerId"),
        ontvanger_oin=_text(root, *header, "OntvangerId"),
        payload=_payload(_find(root, "Inhoud")),
    )


def levering_from_file(path: Path) -> Levering:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    return levering_from_element(etree.parse(str(path), parser).getroot())


@pytest.fixture(scope="session")
def mappings() -> MappingSet:
    return MappingSet.load(MAPPINGS, dataschema_base=DATASCHEMA_BASE)

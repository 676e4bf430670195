"""Serialising a terugmelding as a DMKS `AnnotatieBoom` (wsdl/digimelding.xsd).

The tree is one root `Terugmelding` plus leaf annotations that point at it; a status change is
a tree with only an `Annotatiestatus` pointing at an existing root. Values are trusted here:
`ReverseMapping.check` has refused what the schema would.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from digibridge.mapping.dmks import DMKS_NS

#: The gateway's own name in `GeannoteerdDoor/Persoonsaanduiding` when no person is known.
GATEWAY_PERSON = "digibridge"


@dataclass(frozen=True)
class Annotator:
    """Who annotates, and when: the same for every annotation in one request."""

    oin: str
    persoonsaanduiding: str
    at: datetime
    vestiging: str | None = None


class TreeBuilder:
    """Builds one `AnnotatieBoom`, handing out a fresh uuid for every annotation it adds."""

    def __init__(self, annotator: Annotator, new_uuid: Callable[[], str]) -> None:
        if annotator.at.tzinfo is None:
            raise ValueError("the annotation time must be timezone-aware")
        self._annotator = annotator
        self._new_uuid = new_uuid
        self.root = etree.Element(_q("AnnotatieBoom"), nsmap={"dmk": DMKS_NS})
        self.uuids: list[str] = []

    def annotation(
        self,
        name: str,
        *,
        uuid_value: str | None = None,
        toelichting: str | None = None,
        verwijzing: str | None = None,
    ) -> etree._Element:
        """A new annotation element `name` with the common part filled in."""
        value = _canonical_uuid(uuid_value if uuid_value is not None else self._new_uuid())
        self.uuids.append(value)
        element = etree.SubElement(self.root, _q(name), uuid=value)
        door = etree.SubElement(element, _q("GeannoteerdDoor"))
        text(door, "Oin", self._annotator.oin)
        text(door, "Vestiging", self._annotator.vestiging)
        text(door, "Persoonsaanduiding", self._annotator.persoonsaanduiding)
        text(element, "GeannoteerdOp", self._annotator.at.isoformat(timespec="milliseconds"))
        text(element, "Toelichting", toelichting)
        text(element, "Annotatieverwijzing", verwijzing)
        return element

    def status(self, status: str, verwijzing: str, toelichting: str | None = None) -> None:
        element = self.annotation("Annotatiestatus", verwijzing=verwijzing, toelichting=toelichting)
        text(element, "Status", status)

    def bijlage(
        self,
        verwijzing: str,
        *,
        bestandsnaam: str,
        mime_type: str,
        data: bytes,
        beschrijving: str | None,
    ) -> None:
        element = self.annotation("Bijlageverwijzing", verwijzing=verwijzing)
        text(element, "Bestandsnaam", bestandsnaam)
        text(element, "MIMEType", mime_type)
        text(element, "BijlageData", base64.b64encode(data).decode("ascii"))
        text(element, "Beschrijving", beschrijving)

    def serialise(self) -> bytes:
        return etree.tostring(self.root, encoding="UTF-8")


def child(parent: etree._Element, name: str) -> etree._Element:
    """A new empty DMKS child element `name` of `parent`."""
    return etree.SubElement(parent, _q(name))


def text(parent: etree._Element, name: str, value: str | None) -> etree._Element | None:
    """A DMKS child `name` holding `value`; nothing at all for None (optional elements)."""
    if value is None:
        return None
    element = child(parent, name)
    element.text = value
    return element


def _q(name: str) -> str:
    return f"{{{DMKS_NS}}}{name}"


def _canonical_uuid(value: str) -> str:
    """The schema's form: lower-case, hyphenated. ValueError for anything that is no uuid."""
    return str(uuid.UUID(value))

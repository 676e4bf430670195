"""The shapes the mapping stage works on: a DigiLevering message in, CloudEvents out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lxml import etree

from digibridge.errors import DigibridgeError


@dataclass(frozen=True)
class Levering:
    """One DigiLevering message (v4 `VerstrekkingAanAfnemer` or v5 `LeveringVanDGL`), parsed.

    Both forms are read into the same record so that mappings never care which form arrived.
    """

    form: Literal["v4", "v5"]
    #: Persistent id of the message: `kenmerkDigilevering` (v4) or `KenmerkLogius` (v5).
    kenmerk: str
    #: The registry's own id: `kenmerkLV` (v4) or `KenmerkVerstrekker` (v5).
    kenmerk_verstrekker: str
    referentie_id: str | None
    basisregistratie: str
    gebeurtenissoort: str
    gebeurtenissoort_versie: str
    versie_berichttype: str
    abonnement: str
    abonnement_versie: str
    #: When the registry registered the change
    #: (`datumtijdstempelLV` / `DatumtijdstempelVerstrekker`).
    tijdstempel_verstrekker: datetime
    #: When DigiLevering processed it (`datumtijdstempelDigilevering` / `DatumtijdstempelLogius`).
    tijdstempel_digilevering: datetime
    #: OIN of the registry (v5 `VerstrekkerId`); v4 does not carry it.
    verstrekker_oin: str | None
    #: OIN of the receiving organisation (v5 `OntvangerId`).
    ontvanger_oin: str | None
    #: The registry's own XML: the single element inside `gebeurtenisinhoud` / `Inhoud`.
    payload: etree._Element


class MappingError(DigibridgeError):
    """A mapping file is wrong, or a message cannot be turned into events.

    `location` is `file:line:column` for file errors and None for message errors.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.message = message
        self.location = location


class NoMatchingMapping(MappingError):
    """No rule in the loaded mapping set applies to the message."""

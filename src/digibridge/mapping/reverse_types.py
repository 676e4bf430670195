"""A terugmelding as digibridge holds it, between the JSON API and the DigiMelding request.

The API validates JSON into these; a per-registry reverse mapping (`mappings/terugmeldingen/`)
turns one into a DMKS `AnnotatieToevoegen` request. Field names follow the DMKS element names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Attribuut:
    """One doubted attribute: its registry-neutral name (mapped to a URI per registry)."""

    naam: str
    betwijfelde_waarde: str | None = None
    voorgestelde_waarde: str | None = None


@dataclass(frozen=True)
class Bijlage:
    bestandsnaam: str
    mime_type: str
    data: bytes
    beschrijving: str | None = None


@dataclass(frozen=True)
class Contact:
    naam: str
    email: str
    telefoon: str | None = None
    afdeling: str | None = None


@dataclass(frozen=True)
class Terugmelding:
    """What a consumer reports: which object of which registry, and which values it doubts."""

    #: Registry code as in DMKS `Registratie` (`BRP`, `NHR`, `BAG`, `BGT`, `BRT`, ...).
    registratie: str
    #: OIN of the registry (`OinBasisregistratie`).
    oin_basisregistratie: str
    #: The object's key in the registry (a BSN, KvK number, BAG id, ...).
    object_sleutel: str
    attributen: tuple[Attribuut, ...]
    toelichting: str
    #: The reporter's own reference (DMKS `Referentiekenmerk`, at most 12 characters).
    referentiekenmerk: str
    contact: Contact
    #: OIN of the reporting organisation: from configuration or the authenticated consumer.
    oin_melder: str
    peildatum: date | None = None
    bijlagen: tuple[Bijlage, ...] = ()
    vestiging: str | None = None


@dataclass(frozen=True)
class AnnotatieToevoegen:
    """A DMKS `AnnotatieToevoegen` request, ready for the SOAP client.

    `annotatieboom` is the XML of the `AnnotatieBoom` element (bytes, serialised by the reverse
    mapping and valid against `wsdl/digimelding.xsd`), so the client sends what was validated.
    """

    oin_basisregistratie: str
    registratie: str | None
    annotatieboom: bytes
    #: `@uuid` of the root `Terugmelding` annotation: the registry's handle on the report.
    root_uuid: str
    #: Every annotation uuid in the tree, root first.
    uuids: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AnnotatieReceipt:
    """The answer to `AnnotatieToevoegen`."""

    tijdstempel: datetime
    annotatie_uuid: str


@dataclass(frozen=True)
class StatusEntry:
    """One row of a `Statusoverzicht` answer: the current DMKS status of one terugmelding."""

    #: `@uuid` of the root `Terugmelding` annotation.
    annotatie_uuid: str
    status: str
    tijdstempel: datetime
    referentiekenmerk: str | None = None
    toelichting: str | None = None

"""Reverse mappings: loading (strict, file:line errors), checking a terugmelding, and building
DMKS requests that conform to wsdl/digimelding.xsd for every registry."""

from __future__ import annotations

import base64
import itertools
import shutil
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from digibridge.mapping.check import check_directory
from digibridge.mapping.dmks import (
    DMKS_NS,
    END_STATES,
    STATUSES,
    schema_errors,
    transition_allowed,
)
from digibridge.mapping.reverse import ReverseMapping, ReverseMappings
from digibridge.mapping.reverse_types import (
    AnnotatieToevoegen,
    Attribuut,
    Bijlage,
    Contact,
    Terugmelding,
)
from digibridge.mapping.types import MappingError
from digibridge.wus.digilevering import read_levering
from tests.mapping.conftest import FIXTURES, MAPPINGS

MELDER = "00000001823288444000"
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
NS = {"d": DMKS_NS}
REVERSE_FIXTURES = FIXTURES / "reverse"


@pytest.fixture(scope="module")
def mappings() -> ReverseMappings:
    return ReverseMappings.load(MAPPINGS)


def mapping(mappings: ReverseMappings, registry: str) -> ReverseMapping:
    found = mappings.get(registry)
    assert found is not None
    return found


def counter_uuid() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: str(uuid.UUID(int=next(numbers)))


def terugmelding(
    registry: str, oin: str, key: str, *attributes: str, **changes: object
) -> Terugmelding:
    base = Terugmelding(
        registratie=registry,
        oin_basisregistratie=oin,
        object_sleutel=key,
        attributen=tuple(Attribuut(a, "oud", "nieuw") for a in attributes),
        toelichting="De waarde klopt niet met wat wij zien.",
        referentiekenmerk="ZAAK-2026-1",
        contact=Contact("Petra de Vries", "p.devries@example.nl", "+31 70 123 4567", "Burgerzaken"),
        oin_melder=MELDER,
        peildatum=date(2026, 2, 1),
    )
    return replace(base, **changes)


def nhr(**changes: object) -> Terugmelding:
    return terugmelding("NHR", "00000001003214345000", "12345678", "handelsnaam", **changes)


def brp(**changes: object) -> Terugmelding:
    return terugmelding("BRP", "00000001001172773000", "123456782", "geslachtsnaam", **changes)


def pdf(name: str = "uittreksel.pdf", size: int = 100) -> Bijlage:
    return Bijlage(name, "application/pdf", b"%PDF" + b"x" * size, "Uittreksel")


def as_request(built: AnnotatieToevoegen) -> etree._Element:
    """The AnnotatieToevoegenRequest the client sends around a built tree."""
    request = etree.Element(f"{{{DMKS_NS}}}AnnotatieToevoegenRequest")
    etree.SubElement(request, f"{{{DMKS_NS}}}OinBasisregistratie").text = built.oin_basisregistratie
    if built.registratie is not None:
        etree.SubElement(request, f"{{{DMKS_NS}}}Registratie").text = built.registratie
    request.append(etree.fromstring(built.annotatieboom))
    return request


# --- the bundled files ------------------------------------------------------------------------


def test_bundled_reverse_mappings_cover_the_registries(mappings: ReverseMappings) -> None:
    assert mappings.registries() == ["BAG", "BGT", "BRP", "BRT", "NHR"]
    assert mapping(mappings, "NHR").attachments.max_count == 5
    assert mapping(mappings, "BRP").attachments.max_count == 0
    assert mapping(mappings, "BRP").signed is True
    assert mapping(mappings, "NHR").signed is False
    assert mappings.get("BRK") is None


def test_object_uri_is_the_registry_oin_plus_the_key(mappings: ReverseMappings) -> None:
    assert mapping(mappings, "NHR").uri_of("12345678") == "00000001003214345000/12345678"


# --- building ---------------------------------------------------------------------------------


CASES = {
    "BRP without attachments": brp,
    "NHR with attachments": lambda: nhr(bijlagen=(pdf(), pdf("foto.pdf"))),
    "BAG": lambda: terugmelding(
        "BAG", "00000001802327497000", "0363100012345678", "bouwjaar", "pandstatus"
    ),
    "BGT": lambda: terugmelding("BGT", "00000001802327497000", "G0363.abc123", "functie"),
    "BRT": lambda: terugmelding("BRT", "00000001802327497000", "102345", "naam"),
}


@pytest.mark.parametrize("case", CASES)
def test_built_request_conforms_to_our_schema(mappings: ReverseMappings, case: str) -> None:
    t = CASES[case]()
    reverse = mapping(mappings, t.registratie)
    assert reverse.check(t) == []
    built = reverse.build(t, now=NOW, new_uuid=lambda: str(uuid.uuid4()))
    assert schema_errors(as_request(built)) == []
    assert built.oin_basisregistratie == t.oin_basisregistratie
    assert built.registratie == t.registratie


def test_tree_holds_the_report_and_points_every_leaf_at_the_root(
    mappings: ReverseMappings,
) -> None:
    t = nhr(bijlagen=(pdf(),))
    built = mapping(mappings, "NHR").build(t, now=NOW, new_uuid=counter_uuid())
    boom = etree.fromstring(built.annotatieboom)
    root = boom.find("d:Terugmelding", NS)
    assert root is not None
    assert built.root_uuid == root.get("uuid") == str(uuid.UUID(int=1))
    assert built.uuids == tuple(str(uuid.UUID(int=n)) for n in range(1, 6))
    assert root.findtext("d:Bronverwijzingen/d:Bronverwijzing/d:Uri", namespaces=NS) == (
        "00000001003214345000/12345678"
    )
    attribuut = root.find("d:Attributenset/d:Attribuut", NS)
    assert attribuut is not None
    assert (
        attribuut.findtext("d:Uri", namespaces=NS) == "http://www.kvk.nl/nhr/attribuut/handelsnaam"
    )
    assert attribuut.findtext("d:BetwijfeldeWaarde", namespaces=NS) == "oud"
    assert attribuut.findtext("d:VoorgesteldeWaarde", namespaces=NS) == "nieuw"
    assert root.findtext("d:Peilmoment", namespaces=NS) == "2026-02-01"
    leaves = [etree.QName(e).localname for e in boom][1:]
    assert leaves == [
        "Annotatiestatus",
        "Referentiekenmerk",
        "Contactinformatie",
        "Bijlageverwijzing",
    ]
    for annotation in boom:
        assert annotation.findtext("d:GeannoteerdDoor/d:Oin", namespaces=NS) == MELDER
        assert (
            annotation.findtext("d:GeannoteerdOp", namespaces=NS) == "2026-03-01T09:30:00.000+00:00"
        )
        if annotation is not root:
            assert annotation.findtext("d:Annotatieverwijzing", namespaces=NS) == built.root_uuid
    assert boom.findtext("d:Annotatiestatus/d:Status", namespaces=NS) == "Gemeld"
    assert boom.findtext("d:Referentiekenmerk/d:Kenmerk", namespaces=NS) == "ZAAK-2026-1"
    contact = boom.find("d:Contactinformatie", NS)
    assert contact is not None
    assert contact.get("ContactType") == "Melder"
    assert contact.findtext("d:Email", namespaces=NS) == "p.devries@example.nl"
    data = boom.findtext("d:Bijlageverwijzing/d:BijlageData", namespaces=NS)
    assert base64.b64decode(data or "", validate=True) == pdf().data


def test_given_root_uuid_is_used_and_normalised(mappings: ReverseMappings) -> None:
    given = "0F8FAD5B-D9CB-469F-A165-70867728950E"
    built = mapping(mappings, "BRP").build(
        brp(), now=NOW, new_uuid=lambda: str(uuid.uuid4()), root_uuid=given
    )
    assert built.root_uuid == given.lower()
    assert built.uuids[0] == given.lower()


def test_withdrawal_is_one_status_annotation_on_the_existing_root(
    mappings: ReverseMappings,
) -> None:
    root = str(uuid.uuid4())
    built = mapping(mappings, "NHR").build_status(
        root, "Ingetrokken", "Dubbel gemeld", MELDER, NOW, lambda: str(uuid.UUID(int=7))
    )
    assert schema_errors(as_request(built)) == []
    boom = etree.fromstring(built.annotatieboom)
    assert [etree.QName(e).localname for e in boom] == ["Annotatiestatus"]
    assert boom.findtext("d:Annotatiestatus/d:Annotatieverwijzing", namespaces=NS) == root
    assert boom.findtext("d:Annotatiestatus/d:Status", namespaces=NS) == "Ingetrokken"
    assert boom.findtext("d:Annotatiestatus/d:Toelichting", namespaces=NS) == "Dubbel gemeld"
    assert built.root_uuid == root
    assert built.uuids == (str(uuid.UUID(int=7)),)


def test_build_refuses_a_status_or_time_it_cannot_send(mappings: ReverseMappings) -> None:
    reverse = mapping(mappings, "NHR")
    with pytest.raises(ValueError, match="not a DMKS status"):
        reverse.build_status(str(uuid.uuid4()), "Weg", None, MELDER, NOW, lambda: str(uuid.uuid4()))
    with pytest.raises(ValueError, match="timezone-aware"):
        reverse.build(nhr(), now=datetime(2026, 1, 1), new_uuid=lambda: str(uuid.uuid4()))
    with pytest.raises(ValueError, match="not a uuid"):
        reverse.build_status("nope", "Ingetrokken", None, MELDER, NOW, lambda: str(uuid.uuid4()))


def test_build_refuses_what_check_refuses(mappings: ReverseMappings) -> None:
    with pytest.raises(ValueError, match=r"/bijlagen: BRP accepts no attachments"):
        mapping(mappings, "BRP").build(
            brp(bijlagen=(pdf(),)), now=NOW, new_uuid=lambda: str(uuid.uuid4())
        )


# --- checking ---------------------------------------------------------------------------------


PROBLEMS = {
    "unknown attribute": (
        lambda: nhr(attributen=(Attribuut("handelsnam", "a", "b"),)),
        ("/attributen/0/naam", "NHR has no attribute 'handelsnam'; did you mean 'handelsnaam'?"),
    ),
    "attribute twice": (
        lambda: nhr(attributen=(Attribuut("handelsnaam"), Attribuut("handelsnaam"))),
        ("/attributen/1/naam", "attribute 'handelsnaam' is given twice"),
    ),
    "no attributes": (
        lambda: nhr(attributen=()),
        ("/attributen", "at least one attribute is needed"),
    ),
    "six attachments for NHR": (
        lambda: nhr(bijlagen=tuple(pdf(f"{n}.pdf") for n in range(6))),
        ("/bijlagen", "NHR accepts at most 5 attachment(s), not 6"),
    ),
    "an attachment for BRP": (
        lambda: brp(bijlagen=(pdf(),)),
        ("/bijlagen", "BRP accepts no attachments, not 1"),
    ),
    "MIME type not allowed": (
        lambda: nhr(bijlagen=(Bijlage("x.exe", "application/x-msdownload", b"MZ"),)),
        (
            "/bijlagen/0/mimeType",
            "NHR does not accept 'application/x-msdownload' "
            "(allowed: application/pdf, image/jpeg, image/png, text/plain)",
        ),
    ),
    "attachment too large": (
        lambda: nhr(bijlagen=(pdf(size=5 * 1024 * 1024),)),
        ("/bijlagen/0/data", "5242884 bytes; NHR accepts at most 5242880 bytes per attachment"),
    ),
    "empty attachment": (
        lambda: nhr(bijlagen=(Bijlage("leeg.pdf", "application/pdf", b""),)),
        ("/bijlagen/0/data", "an attachment cannot be empty"),
    ),
    "file name with a path": (
        lambda: nhr(bijlagen=(pdf("../../etc/passwd"),)),
        ("/bijlagen/0/bestandsnaam", "a file name, not a path"),
    ),
    "BSN of 8 digits": (
        lambda: brp(object_sleutel="12345678"),
        ("/objectSleutel", "not a BSN (9 digits)"),
    ),
    "another registry's OIN": (
        lambda: brp(oin_basisregistratie="00000001003214345000"),
        (
            "/oinBasisregistratie",
            "'00000001003214345000' is not the OIN of BRP (00000001001172773000)",
        ),
    ),
    "melder OIN too short": (lambda: nhr(oin_melder="123"), ("/oinMelder", "an OIN is 20 digits")),
    "control character": (
        lambda: nhr(toelichting="regel\x00twee"),
        ("/toelichting", "contains U+0000, which XML cannot carry"),
    ),
    "lone surrogate": (
        lambda: nhr(contact=Contact("Jan \ud800", "jan@example.nl")),
        ("/contact/naam", "contains U+D800, which XML cannot carry"),
    ),
    "2 MB of text": (
        lambda: nhr(toelichting="a" * 2_000_000),
        ("/toelichting", "at most 4000 characters, not 2000000"),
    ),
    "blank toelichting": (lambda: nhr(toelichting="  "), ("/toelichting", "must not be empty")),
    "kenmerk of 13 characters": (
        lambda: nhr(referentiekenmerk="ZAAK-2026-123"),
        ("/referentiekenmerk", "at most 12 characters, not 13"),
    ),
    "not an e-mail address": (
        lambda: nhr(contact=Contact("Jan", "jan at example")),
        ("/contact/email", "not an e-mail address"),
    ),
    "telephone with letters": (
        lambda: nhr(contact=Contact("Jan", "jan@example.nl", "bel mij")),
        ("/contact/telefoon", "not a telephone number (digits, spaces, + ( ) -)"),
    ),
    "long doubted value": (
        lambda: nhr(attributen=(Attribuut("handelsnaam", "x" * 1001),)),
        ("/attributen/0/betwijfeldeWaarde", "at most 1000 characters, not 1001"),
    ),
    "vestiging of 3 digits": (
        lambda: nhr(vestiging="123"),
        ("/vestiging", "a vestigingsnummer is 12 digits"),
    ),
}


@pytest.mark.parametrize("case", PROBLEMS)
def test_check_names_the_field_and_the_reason(mappings: ReverseMappings, case: str) -> None:
    make, expected = PROBLEMS[case]
    t = make()
    assert mapping(mappings, t.registratie).check(t) == [expected]


def test_check_accepts_unicode_that_xml_carries(mappings: ReverseMappings) -> None:
    t = nhr(
        toelichting="Zoë\u2019s café 🍰 — ĳ, مرحبا",
        contact=Contact("Ŝtefan Ørsted-Ñúñez", "s@example.nl"),
        attributen=(Attribuut("handelsnaam", "Café \u2019t Hoekje", "Café 't Hoekje 🍰"),),
    )
    reverse = mapping(mappings, "NHR")
    assert reverse.check(t) == []
    assert (
        schema_errors(as_request(reverse.build(t, now=NOW, new_uuid=lambda: str(uuid.uuid4()))))
        == []
    )


def test_check_collects_every_problem_in_one_pass(mappings: ReverseMappings) -> None:
    t = brp(object_sleutel="x", referentiekenmerk="", bijlagen=(pdf(),))
    fields = [field for field, _ in mapping(mappings, "BRP").check(t)]
    assert fields == ["/objectSleutel", "/referentiekenmerk", "/bijlagen"]


# --- loading errors ---------------------------------------------------------------------------


LOAD_ERRORS = {
    "unknown-key.yaml": (
        "6:1",
        "unknown key 'attachment' in reverse mapping file (allowed: attachments, attributes, "
        "description, object, oin, registratie, signed); did you mean 'attachments'?",
    ),
    "oin-number.yaml": ("2:6", "oin must be text, got int"),
    "uri-without-key.yaml": ("4:8", "uri must contain {sleutel}"),
    "bad-key-pattern.yaml": ("5:16", "key-pattern is not a regular expression"),
    "empty-key-pattern.yaml": ("5:16", "key-pattern must not match an empty key"),
    "bad-mime-type.yaml": ("10:7", "'PDF' is not a MIME type"),
    "too-many-attachments.yaml": ("7:14", "max-count must be a whole number from 0 to 100"),
    "mime-types-missing.yaml": ("7:3", "mime-types must list the accepted types"),
    "relative-attribute-uri.yaml": ("8:15", "'attribuut/rechtsvorm' is not an absolute URI"),
    "lower-case-registratie.yaml": ("1:14", "registratie must be 1 to 3 capital letters"),
    "no-attributes.yaml": ("6:13", "attributes must name at least one attribute"),
    "not-a-mapping.yaml": ("1:1", "a reverse mapping file must be a YAML mapping"),
}


def _folder_with(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "terugmeldingen"
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(REVERSE_FIXTURES / name, folder / name)
    return tmp_path


@pytest.mark.parametrize("name", LOAD_ERRORS)
def test_load_error_names_file_line_and_column(tmp_path: Path, name: str) -> None:
    position, message = LOAD_ERRORS[name]
    with pytest.raises(MappingError) as caught:
        ReverseMappings.load(_folder_with(tmp_path, name))
    assert caught.value.location is not None
    assert caught.value.location.endswith(f"terugmeldingen/{name}:{position}")
    assert message in caught.value.message


def test_a_registry_mapped_twice_is_an_error(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path)
    shutil.copy(MAPPINGS / "terugmeldingen" / "nhr.yaml", folder / "terugmeldingen" / "a.yaml")
    shutil.copy(MAPPINGS / "terugmeldingen" / "nhr.yaml", folder / "terugmeldingen" / "b.yaml")
    with pytest.raises(MappingError, match=r"registratie 'NHR' is also mapped in .*a\.yaml"):
        ReverseMappings.load(folder)


def test_a_folder_without_reverse_mappings_takes_no_terugmeldingen(tmp_path: Path) -> None:
    assert ReverseMappings.load(tmp_path).registries() == []


def test_check_command_reports_reverse_mapping_errors(tmp_path: Path) -> None:
    for path in MAPPINGS.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    _folder_with(tmp_path, "unknown-key.yaml", "bad-mime-type.yaml")
    result = check_directory(tmp_path, read_message=read_levering)
    locations = [problem.location.rsplit("/", 1)[-1] for problem in result.problems]
    assert locations == ["bad-mime-type.yaml:10:7", "unknown-key.yaml:6:1"]


# --- the lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "following", "allowed"),
    [
        (None, "Gemeld", True),
        (None, "In behandeling", False),
        ("Gemeld", "In behandeling", True),
        ("Gemeld", "Afgehandeld", False),
        ("In behandeling", "Ingepland", True),
        ("Ingepland", "Afgehandeld", True),
        ("Verkeerde Bronhouder", "Gemeld", True),
        ("Afgehandeld", "Gemeld", False),
        ("Ingetrokken", "Ingetrokken", False),
    ],
)
def test_lifecycle_transitions(previous: str | None, following: str, allowed: bool) -> None:
    assert transition_allowed(previous, following) is allowed


def test_end_states_lead_nowhere() -> None:
    for end in END_STATES:
        assert not any(transition_allowed(end, status) for status in STATUSES)

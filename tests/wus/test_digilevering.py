"""DigiLevering bodies: validation against our XSD, reading into `Levering`, the acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from digibridge.wus.digilevering import (
    ACK_NS,
    DIGILEVERING_NS,
    OPERATIONS,
    build_acknowledgement,
    operation_for,
    parse_levering,
    wsdl_dir,
)
from digibridge.wus.faults import SOAP11_NS, DkCode, SoapFault

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))


def load(path: Path) -> etree._Element:
    return etree.parse(str(path), PARSER).getroot()


def in_envelope(body_child: etree._Element) -> etree._Element:
    """The body child as the endpoint sees it: inside a SOAP Body, namespaces inherited."""
    envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"s": SOAP11_NS})
    etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body").append(body_child)
    return envelope[0][0]


def test_v4_reads_every_field_and_naive_times_are_amsterdam_time():
    levering = parse_levering(in_envelope(load(FIXTURES / "v4-verstrekking.xml")))

    assert levering.form == "v4"
    assert levering.kenmerk == "11111111-2222-4333-8444-555555555555@digilevering.nl"
    assert levering.kenmerk_verstrekker == "BRP-20250115-000001"
    assert levering.referentie_id == "REF-1"
    assert levering.versie_berichttype == "3.10"
    assert (levering.abonnement, levering.abonnement_versie) == ("BRP-Test", "2")
    assert levering.basisregistratie == "BRP"
    assert (levering.gebeurtenissoort, levering.gebeurtenissoort_versie) == ("Gv01", "1.0")
    # January: CET (+01:00); July: CEST (+02:00).
    assert levering.tijdstempel_verstrekker == datetime(2025, 1, 15, 9, 30, tzinfo=CET)
    assert levering.tijdstempel_verstrekker.utcoffset() == timedelta(hours=1)
    assert levering.tijdstempel_digilevering == datetime(2025, 7, 1, 12, 0, 5, 250000, tzinfo=CEST)
    assert levering.tijdstempel_digilevering.utcoffset() == timedelta(hours=2)
    assert levering.verstrekker_oin is None
    assert levering.ontvanger_oin is None
    assert levering.payload.tag == "{http://www.rvig.nl/schemas/lo-gba/3.10}gv01"
    assert levering.payload.get("aNummer") == "1010101025"


def test_v5_reads_every_field_and_keeps_explicit_timezones():
    levering = parse_levering(load(FIXTURES / "v5-levering.xml"))

    assert levering.form == "v5"
    assert levering.kenmerk == "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee@digilevering.nl"
    assert levering.kenmerk_verstrekker == "HR-SIG-1"
    assert levering.referentie_id is None
    assert levering.versie_berichttype == "1.0"
    assert (levering.abonnement, levering.abonnement_versie) == ("NHR-Test", "1")
    assert levering.basisregistratie == "NHR"
    assert (levering.gebeurtenissoort, levering.gebeurtenissoort_versie) == (
        "NieuweInschrijving",
        "1.0",
    )
    assert levering.tijdstempel_verstrekker == datetime(2025, 3, 14, 10, 2, 17, tzinfo=UTC)
    assert levering.tijdstempel_verstrekker.utcoffset() == timedelta(0)
    assert levering.tijdstempel_digilevering == datetime(2025, 3, 14, 11, 2, 25, 310000, tzinfo=CET)
    assert levering.verstrekker_oin == "00000001003214345000"
    assert levering.ontvanger_oin == "00000099000000000123"
    assert levering.payload.tag == (
        "{http://schemas.kvk.nl/schemas/hrip/signalen/2024/01}NieuweInschrijving"
    )


def test_end_of_day_24_00_is_the_next_midnight():
    """xs:dateTime allows 24:00:00; it means 00:00:00 of the next day."""
    root = load(FIXTURES / "v4-verstrekking.xml")
    root.find("datumtijdstempelLV").text = "2025-01-15T24:00:00Z"

    assert parse_levering(root).tijdstempel_verstrekker == datetime(2025, 1, 16, tzinfo=UTC)


def test_a_schema_valid_date_python_cannot_hold_is_a_fault():
    """xs:dateTime allows negative years; a Levering cannot carry them."""
    root = load(FIXTURES / "v4-verstrekking.xml")
    root.find("datumtijdstempelLV").text = "-0001-01-01T00:00:00"

    with pytest.raises(SoapFault) as caught:
        parse_levering(root)

    assert caught.value.code is DkCode.NOT_XSD_CONFORMANT
    assert caught.value.element == "datumtijdstempelLV"


@pytest.mark.parametrize(
    ("fixture", "element", "explained"),
    [
        ("v4-missing-kenmerkDigilevering.xml", "kenmerkDigilevering", "is missing"),
        ("v4-abonnement-without-naam.xml", "naam", "naam is missing in abonnement"),
        ("v4-qualified-children.xml", "datumtijdstempelDigilevering", "wrong namespace"),
        ("v5-unqualified-children.xml", "BerichtHeader", "wrong namespace"),
        ("v4-wrong-namespace.xml", "VerstrekkingAanAfnemer", "expected"),
        ("unknown-root.xml", "AfnemersberichtAanDGL", "LeveringVanDGL"),
        ("v4-two-payload-elements.xml", "gebeurtenisinhoud", "exactly one element"),
        ("v5-empty-inhoud.xml", "Inhoud", "exactly one element"),
        ("v4-bad-datetime.xml", "datumtijdstempelLV", "xs:dateTime"),
        ("v5-bad-datetime.xml", "DatumtijdstempelVerstrekker", "xs:dateTime"),
        ("v5-short-oin.xml", "VerstrekkerId", "[0-9]{20}"),
        ("v4-empty-basisregistratie.xml", "basisregistratie", "minimum length"),
        ("v5-extra-element.xml", "Prioriteit", "not expected"),
    ],
)
def test_nonconforming_body_is_refused_with_0004_naming_the_element(fixture, element, explained):
    body_child = in_envelope(load(FIXTURES / "invalid" / fixture))

    with pytest.raises(SoapFault) as caught:
        parse_levering(body_child)

    assert caught.value.code is DkCode.NOT_XSD_CONFORMANT
    assert caught.value.element == element
    assert explained in caught.value.reason
    assert caught.value.client


def test_missing_element_is_named_on_a_single_line_document_too():
    """SOAP messages are often one line; the missing `naam` is still found."""
    pretty = load(FIXTURES / "invalid" / "v4-abonnement-without-naam.xml")
    one_line = etree.fromstring(etree.tostring(pretty).replace(b"\n", b""), PARSER)

    with pytest.raises(SoapFault) as caught:
        parse_levering(one_line)

    assert caught.value.element == "naam"


def test_operations_are_keyed_by_body_element():
    v4 = OPERATIONS[f"{{{DIGILEVERING_NS}}}VerstrekkingAanAfnemer"]
    v5 = OPERATIONS[f"{{{DIGILEVERING_NS}}}LeveringVanDGL"]

    assert v4.name == "VerstrekkingAanAfnemer"
    assert v4.action == "http://www.digilevering.nl/digilevering/VerstrekkingAanAfnemer"
    assert v4.response_action == (
        "http://www.digilevering.nl/digilevering/VerstrekkingAanAfnemerResponse"
    )
    assert v5.action == "http://www.digilevering.nl/digilevering/LeveringVanDGL"
    assert v5.response_action == "http://www.digilevering.nl/digilevering/LeveringVanDGLResponse"
    assert operation_for(load(FIXTURES / "v5-levering.xml")) is v5
    assert len(OPERATIONS) == 2


def test_operation_for_a_comment_is_a_fault_not_a_crash():
    with pytest.raises(SoapFault) as caught:
        operation_for(etree.Comment("not an element"))

    assert caught.value.code is DkCode.NOT_XSD_CONFORMANT


def test_acknowledgement_conforms_to_our_schema_and_says_what_happened():
    levering = parse_levering(load(FIXTURES / "v5-levering.xml"))
    received = datetime(2025, 3, 14, 10, 3, tzinfo=UTC)

    ack = build_acknowledgement(
        levering, duplicate=True, event_ids=["ev-1", "ev-2"], received_at=received
    )

    schema = etree.XMLSchema(etree.parse(str(wsdl_dir() / "digibridge-wus.xsd"), PARSER))
    schema.assertValid(ack)
    ns = {"a": ACK_NS}
    assert ack.tag == f"{{{ACK_NS}}}Ontvangstbevestiging"
    assert ack.findtext("a:kenmerk", namespaces=ns) == levering.kenmerk
    assert ack.findtext("a:kenmerkVerstrekker", namespaces=ns) == "HR-SIG-1"
    assert datetime.fromisoformat(ack.findtext("a:ontvangen", namespaces=ns)) == received
    assert ack.findtext("a:duplicaat", namespaces=ns) == "true"
    assert ack.xpath("a:eventIds/a:eventId/text()", namespaces=ns) == ["ev-1", "ev-2"]


def test_acknowledgement_without_events_is_still_valid():
    levering = parse_levering(load(FIXTURES / "v4-verstrekking.xml"))
    ack = build_acknowledgement(
        levering, duplicate=False, event_ids=[], received_at=datetime.now(UTC)
    )

    schema = etree.XMLSchema(etree.parse(str(wsdl_dir() / "digibridge-wus.xsd"), PARSER))
    schema.assertValid(ack)
    assert ack.findtext(f"{{{ACK_NS}}}duplicaat") == "false"


def test_acknowledgement_refuses_a_naive_receive_time():
    levering = parse_levering(load(FIXTURES / "v4-verstrekking.xml"))

    with pytest.raises(ValueError, match="timezone-aware"):
        build_acknowledgement(
            levering, duplicate=False, event_ids=[], received_at=datetime(2025, 1, 1)
        )


def _samples() -> list[object]:
    found = sorted(SAMPLES.glob("*.xml"))
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no samples in {SAMPLES}"))]
    return [pytest.param(path, id=path.name) for path in found]


@pytest.mark.parametrize("sample", _samples())
def test_every_sample_message_conforms(sample):
    levering = parse_levering(load(sample))

    assert levering.kenmerk
    assert levering.basisregistratie
    assert levering.tijdstempel_verstrekker.tzinfo is not None

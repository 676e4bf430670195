"""Hostile and malformed requests to `POST /wus/digilevering`: each a precise SOAP Fault, nothing
stored, and the gateway keeps serving."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.support.gateway import GatewayProcess
from tests.support.soap import (
    SOAP11,
    SOAP12,
    WSA,
    envelope,
    fault_code,
    headers_for,
    sample,
    with_kenmerk,
)

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
BRP = "brp-verhuizing.xml"
SOAP11_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


def post(
    gateway: GatewayProcess, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(gateway.wus_url, content=body, headers=headers or SOAP11_HEADERS, timeout=30)


@pytest.fixture
def gw(shared_gateway: GatewayProcess) -> GatewayProcess:
    """The shared gateway; after each test it must still accept a good message."""
    yield shared_gateway  # type: ignore[misc]
    good = post(shared_gateway, envelope(sample(BRP)), headers_for(sample(BRP)))
    assert good.status_code == 200, good.text
    assert shared_gateway.alive()


def assert_fault(response: httpx.Response, code: str, *, status: int = 500) -> etree._Element:
    assert response.status_code == status, response.text
    assert fault_code(response.content) == code, response.text
    root = etree.fromstring(response.content)
    assert (
        root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault") is not None
        or root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault") is not None
    )
    return root


def test_xxe_external_entity_is_refused_before_parsing(gw: GatewayProcess) -> None:
    response = post(gw, (HOSTILE / "xxe.xml").read_bytes())
    assert_fault(response, "0001")
    assert b"root:" not in response.content
    assert b"DTD" in response.content


def test_billion_laughs_is_refused(gw: GatewayProcess) -> None:
    response = post(gw, (HOSTILE / "billion-laughs.xml").read_bytes())
    assert_fault(response, "0001")
    assert b"lollol" not in response.content


def test_quadratic_blowup_is_refused(gw: GatewayProcess) -> None:
    big = "A" * 50_000
    document = (
        f'<?xml version="1.0"?>\n<!DOCTYPE kaboom [<!ENTITY a "{big}">]>\n'
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><x>{"&a;" * 2_000}</x>'
        "</soap:Body></soap:Envelope>"
    ).encode()
    assert_fault(post(gw, document), "0001")


def test_entity_reference_without_dtd_is_malformed(gw: GatewayProcess) -> None:
    document = envelope(sample(BRP)).replace(b"<kenmerkLV>", b"<kenmerkLV>&undefined;", 1)
    assert_fault(post(gw, document), "0001")


def test_oversize_body_gets_413_without_being_read_whole(gw: GatewayProcess) -> None:
    body = envelope(sample(BRP)).replace(
        b"</soap:Body>", b"<!--" + b"x" * 6_000_000 + b"--></soap:Body>"
    )
    response = post(gw, body)
    assert_fault(response, "0001", status=413)
    assert b"larger than" in response.content


def test_oversize_body_sent_in_chunks_gets_413_on_the_chunk_that_passes_the_cap(
    gw: GatewayProcess,
) -> None:
    """No Content-Length to refuse by: the body is counted as it arrives."""

    def chunks() -> Iterator[bytes]:
        yield envelope(sample(BRP))[:200]
        for _ in range(200):  # 12.8 MB if it were all read; the cap is 5 MB
            yield b"x" * 64_000

    response = post(gw, chunks())  # type: ignore[arg-type]
    assert_fault(response, "0001", status=413)
    assert response.headers["connection"] == "close"


def test_a_client_gone_halfway_through_its_body_is_not_answered_and_nothing_is_stored(
    gw: GatewayProcess,
) -> None:
    body = envelope(with_kenmerk(sample(BRP), "halfway@digilevering.nl"))
    head = (
        f"POST /wus/digilevering HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: text/xml; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as connection:
        connection.sendall(head + body[: len(body) // 2])
    # The next message is served (the fixture checks), and the half one left nothing behind.
    assert post(gw, envelope(sample(BRP)), headers_for(sample(BRP))).status_code == 200
    with sqlite3.connect(gw.data_dir / "digibridge.db") as db:
        stored = db.execute(
            "SELECT count(*) FROM messages WHERE kenmerk = 'halfway@digilevering.nl'"
        ).fetchone()
    assert stored == (0,)
    assert "returned without" not in gw.log()


@pytest.mark.parametrize("kind", ["acknowledgement", "fault", "too large"])
def test_every_soap_answer_says_its_length_type_and_api_version(
    gw: GatewayProcess, kind: str
) -> None:
    document = with_kenmerk(sample(BRP))
    body = {
        "acknowledgement": envelope(document),
        "fault": b"<soap:Envelope xmlns:soap='x'><unclosed>",
        "too large": b"x" * 6_000_000,
    }[kind]
    response = post(gw, body, headers_for(document))
    assert response.status_code == {"acknowledgement": 200, "fault": 500, "too large": 413}[kind]
    assert response.headers["api-version"] == "1.0.0"
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.headers["content-length"] == str(len(response.content))


def test_deeply_nested_xml_is_refused(gw: GatewayProcess) -> None:
    nested = "<a>" * 5_000 + "</a>" * 5_000
    document = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>{nested}</soap:Body></soap:Envelope>'
    ).encode()
    response = post(gw, document)
    assert_fault(response, "0001")
    assert b"deeper than" in response.content


def test_malformed_xml(gw: GatewayProcess) -> None:
    assert_fault(post(gw, b"<soap:Envelope xmlns:soap='x'><unclosed>"), "0001")


def test_not_utf8_declared_encoding(gw: GatewayProcess) -> None:
    document = envelope(sample(BRP)).decode().replace("UTF-8", "ISO-8859-1", 1).encode("latin-1")
    assert_fault(post(gw, document), "0009")


def test_not_utf8_bytes(gw: GatewayProcess) -> None:
    document = envelope(sample(BRP)).decode().encode("utf-16")
    assert_fault(post(gw, document), "0009")


def test_not_utf8_charset_header(gw: GatewayProcess) -> None:
    response = post(gw, envelope(sample(BRP)), {"Content-Type": "text/xml; charset=iso-8859-1"})
    assert_fault(response, "0009")


def test_two_body_children(gw: GatewayProcess) -> None:
    document = envelope(sample(BRP))
    root = etree.fromstring(document)
    body = root.find(f"{{{SOAP11}}}Body")
    assert body is not None
    body.append(etree.Element("tweede"))
    response = post(gw, etree.tostring(root))
    assert_fault(response, "0001")
    assert b"exactly one element" in response.content


def test_missing_message_id(gw: GatewayProcess) -> None:
    response = post(gw, envelope(sample(BRP), message_id=None), headers_for(sample(BRP)))
    assert_fault(response, "0007")
    assert b"MessageID" in response.content


@pytest.mark.parametrize(("header", "code"), [("to", "0005"), ("action", "0006")])
def test_missing_to_or_action(gw: GatewayProcess, header: str, code: str) -> None:
    response = post(gw, envelope(sample(BRP), **{header: None}))
    assert_fault(response, code)


def test_wrong_envelope_namespace(gw: GatewayProcess) -> None:
    document = envelope(sample(BRP)).replace(SOAP11.encode(), b"http://example.org/not-soap/")
    response = post(gw, document)
    assert_fault(response, "0001")
    assert b"not a SOAP 1.1 or SOAP 1.2 Envelope" in response.content


def test_old_ws_addressing_namespace(gw: GatewayProcess) -> None:
    document = envelope(sample(BRP)).replace(
        WSA.encode(), b"http://schemas.xmlsoap.org/ws/2004/08/addressing"
    )
    assert_fault(post(gw, document), "0010")


def test_foreign_header_block(gw: GatewayProcess) -> None:
    extra = etree.Element("{urn:example:custom}Trace")
    extra.text = "x"
    assert_fault(post(gw, envelope(sample(BRP), extra_headers=[extra])), "0010")


def test_soapaction_differs_from_wsa_action(gw: GatewayProcess) -> None:
    response = post(gw, envelope(sample(BRP)), {**SOAP11_HEADERS, "SOAPAction": '"urn:other"'})
    assert_fault(response, "0003")


def test_action_does_not_fit_body(gw: GatewayProcess) -> None:
    response = post(
        gw, envelope(sample(BRP), action="http://www.digilevering.nl/digilevering/LeveringVanDGL")
    )
    assert_fault(response, "0011")


def test_body_not_conformant_to_xsd_names_the_element(gw: GatewayProcess) -> None:
    document = sample(BRP).replace(b"<basisregistratie>BRP</basisregistratie>", b"")
    response = post(gw, envelope(document))
    root = assert_fault(response, "0004")
    assert root.find(".//detail") is not None
    assert b"basisregistratie" in response.content


def test_unknown_body_element(gw: GatewayProcess) -> None:
    response = post(gw, envelope(sample(BRP)).replace(b"VerstrekkingAanAfnemer", b"Onbekend"))
    assert_fault(response, "0004")
    assert b"Onbekend" in response.content


def test_unmapped_message_is_a_server_fault_and_not_acknowledged(gw: GatewayProcess) -> None:
    document = sample(BRP).replace(b"<naam>Gv01</naam>", b"<naam>Zz99</naam>")
    response = post(gw, envelope(document))
    root = assert_fault(response, "0050")
    assert root.findtext(".//faultcode") == "soap:Server.0050"
    assert b"Zz99" in response.content


def test_wrong_content_type_is_415(gw: GatewayProcess) -> None:
    response = post(gw, envelope(sample(BRP)), {"Content-Type": "application/json"})
    assert_fault(response, "0001", status=415)


def test_soap12_fault_is_answered_in_soap12(gw: GatewayProcess) -> None:
    response = post(
        gw,
        envelope(sample(BRP), soap12=True, message_id=None),
        {"Content-Type": "application/soap+xml; charset=utf-8"},
    )
    root = assert_fault(response, "0007")
    assert root.tag == f"{{{SOAP12}}}Envelope"
    assert response.headers["content-type"].startswith("application/soap+xml")


def stored_counts(gateway: GatewayProcess) -> tuple[int, int]:
    """Messages and events in the gateway's SQLite file, read through a second connection."""
    with sqlite3.connect(f"file:{gateway.data_dir / 'digibridge.db'}?mode=ro", uri=True) as db:
        messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return messages, events


def test_refused_messages_store_nothing(gw: GatewayProcess) -> None:
    before = stored_counts(gw)
    bad = sample(BRP).replace(b"<basisregistratie>BRP</basisregistratie>", b"")
    for body in (envelope(bad), (HOSTILE / "xxe.xml").read_bytes(), b"<broken"):
        assert post(gw, body).status_code == 500
    assert stored_counts(gw) == before
    good = post(gw, envelope(with_kenmerk(sample(BRP))), headers_for(sample(BRP)))
    assert good.status_code == 200
    assert stored_counts(gw) == (before[0] + 1, before[1] + 1)

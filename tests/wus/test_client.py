"""The DigiLevering sender: a real zeep client from the served WSDL, against a stub on loopback.

The stub serves `wsdl_document`/`schema_document`, records what arrives, and answers like the
gateway: an acknowledgement (built with `parse_levering` + `build_acknowledgement`) or a Fault.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import zeep
import zeep.helpers
from lxml import etree

from digibridge.wus.client import WSA_ANONYMOUS, SendError, send_levering
from digibridge.wus.digilevering import (
    OPERATIONS,
    SOAP11_BINDING,
    SOAP12_BINDING,
    build_acknowledgement,
    operation_for,
    parse_levering,
    schema_document,
    wsdl_document,
)
from digibridge.wus.faults import SOAP11_NS, SOAP12_NS, DkCode, SoapFault, SoapVersion, render_fault
from tests.support.net import free_port

FIXTURES = Path(__file__).parent / "fixtures"
WSA = "http://www.w3.org/2005/08/addressing"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
MESSAGES = {
    "v4": FIXTURES / "v4-verstrekking.xml",
    "v5": FIXTURES / "v5-levering.xml",
}


@dataclass(frozen=True)
class Posted:
    headers: dict[str, str]
    envelope: etree._Element

    @property
    def body_child(self) -> etree._Element:
        return self.envelope.find(f"{{{etree.QName(self.envelope).namespace}}}Body")[0]

    def header(self, name: str) -> str | None:
        return self.envelope.findtext(f"{{*}}Header/{{{WSA}}}{name}")


class StubGateway(http.server.ThreadingHTTPServer):
    """Answers `?wsdl`/`?xsd=` from our functions and POSTs with an ack or `fault`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_port}/wus/digilevering"
        self.fault: SoapFault | None = None
        self.posted: list[Posted] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    server: StubGateway

    def do_GET(self) -> None:
        if urlsplit(self.path).path != urlsplit(self.server.url).path:
            self._answer(404, "text/plain", b"not found")
            return
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        if "wsdl" in query:
            document = wsdl_document(self.server.url)
        else:
            document = schema_document(query.get("xsd", [""])[0], self.server.url)
        if document is None:
            self._answer(404, "text/plain", b"not found")
        else:
            self._answer(200, "text/xml; charset=utf-8", document)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != urlsplit(self.server.url).path:
            self._answer(404, "text/html", b"<html><body>not found</body></html>")
            return
        data = self.rfile.read(int(self.headers["Content-Length"]))
        envelope = etree.fromstring(data, PARSER)
        posted = Posted(dict(self.headers), envelope)
        self.server.posted.append(posted)
        version = SoapVersion(etree.QName(envelope).namespace)
        try:
            if self.server.fault is not None:
                raise self.server.fault
            answer = self._acknowledge(posted, version)
        except SoapFault as fault:
            self._answer(500, version.content_type, render_fault(fault, version))
        else:
            self._answer(200, version.content_type, answer)

    def _acknowledge(self, posted: Posted, version: SoapVersion) -> bytes:
        operation = operation_for(posted.body_child)
        levering = parse_levering(posted.body_child)
        out = etree.Element(f"{{{version.value}}}Envelope", nsmap={"s": version.value, "a": WSA})
        header = etree.SubElement(out, f"{{{version.value}}}Header")
        etree.SubElement(header, f"{{{WSA}}}Action").text = operation.response_action
        etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = posted.header("MessageID")
        body = etree.SubElement(out, f"{{{version.value}}}Body")
        body.append(
            build_acknowledgement(
                levering,
                duplicate=False,
                event_ids=[f"{levering.kenmerk}#1"],
                received_at=datetime(2025, 3, 14, 10, 0, tzinfo=UTC),
            )
        )
        return etree.tostring(out, xml_declaration=True, encoding="UTF-8")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests assert on what was posted."""


@pytest.fixture(scope="module")
def stub_server() -> Iterator[StubGateway]:
    server = StubGateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def stub(stub_server: StubGateway) -> StubGateway:
    stub_server.fault = None
    stub_server.posted.clear()
    return stub_server


def original_payload(form: str) -> etree._Element:
    return parse_levering(etree.parse(str(MESSAGES[form]), PARSER).getroot()).payload


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=True)


# --- the WSDL in zeep ------------------------------------------------------------------------


@pytest.fixture
def zeep_client(stub: StubGateway) -> Iterator[zeep.Client]:
    session = requests.Session()
    client = zeep.Client(f"{stub.url}?wsdl", transport=zeep.Transport(session=session))
    yield client
    session.close()


def test_zeep_loads_the_served_wsdl_with_both_ports_and_operations(zeep_client):
    service = zeep_client.wsdl.services["DigiLeveringService"]

    assert set(service.ports) == {"DigiLeveringSoap11Port", "DigiLeveringSoap12Port"}
    for port in service.ports.values():
        for operation in OPERATIONS.values():
            bound = port.binding.get(operation.name)
            assert bound.soapaction == operation.action
            assert bound.abstract.wsa_action == operation.action


@pytest.mark.parametrize("binding", [SOAP11_BINDING, SOAP12_BINDING], ids=["soap11", "soap12"])
@pytest.mark.parametrize("form", MESSAGES)
def test_zeep_creates_a_message_for_each_operation_and_soap_version(
    zeep_client, stub, binding, form
):
    """zeep reads our fixture with its own schema and renders it back: WS-A and payload intact."""
    # zeep would take a comment for the xs:any content, so read the fixture without them.
    without_comments = etree.XMLParser(remove_comments=True, resolve_entities=False)
    root = etree.parse(str(MESSAGES[form]), without_comments).getroot()
    operation = OPERATIONS[root.tag]
    value = zeep_client.get_element(root.tag).parse(root, zeep_client.wsdl.types)
    arguments = zeep.helpers.serialize_object(value, target_cls=dict)
    service = zeep_client.create_service(binding, stub.url)

    envelope = zeep_client.create_message(service, operation.name, **arguments)

    soap_ns = SOAP12_NS if binding == SOAP12_BINDING else SOAP11_NS
    assert envelope.tag == f"{{{soap_ns}}}Envelope"
    assert envelope.findtext(f"{{{soap_ns}}}Header/{{{WSA}}}Action") == operation.action
    assert envelope.findtext(f"{{{soap_ns}}}Header/{{{WSA}}}To") == stub.url
    assert envelope.findtext(f"{{{soap_ns}}}Header/{{{WSA}}}MessageID").startswith("urn:uuid:")
    body_child = envelope.find(f"{{{soap_ns}}}Body")[0]
    assert parse_levering(body_child).payload.tag == original_payload(form).tag


# --- send_levering ---------------------------------------------------------------------------


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
@pytest.mark.parametrize("form", MESSAGES)
def test_send_delivers_the_message_and_returns_the_acknowledgement(stub, form, soap12):
    result = send_levering(
        MESSAGES[form],
        stub.url,
        soap12=soap12,
        message_id="uuid:test-1@digibridge",
        from_oin="00000099000000000001",
    )

    [posted] = stub.posted
    operation = operation_for(posted.body_child)
    assert operation.name == {"v4": "VerstrekkingAanAfnemer", "v5": "LeveringVanDGL"}[form]
    assert etree.QName(posted.envelope).namespace == (SOAP12_NS if soap12 else SOAP11_NS)
    assert posted.header("Action") == operation.action
    assert posted.header("To") == stub.url
    assert posted.header("MessageID") == "uuid:test-1@digibridge"
    assert posted.header("From") is not None
    assert posted.envelope.findtext(f"{{*}}Header/{{{WSA}}}From/{{{WSA}}}Address") == (
        f"{WSA_ANONYMOUS}?OIN=00000099000000000001"
    )
    if soap12:
        assert f'action="{operation.action}"' in posted.headers["Content-Type"]
    else:
        assert posted.headers["SOAPAction"].strip('"') == operation.action
    assert result.message_id == "uuid:test-1@digibridge"
    assert result.relates_to == "uuid:test-1@digibridge"
    levering = parse_levering(posted.body_child)
    assert result.acknowledgement["kenmerk"] == levering.kenmerk
    assert result.acknowledgement["duplicaat"] is False
    assert result.acknowledgement["eventIds"] == {"eventId": [f"{levering.kenmerk}#1"]}


@pytest.mark.parametrize("form", MESSAGES)
def test_payload_arrives_unchanged(stub, form):
    """Same elements, namespaces, attributes and text: exclusive C14N of both is identical."""
    send_levering(MESSAGES[form], stub.url)

    received = parse_levering(stub.posted[0].body_child).payload
    assert c14n(received) == c14n(original_payload(form))


def test_payload_keeps_namespaces_only_used_inside_values(stub):
    """`xsi:type="gba:Gv01Type"` needs `gba` in scope even though no C14N would show that."""
    send_levering(MESSAGES["v4"], stub.url)

    received = parse_levering(stub.posted[0].body_child).payload
    prefix, _, _ = received.get("{http://www.w3.org/2001/XMLSchema-instance}type").partition(":")
    assert received.nsmap[prefix] == "http://www.rvig.nl/schemas/lo-gba/3.10"


def test_message_given_as_bytes_gets_a_fresh_urn_uuid(stub):
    result = send_levering(MESSAGES["v5"].read_bytes(), stub.url)

    assert result.message_id.startswith("urn:uuid:")
    assert uuid.UUID(result.message_id.removeprefix("urn:uuid:"))
    assert stub.posted[0].header("MessageID") == result.message_id
    assert stub.posted[0].header("From") is None


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_fault_becomes_send_error_with_the_digikoppeling_code(stub, soap12):
    stub.fault = SoapFault(
        DkCode.NOT_XSD_CONFORMANT, "kenmerkDigilevering is missing", element="kenmerkDigilevering"
    )

    with pytest.raises(SendError) as caught:
        send_levering(MESSAGES["v4"], stub.url, soap12=soap12)

    assert caught.value.dk_code == "0004"
    assert "kenmerkDigilevering is missing" in caught.value.fault_string
    assert "kenmerkDigilevering is missing" in str(caught.value)
    if not soap12:
        assert caught.value.fault_code == "soap:Client.0004"


def test_nothing_listening_is_a_send_error():
    url = f"http://127.0.0.1:{free_port()}/wus/digilevering"

    with pytest.raises(SendError, match="cannot reach"):
        send_levering(MESSAGES["v4"], url, timeout=5)


def test_endpoint_without_a_wsdl_is_a_send_error(stub):
    with pytest.raises(SendError, match=r"cannot load the WSDL .*404"):
        send_levering(MESSAGES["v4"], f"http://127.0.0.1:{stub.server_port}/nowhere")


@pytest.mark.parametrize("to", ["samples/brp-verhuizing.xml", "file:///etc/passwd", "http:///x"])
def test_endpoint_must_be_an_http_url(to):
    """zeep reads a non-HTTP location as a local file; the sender never lets it."""
    with pytest.raises(SendError, match="http"):
        send_levering(MESSAGES["v4"], to)


def test_document_that_is_no_digilevering_message_is_refused_before_sending(stub):
    with pytest.raises(SendError, match="not a DigiLevering message"):
        send_levering(FIXTURES / "invalid" / "unknown-root.xml", stub.url)
    assert stub.posted == []


def test_hostile_xml_is_not_expanded(stub):
    """A DTD with an entity is not resolved: the sender refuses rather than expanding it."""
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<x xmlns="http://www.digilevering.nl/digilevering.xsd">&e;</x>'
    )
    with pytest.raises(SendError):
        send_levering(hostile, stub.url)
    assert stub.posted == []

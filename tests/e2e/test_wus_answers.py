"""What a WUS sender sees: the start-up banner, the WSDL, and the acknowledgement envelope."""

from __future__ import annotations

import httpx
from lxml import etree

from tests.support.gateway import GatewayProcess
from tests.support.soap import SOAP11, WSA, envelope, headers_for, sample, with_kenmerk

ACK_NS = "urn:nld:digibridge:wus:1"


def test_serve_says_where_it_listens(shared_gateway: GatewayProcess) -> None:
    banner = shared_gateway.log()
    assert f"listening on http://127.0.0.1:{shared_gateway.port}" in banner
    assert f"{shared_gateway.url}/wus/digilevering?wsdl" in banner
    assert "loopback only" in banner


def test_wsdl_names_the_address_it_was_fetched_from(shared_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{shared_gateway.wus_url}?wsdl")
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    locations = {element.get("location") for element in root.iter() if element.get("location")}
    assert locations == {shared_gateway.wus_url}
    assert httpx.get(f"{shared_gateway.wus_url}?xsd=../../etc/passwd").status_code == 404
    assert httpx.get(shared_gateway.wus_url).status_code == 404


def test_acknowledgement_carries_ws_addressing_answer_headers(
    shared_gateway: GatewayProcess,
) -> None:
    document = with_kenmerk(sample("bag-pand-nieuw.xml"))
    request = envelope(document, message_id="urn:uuid:5e1c1f7a-9d7e-4f00-8a55-5a1b2c3d4e5f")
    response = httpx.post(shared_gateway.wus_url, content=request, headers=headers_for(document))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    root = etree.fromstring(response.content)
    header = root.find(f"{{{SOAP11}}}Header")
    assert header is not None
    assert header.findtext(f"{{{WSA}}}RelatesTo") == "urn:uuid:5e1c1f7a-9d7e-4f00-8a55-5a1b2c3d4e5f"
    assert header.findtext(f"{{{WSA}}}Action", "").endswith("Response")
    message_id = header.findtext(f"{{{WSA}}}MessageID", "")
    assert message_id.startswith("urn:uuid:")
    assert message_id != "urn:uuid:5e1c1f7a-9d7e-4f00-8a55-5a1b2c3d4e5f"
    ack = root.find(f"{{{SOAP11}}}Body/{{{ACK_NS}}}Ontvangstbevestiging")
    assert ack is not None
    assert ack.findtext(f"{{{ACK_NS}}}duplicaat") == "false"
    assert len(ack.findall(f"{{{ACK_NS}}}eventIds/{{{ACK_NS}}}eventId")) == 1

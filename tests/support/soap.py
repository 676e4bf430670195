"""Building WUS SOAP requests around DigiLevering body documents, for raw-HTTP tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from lxml import etree

from digibridge.wus.digilevering import operation_for
from tests.support.events import ack_event_ids

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

_UNSET = object()


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def body_element(document: bytes) -> etree._Element:
    return etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))


def action_for(document: bytes) -> str:
    return operation_for(body_element(document)).action


def envelope(
    document: bytes,
    *,
    soap12: bool = False,
    to: object = "http://127.0.0.1/wus/digilevering",
    action: object = _UNSET,
    message_id: object = _UNSET,
    from_oin: str | None = None,
    extra_headers: list[etree._Element] | None = None,
) -> bytes:
    """A request envelope; pass None for a header to leave it out."""
    ns = SOAP12 if soap12 else SOAP11
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns, "wsa": WSA})
    header = etree.SubElement(env, f"{{{ns}}}Header")
    values = {
        "To": to,
        "Action": action_for(document) if action is _UNSET else action,
        "MessageID": f"urn:uuid:{uuid.uuid4()}" if message_id is _UNSET else message_id,
    }
    for name, value in values.items():
        if value is not None:
            etree.SubElement(header, f"{{{WSA}}}{name}").text = str(value)
    if from_oin:
        sender = etree.SubElement(header, f"{{{WSA}}}From")
        address = etree.SubElement(sender, f"{{{WSA}}}Address")
        address.text = f"{WSA}/anonymous?OIN={from_oin}"
    for extra in extra_headers or []:
        header.append(extra)
    body = etree.SubElement(env, f"{{{ns}}}Body")
    body.append(body_element(document))
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def headers_for(document: bytes, *, soap12: bool = False) -> dict[str, str]:
    action = action_for(document)
    if soap12:
        return {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}
    return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}


def fault_code(response_body: bytes) -> str:
    """The DK code of a Fault answer, from faultstring (1.1) or Reason/Text (1.2)."""
    root = etree.fromstring(response_body)
    text = root.findtext(".//faultstring") or root.findtext(f".//{{{SOAP12}}}Text") or ""
    return text.split(":", 1)[0]


def with_kenmerk(document: bytes, kenmerk: str | None = None) -> bytes:
    """The document with a new DigiLevering kenmerk, so it counts as a different message."""
    root = body_element(document)
    value = kenmerk or f"{uuid.uuid4()}@digilevering.nl"
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname in (
            "kenmerkDigilevering",
            "KenmerkLogius",
        ):
            element.text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def post_levering(wus_url: str, document: bytes) -> list[str]:
    """POST a DigiLevering body document as a raw SOAP 1.1 request; the acknowledged event ids."""
    response = httpx.post(
        wus_url, content=envelope(document, to=wus_url), headers=headers_for(document), timeout=30
    )
    assert response.status_code == 200, response.text
    return ack_event_ids(response.content)

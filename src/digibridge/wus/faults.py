"""SOAP Faults with the Digikoppeling technical error codes (Best Practices WUS).

Raised anywhere on the inbound side; turned into a SOAP 1.1 or 1.2 Fault envelope in one place
(`render_fault`), answered in the SOAP version of the request.
"""

from __future__ import annotations

import enum

from lxml import etree

from digibridge.errors import DigibridgeError

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
#: Namespace of our fault detail element.
FAULT_DETAIL_NS = "urn:nld:digibridge:wus:fault:1"


class SoapVersion(enum.Enum):
    SOAP11 = SOAP11_NS
    SOAP12 = SOAP12_NS

    @property
    def content_type(self) -> str:
        if self is SoapVersion.SOAP11:
            return "text/xml; charset=utf-8"
        return "application/soap+xml; charset=utf-8"


class DkCode(enum.StrEnum):
    """Technical error codes advised by Digikoppeling Best Practices WUS."""

    INVALID_ENVELOPE = "0001"
    NOT_AUTHORISED = "0002"
    INVALID_SOAPACTION = "0003"
    NOT_XSD_CONFORMANT = "0004"
    TO_MISSING = "0005"
    ACTION_MISSING = "0006"
    MESSAGE_ID_MISSING = "0007"
    RELATES_TO_MISSING = "0008"
    NOT_UTF8 = "0009"
    FOREIGN_HEADER = "0010"
    WRONG_HEADER_VALUE = "0011"
    #: Not in the WUS list: a conformant message digibridge cannot process (no mapping for it).
    #: Numbered after DigiMelding's DK0050 "processing error"; a Server fault, so the sender
    #: keeps the message and may retry once the mapping exists.
    PROCESSING_ERROR = "0050"
    SERVICE_UNAVAILABLE = "0051"


class SoapFault(DigibridgeError):
    """A request digibridge refuses, answered as a SOAP Fault.

    `client` says whose fault it is (SOAP 1.1 `Client`/`Server`, 1.2 `Sender`/`Receiver`);
    `element` names the offending Body element when the Body caused it (then `detail` is sent).
    """

    def __init__(
        self,
        code: DkCode,
        reason: str,
        *,
        client: bool = True,
        element: str | None = None,
        http_status: int = 500,
    ) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason
        self.client = client
        self.element = element
        self.http_status = http_status


def render_fault(fault: SoapFault, version: SoapVersion) -> bytes:
    """Serialise `fault` as a complete SOAP envelope of `version`."""
    env_ns = version.value
    envelope = etree.Element(f"{{{env_ns}}}Envelope", nsmap={"soap": env_ns})
    body = etree.SubElement(envelope, f"{{{env_ns}}}Body")
    fault_el = etree.SubElement(body, f"{{{env_ns}}}Fault")
    text = f"{fault.code.value}: {fault.reason}"
    if version is SoapVersion.SOAP11:
        side = "Client" if fault.client else "Server"
        code_el = etree.SubElement(fault_el, "faultcode")
        code_el.text = f"soap:{side}.{fault.code.value}"
        etree.SubElement(fault_el, "faultstring").text = text
        etree.SubElement(fault_el, "faultactor").text = "digibridge"
        detail_parent = fault_el if fault.element else None
        detail_tag = "detail"
    else:
        code_el = etree.SubElement(fault_el, f"{{{env_ns}}}Code")
        value = etree.SubElement(code_el, f"{{{env_ns}}}Value")
        value.text = "soap:Sender" if fault.client else "soap:Receiver"
        sub = etree.SubElement(code_el, f"{{{env_ns}}}Subcode")
        sub_value = etree.SubElement(sub, f"{{{env_ns}}}Value", nsmap={"dk": FAULT_DETAIL_NS})
        sub_value.text = f"dk:DK{fault.code.value}"
        reason = etree.SubElement(fault_el, f"{{{env_ns}}}Reason")
        reason_text = etree.SubElement(reason, f"{{{env_ns}}}Text")
        reason_text.set("{http://www.w3.org/XML/1998/namespace}lang", "nl")
        reason_text.text = text
        detail_parent = fault_el if fault.element else None
        detail_tag = f"{{{env_ns}}}Detail"
    if detail_parent is not None:
        detail = etree.SubElement(detail_parent, detail_tag)
        info = etree.SubElement(
            detail, f"{{{FAULT_DETAIL_NS}}}FoutDetail", nsmap={"dk": FAULT_DETAIL_NS}
        )
        etree.SubElement(info, f"{{{FAULT_DETAIL_NS}}}Foutcode").text = fault.code.value
        etree.SubElement(info, f"{{{FAULT_DETAIL_NS}}}Element").text = fault.element
        etree.SubElement(info, f"{{{FAULT_DETAIL_NS}}}Omschrijving").text = fault.reason
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

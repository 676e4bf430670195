"""The SOAP envelope of a WUS request: version, WS-Addressing headers and the one Body child.

Everything Digikoppeling WUS says about the envelope is checked here, each refusal a `SoapFault`
with its DK code; what passes is a `SoapRequest` the rest of the inbound side can trust.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from digibridge.wus._xml import XmlRefused, check_utf8, parse_untrusted
from digibridge.wus.addressing import (
    ANONYMOUS,
    WSA_2004_NS,
    WSA_NS,
    AddressingHeaders,
    response_headers,
)
from digibridge.wus.faults import DkCode, SoapFault, SoapVersion
from digibridge.wus.wsse.names import WSSE_NS, XENC_NS

_ALLOWED_HEADER_NAMESPACES = frozenset({WSA_NS, WSSE_NS})
#: WS-Addressing headers a request may carry, each at most once.
_WSA_HEADERS = frozenset({"To", "Action", "MessageID", "From", "ReplyTo", "FaultTo", "RelatesTo"})
_SOAP_CONTENT_TYPES = frozenset({"text/xml", "application/soap+xml", "application/xml"})


@dataclass(frozen=True)
class SoapRequest:
    version: SoapVersion
    addressing: AddressingHeaders
    body_child: etree._Element
    #: The whole parsed envelope (WS-Security verifies signatures over it).
    envelope: etree._Element
    #: The `wsse:Security` header block, when the request has one.
    security: etree._Element | None = None


def version_from_content_type(content_type: str | None) -> SoapVersion:
    """The SOAP version a Fault should be written in before the envelope could be read."""
    if content_type and content_type.split(";")[0].strip().lower() == "application/soap+xml":
        return SoapVersion.SOAP12
    return SoapVersion.SOAP11


def _content_type_parts(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    media, *params = content_type.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), parsed


def check_http(content_type: str | None) -> None:
    """Refuse bodies whose HTTP Content-Type says they are not SOAP or not UTF-8."""
    media, params = _content_type_parts(content_type)
    if media not in _SOAP_CONTENT_TYPES:
        raise SoapFault(
            DkCode.INVALID_ENVELOPE,
            f"Content-Type {media or '(none)'!r} is not a SOAP media type "
            "(text/xml for SOAP 1.1, application/soap+xml for SOAP 1.2)",
            http_status=415,
        )
    charset = params.get("charset")
    if charset and charset.lower() not in ("utf-8", "utf8"):
        raise SoapFault(DkCode.NOT_UTF8, f"charset {charset!r} is not UTF-8")


def parse_request(
    data: bytes,
    *,
    content_type: str | None,
    soap_action: str | None,
    max_depth: int,
    ws_security: bool = False,
) -> SoapRequest:
    """Read and check a WUS request envelope; raise SoapFault for anything not conformant.

    Without `ws_security` (no registry uses profile 2W-be-S) a `wsse:Security` header with
    mustUnderstand is refused here; with it, the header is returned for the per-registry check.
    """
    check_http(content_type)
    try:
        check_utf8(data)
        root = parse_untrusted(data, max_depth=max_depth)
    except XmlRefused as refused:
        code = DkCode.NOT_UTF8 if refused.kind == "encoding" else DkCode.INVALID_ENVELOPE
        raise SoapFault(code, refused.reason) from None

    version = _envelope_version(root)
    header, body = _header_and_body(root, version)
    addressing, security = _addressing(header, ws_security=ws_security)
    _check_soap_action(version, content_type, soap_action, addressing.action)
    children = [child for child in body if isinstance(child.tag, str)]
    if ws_security:
        _refuse_encryption(children, security)
    if len(children) != 1:
        raise SoapFault(
            DkCode.INVALID_ENVELOPE,
            f"the SOAP Body must hold exactly one element, it holds {len(children)}",
            element="Body",
        )
    return SoapRequest(
        version=version,
        addressing=addressing,
        body_child=children[0],
        envelope=root,
        security=security,
    )


def _refuse_encryption(
    body_children: list[etree._Element], security: etree._Element | None
) -> None:
    """Profile 2W-be-SE (an encrypted Body) is not supported: say so, not "unknown element"."""
    encrypted = any(etree.QName(child).namespace == XENC_NS for child in body_children) or (
        security is not None
        and any(
            isinstance(child.tag, str) and etree.QName(child).namespace == XENC_NS
            for child in security
        )
    )
    if encrypted:
        raise SoapFault(
            DkCode.WRONG_HEADER_VALUE,
            "profile 2W-be-SE (encrypted Body) is not supported by this endpoint; "
            "send the message signed but not encrypted (profile 2W-be-S)",
        )


def _envelope_version(root: etree._Element) -> SoapVersion:
    qname = etree.QName(root)
    if qname.localname == "Envelope":
        for version in SoapVersion:
            if qname.namespace == version.value:
                return version
    raise SoapFault(
        DkCode.INVALID_ENVELOPE,
        f"root element {root.tag!r} is not a SOAP 1.1 or SOAP 1.2 Envelope",
    )


def _header_and_body(
    root: etree._Element, version: SoapVersion
) -> tuple[etree._Element | None, etree._Element]:
    ns = version.value
    header: etree._Element | None = None
    body: etree._Element | None = None
    for child in root:
        if not isinstance(child.tag, str):
            continue
        if child.tag == f"{{{ns}}}Header" and header is None and body is None:
            header = child
        elif child.tag == f"{{{ns}}}Body" and body is None:
            body = child
        else:
            raise SoapFault(
                DkCode.INVALID_ENVELOPE,
                f"unexpected element {child.tag!r} in the Envelope (expected Header?, Body)",
            )
    if body is None:
        raise SoapFault(DkCode.INVALID_ENVELOPE, "the Envelope has no Body")
    return header, body


def _addressing(
    header: etree._Element | None, *, ws_security: bool
) -> tuple[AddressingHeaders, etree._Element | None]:
    found: dict[str, str] = {}
    security: etree._Element | None = None
    for block in header if header is not None else ():
        if not isinstance(block.tag, str):
            continue
        qname = etree.QName(block)
        if qname.namespace == WSA_2004_NS:
            raise SoapFault(
                DkCode.FOREIGN_HEADER,
                f"header {qname.localname} uses the 2004/08 WS-Addressing namespace; "
                f"Digikoppeling requires WS-Addressing 1.0 ({WSA_NS})",
            )
        if qname.namespace not in _ALLOWED_HEADER_NAMESPACES:
            raise SoapFault(
                DkCode.FOREIGN_HEADER,
                f"header {block.tag!r} is not allowed: only WS-Addressing and WS-Security",
            )
        if qname.namespace == WSSE_NS:
            security = _security_block(block, security, ws_security=ws_security)
            continue
        if qname.localname not in _WSA_HEADERS:
            raise SoapFault(DkCode.WRONG_HEADER_VALUE, f"unknown header wsa:{qname.localname}")
        if qname.localname in found:
            raise SoapFault(DkCode.WRONG_HEADER_VALUE, f"wsa:{qname.localname} occurs twice")
        found[qname.localname] = _header_value(block)

    for name, code in (
        ("To", DkCode.TO_MISSING),
        ("Action", DkCode.ACTION_MISSING),
        ("MessageID", DkCode.MESSAGE_ID_MISSING),
    ):
        if not found.get(name):
            raise SoapFault(code, f"the WS-Addressing header wsa:{name} is missing or empty")
    reply_to = found.get("ReplyTo")
    if reply_to and reply_to != ANONYMOUS:
        raise SoapFault(
            DkCode.WRONG_HEADER_VALUE,
            f"wsa:ReplyTo must be omitted or {ANONYMOUS}: WUS answers on the same connection",
        )
    addressing = AddressingHeaders(
        to=found["To"],
        action=found["Action"],
        message_id=found["MessageID"],
        from_address=found.get("From"),
        reply_to=reply_to,
    )
    return addressing, security


def _header_value(block: etree._Element) -> str:
    """Text of a simple header, or of the `wsa:Address` of an endpoint reference."""
    address = block.find(f"{{{WSA_NS}}}Address")
    element = address if address is not None else block
    return (element.text or "").strip()


def _security_block(
    block: etree._Element, found: etree._Element | None, *, ws_security: bool
) -> etree._Element | None:
    """The one wsse:Security block when WS-Security is in use; else refused as before."""
    if not ws_security:
        _check_security_header(block)
        return None
    if etree.QName(block).localname != "Security" or found is not None:
        raise SoapFault(
            DkCode.WRONG_HEADER_VALUE,
            f"header {block.tag} is not allowed: one wsse:Security header at most",
        )
    return block


def must_understand(block: etree._Element) -> bool:
    """Whether a header block demands to be understood (`mustUnderstand` 1 or true)."""
    return any(
        etree.QName(name).localname == "mustUnderstand" and value.strip() in ("1", "true")
        for name, value in block.attrib.items()
    )


def _check_security_header(block: etree._Element) -> None:
    if must_understand(block):
        raise SoapFault(
            DkCode.FOREIGN_HEADER,
            "WS-Security (profile 2W-be-S) is not enabled on this endpoint; "
            "send without a wsse:Security header (profile 2W-be)",
        )


def _check_soap_action(
    version: SoapVersion, content_type: str | None, soap_action: str | None, action: str
) -> None:
    if version is SoapVersion.SOAP11:
        given = (soap_action or "").strip()
    else:
        given = _content_type_parts(content_type)[1].get("action", "")
    given = given.strip('"')
    if given and given != action:
        raise SoapFault(
            DkCode.INVALID_SOAPACTION,
            f"SOAPAction {given!r} differs from wsa:Action {action!r}",
        )


def response_envelope(
    version: SoapVersion,
    body_child: etree._Element,
    *,
    action: str,
    relates_to: str,
    message_id: str,
    secure: Callable[[etree._Element], None] | None = None,
) -> bytes:
    """A response envelope with the WS-Addressing answer headers around `body_child`;
    `secure` may add a WS-Security header (it signs the envelope in place)."""
    ns = version.value
    envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns, "wsa": WSA_NS})
    header = etree.SubElement(envelope, f"{{{ns}}}Header")
    response_headers(header, action=action, relates_to=relates_to, message_id=message_id)
    etree.SubElement(envelope, f"{{{ns}}}Body").append(body_child)
    if secure is not None:
        secure(envelope)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

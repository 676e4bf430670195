"""WS-Security by an independent implementation: zeep's `zeep.wsse.signature`, backed by
xmlsec (libxmlsec1), to sign what digibridge must accept and to verify what digibridge signs.

zeep's stock `BinarySignature` signs only the Body and the Timestamp; Digikoppeling wants every
WS-Addressing header signed too, so `zeep_sign` drives zeep's own signing steps (its key
loading, `_sign_node` and security-header helpers, xmlsec templates) over all the parts.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import xmlsec
from cryptography.hazmat.primitives import serialization
from lxml import etree
from lxml.etree import QName
from zeep import ns
from zeep.wsse import signature as zeep_signature
from zeep.wsse.utils import WSU, ensure_id, get_security_header, get_timestamp

from tests.support.pki import Party

WSA = "http://www.w3.org/2005/08/addressing"
DS = "http://www.w3.org/2000/09/xmldsig#"
WSSE11 = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)


def _prepare(envelope: etree._Element, now: datetime | None) -> etree._Element:
    """zeep's Security header with a Timestamp (zeep adds none of its own when signing)."""
    moment = now or datetime.now(UTC)
    security = get_security_header(envelope)
    security.set(f"{{{QName(envelope).namespace}}}mustUnderstand", "1")
    security.append(
        WSU.Timestamp(
            WSU.Created(get_timestamp(moment)),
            WSU.Expires(get_timestamp(moment + timedelta(minutes=5))),
        )
    )
    return security


def zeep_stock_sign(
    envelope_bytes: bytes,
    party: Party,
    *,
    signature_method: object = xmlsec.Transform.RSA_SHA256,
    digest_method: object = xmlsec.Transform.SHA256,
    binary: bool = True,
) -> bytes:
    """zeep's own `BinarySignature` (or `Signature`) as is: signs Body and Timestamp only."""
    envelope = etree.fromstring(envelope_bytes)
    _prepare(envelope, None)
    kind = zeep_signature.BinarySignature if binary else zeep_signature.Signature
    kind(
        str(party.key),
        str(party.certificate),
        signature_method=signature_method,
        digest_method=digest_method,
    ).apply(envelope, {})
    return etree.tostring(envelope)


def zeep_sign(
    envelope_bytes: bytes,
    party: Party,
    *,
    leave_out: Collection[str] = (),
    c14n: object = xmlsec.Transform.EXCL_C14N,
    now: datetime | None = None,
) -> bytes:
    """Sign Body, Timestamp and every WS-Addressing header (minus `leave_out`, by local name)
    with zeep's signing steps: RSA-SHA256, SHA-256, exclusive C14N, BinarySecurityToken."""
    envelope = etree.fromstring(envelope_bytes)
    soap_ns = QName(envelope).namespace
    security = _prepare(envelope, now)
    timestamp = security.find(QName(ns.WSU, "Timestamp"))
    key = zeep_signature._make_sign_key(
        party.key.read_bytes(), party.certificate.read_bytes(), None
    )
    signature = xmlsec.template.create(envelope, c14n, xmlsec.Transform.RSA_SHA256)
    key_info = xmlsec.template.ensure_key_info(signature)
    x509_data = xmlsec.template.add_x509_data(key_info)
    xmlsec.template.x509_data_add_certificate(x509_data)
    security.insert(0, signature)
    context = xmlsec.SignatureContext()
    context.key = key
    parts = {"Body": envelope.find(f"{{{soap_ns}}}Body"), "Timestamp": timestamp}
    for header in envelope.find(f"{{{soap_ns}}}Header"):
        if QName(header).namespace == WSA:
            parts[QName(header).localname] = header
    for name, node in parts.items():
        if name not in leave_out:
            zeep_signature._sign_node(context, signature, node, xmlsec.Transform.SHA256)
    context.sign(signature)
    # As zeep's BinarySignature: the certificate moves into a BinarySecurityToken that the
    # KeyInfo's SecurityTokenReference references directly.
    token_reference = etree.SubElement(key_info, QName(ns.WSSE, "SecurityTokenReference"))
    token = etree.Element(
        QName(ns.WSSE, "BinarySecurityToken"), {"ValueType": X509V3, "EncodingType": BASE64}
    )
    etree.SubElement(
        token_reference,
        QName(ns.WSSE, "Reference"),
        {"ValueType": X509V3, "URI": "#" + ensure_id(token)},
    )
    token.text = x509_data.find(QName(ns.DS, "X509Certificate")).text
    security.insert(1, token)
    key_info.remove(x509_data)
    return etree.tostring(envelope)


def xmlsec_verify(envelope_bytes: bytes, party: Party) -> None:
    """zeep's verification (xmlsec) of a signed envelope; raises SignatureVerificationFailed."""
    certificate = party.issued.certificate.public_bytes(serialization.Encoding.PEM)
    zeep_signature.MemorySignature(b"", certificate).verify(etree.fromstring(envelope_bytes))


def signature_value(envelope_bytes: bytes) -> str:
    value = etree.fromstring(envelope_bytes).findtext(f".//{{{DS}}}SignatureValue") or ""
    return "".join(value.split())


def confirmation_values(envelope_bytes: bytes) -> list[str]:
    root = etree.fromstring(envelope_bytes)
    return [
        "".join((element.get("Value") or "").split())
        for element in root.iter(f"{{{WSSE11}}}SignatureConfirmation")
    ]

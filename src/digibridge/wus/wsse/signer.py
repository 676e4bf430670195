"""Signing a SOAP envelope for Digikoppeling 2W-be-S: what digibridge sends and answers.

One `wsse:Security` header (mustUnderstand) holding a `wsu:Timestamp`, the X.509 certificate as
`wsse:BinarySecurityToken`, optional `wsse11:SignatureConfirmation`s, and a `ds:Signature`
(exclusive C14N, RSA-SHA256, SHA-256 digests) with one Reference each to the Body, every
WS-Addressing header, the Timestamp and every SignatureConfirmation; its KeyInfo references the
token directly. Reused by the inbound answer, `digibridge send` and the DigiMelding client.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.signer import XMLSigner

from digibridge.wus.addressing import WSA_NS
from digibridge.wus.certificates import SigningCredentials
from digibridge.wus.wsse.names import (
    BASE64_BINARY,
    DS_NS,
    EXC_C14N,
    WSSE11_NS,
    WSSE_NS,
    WSU_ID,
    WSU_NS,
    X509V3_VALUE_TYPE,
    format_time,
    qname,
)

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def _new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4()}"


def _ensure_id(element: etree._Element, kind: str) -> str:
    existing = element.get(WSU_ID)
    if existing:
        return existing
    value = _new_id(kind)
    element.set(WSU_ID, value)
    return value


class EnvelopeSigner:
    """Signs SOAP envelopes with one key and certificate (`SigningCredentials`)."""

    def __init__(
        self, credentials: SigningCredentials, *, lifetime: timedelta = timedelta(minutes=5)
    ) -> None:
        self._credentials = credentials
        self._lifetime = lifetime
        self._token = base64.b64encode(
            credentials.certificate.public_bytes(serialization.Encoding.DER)
        ).decode("ascii")

    @property
    def credentials(self) -> SigningCredentials:
        return self._credentials

    def sign(
        self, envelope: etree._Element, *, now: datetime, confirmations: Sequence[str] = ()
    ) -> str:
        """Add the WS-Security header to `envelope` (in place); the new SignatureValue.

        `confirmations` are signature values of the request being answered (WSS 1.1
        SignatureConfirmation); each is echoed, signed, in the answer.
        """
        soap_ns = etree.QName(envelope).namespace or SOAP11_NS
        header = envelope.find(qname(soap_ns, "Header"))
        if header is None:
            header = etree.Element(qname(soap_ns, "Header"))
            envelope.insert(0, header)
        body = envelope.find(qname(soap_ns, "Body"))
        if body is None:
            raise ValueError("a SOAP envelope without a Body cannot be signed")
        security = header.find(qname(WSSE_NS, "Security"))
        if security is None:
            security = etree.SubElement(header, qname(WSSE_NS, "Security"))
        security.set(qname(soap_ns, "mustUnderstand"), "1" if soap_ns == SOAP11_NS else "true")

        timestamp = etree.SubElement(security, qname(WSU_NS, "Timestamp"))
        _ensure_id(timestamp, "TS")
        etree.SubElement(timestamp, qname(WSU_NS, "Created")).text = format_time(now)
        etree.SubElement(timestamp, qname(WSU_NS, "Expires")).text = format_time(
            now + self._lifetime
        )
        token = etree.SubElement(
            security,
            qname(WSSE_NS, "BinarySecurityToken"),
            {"ValueType": X509V3_VALUE_TYPE, "EncodingType": BASE64_BINARY},
        )
        token_id = _ensure_id(token, "X509")
        token.text = self._token
        confirmation_elements = []
        for value in confirmations:
            element = etree.SubElement(
                security,
                qname(WSSE11_NS, "SignatureConfirmation"),
                {"Value": value},
            )
            _ensure_id(element, "SC")
            confirmation_elements.append(element)

        targets = [
            (body, "Body"),
            *(
                (block, etree.QName(block).localname)
                for block in header
                if isinstance(block.tag, str) and etree.QName(block).namespace == WSA_NS
            ),
            (timestamp, "TS"),
            *((element, "SC") for element in confirmation_elements),
        ]
        references = [f"#{_ensure_id(element, kind)}" for element, kind in targets]
        # Declare the prefixes once at the top, so every signed part reads wsu:Id, not ns0:Id.
        etree.cleanup_namespaces(
            envelope, top_nsmap={"wsse": WSSE_NS, "wsu": WSU_NS, "wsse11": WSSE11_NS}
        )

        key_info = etree.Element(qname(DS_NS, "KeyInfo"), nsmap={"ds": DS_NS})
        token_reference = etree.SubElement(key_info, qname(WSSE_NS, "SecurityTokenReference"))
        etree.SubElement(
            token_reference,
            qname(WSSE_NS, "Reference"),
            {"URI": f"#{token_id}", "ValueType": X509V3_VALUE_TYPE},
        )
        signer = XMLSigner(
            method=SignatureConstructionMethod.detached,
            signature_algorithm=SignatureMethod.RSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=EXC_C14N,
        )
        signature = signer.sign(
            envelope, key=self._credentials.key, reference_uri=references, key_info=key_info
        )
        security.append(signature)
        return "".join((signature.findtext(qname(DS_NS, "SignatureValue")) or "").split())

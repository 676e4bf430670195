"""Verifying a WS-Security signature the way Digikoppeling 2W-be-S prescribes.

What passes: exactly one `wsse:Security` header with one `wsu:Timestamp` (Created within the
allowed skew, Expires not passed), one `ds:Signature` whose SignedInfo uses exclusive C14N and
RSA-SHA256 or stronger, whose References each use exclusive C14N and SHA-256 or stronger and
together cover the Body, every WS-Addressing header, the Timestamp and every
SignatureConfirmation, and whose key is an X.509 `wsse:BinarySecurityToken` referenced directly,
chaining to the trusted roots. The cryptography is signxml's; the structure checks around it are
ours and come first.

Signature wrapping is refused by construction: a Reference must name exactly one element in the
whole document (by any Id-like attribute), and the elements the Body, headers and Timestamp
*are* - found by position in the envelope, the ones the gateway goes on to read - must each be
among the referenced ones. A signed element moved elsewhere, a second element with the same Id
or an Id pointing elsewhere leaves an unsigned element in a place that counts: refused.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

import signxml.exceptions
from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.verifier import SignatureConfiguration, XMLVerifier

from digibridge.errors import DigibridgeError
from digibridge.wus._xml import SAFE_PARSER
from digibridge.wus.addressing import WSA_NS
from digibridge.wus.certificates import CertificateRefused, TrustStore
from digibridge.wus.oin import oin_of
from digibridge.wus.wsse.names import (
    BASE64_BINARY,
    DIGEST_METHODS,
    DS_NS,
    EXC_C14N,
    SIGNATURE_METHODS,
    WSSE11_NS,
    WSSE_NS,
    WSU_ID,
    WSU_NS,
    X509V3_VALUE_TYPE,
    XENC_NS,
    id_index,
    parse_time,
    qname,
)

_ALLOWED_SIGNATURE_METHODS = frozenset(
    method for method in SignatureMethod if method.value in SIGNATURE_METHODS
)
_ALLOWED_DIGESTS = frozenset(digest for digest in DigestAlgorithm if digest.value in DIGEST_METHODS)


class SignatureRefused(DigibridgeError):
    """A WS-Security header that does not prove what it must.

    `fault` is the WS-Security fault name (`wsse:FailedCheck`, `wsse:MessageExpired`, ...);
    `reason` is meant for a person (log, Fault string) and never holds key material.
    """

    def __init__(self, fault: str, reason: str) -> None:
        super().__init__(f"{fault}: {reason}")
        self.fault = fault
        self.reason = reason


@dataclass(frozen=True)
class VerifiedSignature:
    """What a verified signature proves."""

    certificate: x509.Certificate
    #: The OIN in the signing certificate's subject serialNumber, if any.
    oin: str | None
    #: `ds:SignatureValue` without whitespace: what the answer's SignatureConfirmation repeats.
    signature_value: str
    created: datetime
    #: Values of signed `wsse11:SignatureConfirmation` elements (in answers).
    confirmations: tuple[str, ...]


def security_header(envelope: etree._Element) -> etree._Element | None:
    """The `wsse:Security` header block, None if there is none; refused if there are several."""
    header = envelope.find(qname(etree.QName(envelope).namespace or "", "Header"))
    if header is None:
        return None
    blocks = header.findall(qname(WSSE_NS, "Security"))
    if len(blocks) > 1:
        raise SignatureRefused("wsse:InvalidSecurity", "more than one wsse:Security header")
    return blocks[0] if blocks else None


def is_signed(envelope: etree._Element) -> bool:
    security = security_header(envelope)
    return security is not None and security.find(qname(DS_NS, "Signature")) is not None


@dataclass
class _SecurityParts:
    timestamp: etree._Element
    signature: etree._Element
    tokens: dict[str, etree._Element]
    confirmations: list[etree._Element]


def verify_envelope(
    envelope: etree._Element, *, trust: TrustStore, now: datetime, max_skew: timedelta
) -> VerifiedSignature:
    """Check the WS-Security signature of a SOAP envelope; SignatureRefused says what fails."""
    soap_ns = etree.QName(envelope).namespace or ""
    header = envelope.find(qname(soap_ns, "Header"))
    body = envelope.find(qname(soap_ns, "Body"))
    security = security_header(envelope)
    if header is None or body is None or security is None:
        raise SignatureRefused("wsse:InvalidSecurity", "the message has no wsse:Security header")
    parts = _security_parts(security)
    created = _check_timestamp(parts.timestamp, now=now, max_skew=max_skew)
    references = _check_signed_info(parts.signature)
    certificate = _signing_certificate(parts.signature, parts.tokens)
    _check_coverage(
        envelope,
        references,
        required=[
            (body, "soap:Body"),
            (parts.timestamp, "wsu:Timestamp"),
            *(
                (block, f"wsa:{etree.QName(block).localname}")
                for block in header
                if isinstance(block.tag, str) and etree.QName(block).namespace == WSA_NS
            ),
            *((element, "wsse11:SignatureConfirmation") for element in parts.confirmations),
        ],
    )
    try:
        trust.verify(certificate, at=now)
    except CertificateRefused as exc:
        raise SignatureRefused("wsse:InvalidSecurityToken", exc.reason) from None
    _verify_cryptography(envelope, soap_ns, certificate, now)
    value = parts.signature.findtext(qname(DS_NS, "SignatureValue")) or ""
    return VerifiedSignature(
        certificate=certificate,
        oin=oin_of(certificate),
        signature_value="".join(value.split()),
        created=created,
        confirmations=tuple(
            "".join((element.get("Value") or "").split()) for element in parts.confirmations
        ),
    )


def _security_parts(security: etree._Element) -> _SecurityParts:
    timestamps: list[etree._Element] = []
    signatures: list[etree._Element] = []
    tokens: dict[str, etree._Element] = {}
    confirmations: list[etree._Element] = []
    for child in security:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child)
        if name.namespace == XENC_NS:
            raise SignatureRefused(
                "wsse:UnsupportedAlgorithm",
                "encryption (profile 2W-be-SE) is not supported by this endpoint; "
                "send the message signed but not encrypted (2W-be-S)",
            )
        if child.tag == qname(WSU_NS, "Timestamp"):
            timestamps.append(child)
        elif child.tag == qname(DS_NS, "Signature"):
            signatures.append(child)
        elif child.tag == qname(WSSE_NS, "BinarySecurityToken"):
            token_id = child.get(WSU_ID)
            if token_id:
                tokens[token_id] = child
        elif child.tag == qname(WSSE11_NS, "SignatureConfirmation"):
            confirmations.append(child)
        else:
            raise SignatureRefused(
                "wsse:InvalidSecurity", f"unexpected element {child.tag} in wsse:Security"
            )
    if len(timestamps) != 1:
        raise SignatureRefused(
            "wsse:InvalidSecurity",
            f"wsse:Security must hold exactly one wsu:Timestamp, it holds {len(timestamps)}",
        )
    if len(signatures) != 1:
        raise SignatureRefused(
            "wsse:InvalidSecurity",
            f"wsse:Security must hold exactly one ds:Signature, it holds {len(signatures)}",
        )
    return _SecurityParts(timestamps[0], signatures[0], tokens, confirmations)


def _check_timestamp(timestamp: etree._Element, *, now: datetime, max_skew: timedelta) -> datetime:
    created_elements = timestamp.findall(qname(WSU_NS, "Created"))
    expires_elements = timestamp.findall(qname(WSU_NS, "Expires"))
    if len(created_elements) != 1 or len(expires_elements) > 1:
        raise SignatureRefused(
            "wsse:InvalidSecurity", "wsu:Timestamp needs one wsu:Created and at most one Expires"
        )
    created = parse_time(created_elements[0].text)
    if created is None:
        raise SignatureRefused(
            "wsse:InvalidSecurity", "wsu:Created is not a date-time with a time zone"
        )
    if created > now + max_skew:
        raise SignatureRefused(
            "wsse:MessageExpired",
            f"wsu:Created {created.isoformat()} lies more than {max_skew} in the future",
        )
    if created < now - max_skew:
        raise SignatureRefused(
            "wsse:MessageExpired",
            f"wsu:Created {created.isoformat()} is more than {max_skew} old",
        )
    if expires_elements:
        expires = parse_time(expires_elements[0].text)
        if expires is None or expires <= created:
            raise SignatureRefused(
                "wsse:InvalidSecurity", "wsu:Expires is not a date-time after wsu:Created"
            )
        if now > expires:
            raise SignatureRefused(
                "wsse:MessageExpired", f"the message expired at {expires.isoformat()}"
            )
    return created


def _algorithm(parent: etree._Element, name: str) -> str:
    element = parent.find(qname(DS_NS, name))
    return (element.get("Algorithm") if element is not None else None) or "(none)"


def _check_signed_info(signature: etree._Element) -> list[str]:
    """The Reference ids, after checking every algorithm; SignatureRefused on the first misfit."""
    signed_info = signature.find(qname(DS_NS, "SignedInfo"))
    if signed_info is None:
        raise SignatureRefused("wsse:InvalidSecurity", "ds:Signature has no ds:SignedInfo")
    c14n = _algorithm(signed_info, "CanonicalizationMethod")
    if c14n != EXC_C14N:
        raise SignatureRefused(
            "wsse:UnsupportedAlgorithm",
            f"SignedInfo canonicalization {c14n} is not exclusive C14N ({EXC_C14N})",
        )
    method = _algorithm(signed_info, "SignatureMethod")
    if method not in SIGNATURE_METHODS:
        raise SignatureRefused(
            "wsse:UnsupportedAlgorithm",
            f"signature method {method} is refused: RSA with SHA-256 or stronger is required",
        )
    ids: list[str] = []
    for reference in signed_info.findall(qname(DS_NS, "Reference")):
        uri = reference.get("URI") or ""
        if not uri.startswith("#") or len(uri) < 2 or uri.startswith("#xpointer("):
            raise SignatureRefused(
                "wsse:InvalidSecurity",
                f"Reference URI {uri!r} is not a same-document #id reference",
            )
        transforms = reference.findall(f"{qname(DS_NS, 'Transforms')}/{qname(DS_NS, 'Transform')}")
        if [transform.get("Algorithm") for transform in transforms] != [EXC_C14N]:
            raise SignatureRefused(
                "wsse:UnsupportedAlgorithm",
                f"Reference {uri} must have exactly one transform, exclusive C14N",
            )
        digest = _algorithm(reference, "DigestMethod")
        if digest not in DIGEST_METHODS:
            raise SignatureRefused(
                "wsse:UnsupportedAlgorithm",
                f"digest method {digest} of Reference {uri} is refused: "
                "SHA-256 or stronger is required",
            )
        ids.append(uri[1:])
    if not ids:
        raise SignatureRefused("wsse:InvalidSecurity", "ds:SignedInfo has no ds:Reference")
    return ids


def _signing_certificate(
    signature: etree._Element, tokens: dict[str, etree._Element]
) -> x509.Certificate:
    """The X.509 BinarySecurityToken the KeyInfo references directly."""
    references = signature.findall(
        f"{qname(DS_NS, 'KeyInfo')}/{qname(WSSE_NS, 'SecurityTokenReference')}"
        f"/{qname(WSSE_NS, 'Reference')}"
    )
    if len(references) != 1:
        raise SignatureRefused(
            "wsse:SecurityTokenUnavailable",
            "ds:KeyInfo must hold one wsse:SecurityTokenReference with a direct wsse:Reference "
            "to an X.509 wsse:BinarySecurityToken",
        )
    uri = references[0].get("URI") or ""
    token = tokens.get(uri[1:]) if uri.startswith("#") else None
    if token is None:
        raise SignatureRefused(
            "wsse:SecurityTokenUnavailable",
            f"the wsse:Reference {uri!r} names no BinarySecurityToken in wsse:Security",
        )
    if token.get("ValueType") != X509V3_VALUE_TYPE or token.get("EncodingType", BASE64_BINARY) != (
        BASE64_BINARY
    ):
        raise SignatureRefused(
            "wsse:UnsupportedSecurityToken",
            "the BinarySecurityToken is not a Base64 X.509 v3 certificate",
        )
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join((token.text or "").split())))
    except (ValueError, binascii.Error):
        raise SignatureRefused(
            "wsse:InvalidSecurityToken", "the BinarySecurityToken is not a readable certificate"
        ) from None


def _check_coverage(
    envelope: etree._Element,
    reference_ids: list[str],
    *,
    required: list[tuple[etree._Element, str]],
) -> None:
    index = id_index(envelope)
    covered: list[etree._Element] = []
    for reference_id in reference_ids:
        targets = index.get(reference_id, [])
        if len(targets) != 1:
            what = "no element" if not targets else f"{len(targets)} elements"
            raise SignatureRefused(
                "wsse:InvalidSecurity", f"Reference #{reference_id} names {what}; it must name one"
            )
        covered.append(targets[0])
    missing = [name for element, name in required if not any(element is c for c in covered)]
    if missing:
        raise SignatureRefused(
            "wsse:FailedCheck", f"the signature does not cover {', '.join(missing)}"
        )


def _verify_cryptography(
    envelope: etree._Element, soap_ns: str, certificate: x509.Certificate, now: datetime
) -> None:
    config = SignatureConfiguration(
        location=f"./{{{soap_ns}}}Header/{{{WSSE_NS}}}Security/",
        expect_references=True,
        signature_methods=_ALLOWED_SIGNATURE_METHODS,
        digest_algorithms=_ALLOWED_DIGESTS,
        verification_time=now,
    )
    try:
        XMLVerifier().verify(
            envelope, x509_cert=certificate, expect_config=config, parser=SAFE_PARSER
        )
    except signxml.exceptions.InvalidDigest as exc:
        raise SignatureRefused("wsse:FailedCheck", f"a signed part was changed: {exc}") from None
    except signxml.exceptions.InvalidCertificate as exc:
        raise SignatureRefused("wsse:InvalidSecurityToken", str(exc)) from None
    except signxml.exceptions.InvalidSignature as exc:
        raise SignatureRefused(
            "wsse:FailedCheck", f"the signature does not verify: {exc}"
        ) from None
    except signxml.exceptions.SignXMLException as exc:
        raise SignatureRefused("wsse:InvalidSecurity", f"unusable signature: {exc}") from None

"""WS-Security (2W-be-S) signatures: interoperability with zeep/xmlsec in both directions,
tampering, signature wrapping, algorithms, timestamps and signing certificates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import xmlsec
from lxml import etree

from digibridge.wus.certificates import TrustStore
from digibridge.wus.wsse import EnvelopeSigner, SignatureRefused, verify_envelope
from digibridge.wus.wsse.names import WSU_ID, WSU_NS
from tests.support.pki import BRP_OIN, LocalPki
from tests.support.soap import SOAP11, SOAP12, WSA, envelope, sample
from tests.support.wsse import (
    DS,
    confirmation_values,
    signature_value,
    xmlsec_verify,
    zeep_sign,
    zeep_stock_sign,
)

SKEW = timedelta(minutes=5)


def request(soap12: bool = False) -> bytes:
    return envelope(sample("brp-verhuizing.xml"), soap12=soap12, from_oin=BRP_OIN)


def verify(
    data: bytes, trust: TrustStore, *, now: datetime | None = None, skew: timedelta = SKEW
) -> object:
    return verify_envelope(
        etree.fromstring(data), trust=trust, now=now or datetime.now(UTC), max_skew=skew
    )


def refused(
    data: bytes, trust: TrustStore, *, now: datetime | None = None, skew: timedelta = SKEW
) -> SignatureRefused:
    with pytest.raises(SignatureRefused) as caught:
        verify(data, trust, now=now, skew=skew)
    return caught.value


def digibridge_sign(pki: LocalPki, data: bytes, *, confirmations: tuple[str, ...] = ()) -> bytes:
    root = etree.fromstring(data)
    EnvelopeSigner(pki["brp"].credentials).sign(
        root, now=datetime.now(UTC), confirmations=confirmations
    )
    return etree.tostring(root)


# ---- interoperability ---------------------------------------------------------------------


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_message_signed_by_zeep_verifies(pki: LocalPki, soap12: bool) -> None:
    verified = verify(zeep_sign(request(soap12), pki["brp"]), pki.trust())
    assert verified.oin == BRP_OIN  # type: ignore[attr-defined]


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_message_signed_by_digibridge_verifies_with_xmlsec(pki: LocalPki, soap12: bool) -> None:
    signed = digibridge_sign(pki, request(soap12), confirmations=("c2lnbmF0dXJl",))
    xmlsec_verify(signed, pki["brp"])
    verified = verify(signed, pki.trust())
    assert verified.confirmations == ("c2lnbmF0dXJl",)  # type: ignore[attr-defined]
    assert confirmation_values(signed) == ["c2lnbmF0dXJl"]


def test_digibridge_signs_every_part_with_exclusive_c14n_and_sha256(pki: LocalPki) -> None:
    root = etree.fromstring(digibridge_sign(pki, request()))
    signed_info = root.find(f".//{{{DS}}}SignedInfo")
    assert signed_info is not None
    algorithms = {element.get("Algorithm") for element in signed_info.iter()}
    assert algorithms == {
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
        None,
    }
    referenced = {ref.get("URI", "")[1:] for ref in signed_info.iter(f"{{{DS}}}Reference")}
    signed_names = {
        etree.QName(element).localname
        for element in root.iter()
        if element.get(WSU_ID) in referenced
    }
    assert signed_names == {"Body", "To", "Action", "MessageID", "From", "Timestamp"}


def test_zeeps_stock_signature_leaves_out_the_addressing_headers_and_is_refused(
    pki: LocalPki,
) -> None:
    """zeep's BinarySignature signs only Body and Timestamp: valid (xmlsec says so), but a
    Digikoppeling receiver must refuse it."""
    signed = zeep_stock_sign(request(), pki["brp"])
    xmlsec_verify(signed, pki["brp"])
    problem = refused(signed, pki.trust())
    assert problem.fault == "wsse:FailedCheck"
    assert "wsa:To, wsa:Action, wsa:MessageID, wsa:From" in problem.reason


@pytest.mark.parametrize("part", ["Body", "Timestamp", "To", "Action", "MessageID", "From"])
def test_a_valid_signature_that_leaves_out_one_part_is_refused(pki: LocalPki, part: str) -> None:
    signed = zeep_sign(request(), pki["brp"], leave_out={part})
    xmlsec_verify(signed, pki["brp"])
    problem = refused(signed, pki.trust())
    assert "does not cover" in problem.reason
    assert part in problem.reason


# ---- tampering ----------------------------------------------------------------------------

TAMPERINGS: dict[str, Callable[[etree._Element], None]] = {
    "body-text": lambda root: _set_text(root, ".//kenmerkLV", "BRP-vervalst"),
    "wsa-to": lambda root: _set_text(root, f".//{{{WSA}}}To", "http://evil.example/"),
    "wsa-message-id": lambda root: _set_text(root, f".//{{{WSA}}}MessageID", "urn:uuid:0"),
    "timestamp": lambda root: _set_text(
        root, f".//{{{WSU_NS}}}Created", datetime.now(UTC).isoformat()
    ),
}


def _set_text(root: etree._Element, path: str, text: str) -> None:
    element = root.find(path)
    assert element is not None, path
    element.text = text


@pytest.mark.parametrize("signer", ["zeep", "digibridge"])
@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_tampering_with_a_signed_part_breaks_verification(
    pki: LocalPki, signer: str, tampering: str
) -> None:
    signed = (
        zeep_sign(request(), pki["brp"]) if signer == "zeep" else digibridge_sign(pki, request())
    )
    root = etree.fromstring(signed)
    TAMPERINGS[tampering](root)
    problem = refused(etree.tostring(root), pki.trust())
    assert problem.fault == "wsse:FailedCheck"


# ---- signature wrapping -------------------------------------------------------------------


def _body(root: etree._Element) -> etree._Element:
    body = root.find(f"{{{SOAP11}}}Body")
    assert body is not None
    return body


def _evil_body(original: etree._Element) -> etree._Element:
    evil = etree.fromstring(etree.tostring(original))
    for element in evil.iter("kenmerkLV"):
        element.text = "BRP-vervalst"
    for name in list(evil.attrib):
        del evil.attrib[name]
    return evil


def _hide_in_signature_object(root: etree._Element, element: etree._Element) -> None:
    """Move `element` into a ds:Object of the Signature, outside what SignedInfo covers."""
    signature = root.find(f".//{{{DS}}}Signature")
    assert signature is not None
    etree.SubElement(signature, f"{{{DS}}}Object").append(element)


def test_signed_body_moved_into_the_signature_and_replaced_is_refused(pki: LocalPki) -> None:
    """XSW: the signed Body hides in ds:Object (its digest still matches); an unsigned Body
    stands where the gateway reads."""
    root = etree.fromstring(zeep_sign(request(), pki["brp"]))
    original = _body(root)
    root.replace(original, _evil_body(original))
    _hide_in_signature_object(root, original)
    problem = refused(etree.tostring(root), pki.trust())
    assert "does not cover soap:Body" in problem.reason


def test_second_element_with_the_signed_bodys_id_is_refused(pki: LocalPki) -> None:
    root = etree.fromstring(zeep_sign(request(), pki["brp"]))
    original = _body(root)
    evil = _evil_body(original)
    evil.set(WSU_ID, original.get(WSU_ID) or "")
    root.replace(original, evil)
    _hide_in_signature_object(root, original)
    problem = refused(etree.tostring(root), pki.trust())
    assert "names 2 elements" in problem.reason


def test_plain_id_attribute_pointing_elsewhere_is_refused(pki: LocalPki) -> None:
    """An `Id` (not wsu:Id) with the Body's value on another element makes the reference
    ambiguous: refused rather than guessing which one was meant."""
    root = etree.fromstring(zeep_sign(request(), pki["brp"]))
    body_id = _body(root).get(WSU_ID) or ""
    decoy = root.find(f".//{{{WSA}}}Action")
    assert decoy is not None
    decoy.set("Id", body_id)
    problem = refused(etree.tostring(root), pki.trust())
    assert "names 2 elements" in problem.reason


def test_signed_timestamp_moved_and_replaced_is_refused(pki: LocalPki) -> None:
    root = etree.fromstring(zeep_sign(request(), pki["brp"]))
    timestamp = root.find(f".//{{{WSU_NS}}}Timestamp")
    assert timestamp is not None
    fresh = etree.fromstring(etree.tostring(timestamp))
    del fresh.attrib[WSU_ID]
    timestamp.getparent().replace(timestamp, fresh)  # type: ignore[union-attr]
    _hide_in_signature_object(root, timestamp)
    assert "does not cover wsu:Timestamp" in refused(etree.tostring(root), pki.trust()).reason


# ---- algorithms and key info --------------------------------------------------------------


def test_sha1_signature_is_refused(pki: LocalPki) -> None:
    signed = zeep_stock_sign(
        request(),
        pki["brp"],
        signature_method=xmlsec.Transform.RSA_SHA1,
        digest_method=xmlsec.Transform.SHA1,
    )
    problem = refused(signed, pki.trust())
    assert problem.fault == "wsse:UnsupportedAlgorithm"
    assert "rsa-sha1" in problem.reason


def test_inclusive_c14n_is_refused(pki: LocalPki) -> None:
    signed = zeep_sign(request(), pki["brp"], c14n=xmlsec.Transform.C14N)
    assert "exclusive C14N" in refused(signed, pki.trust()).reason


def test_certificate_not_referenced_as_binary_security_token_is_refused(pki: LocalPki) -> None:
    signed = zeep_stock_sign(request(), pki["brp"], binary=False)
    assert refused(signed, pki.trust()).fault == "wsse:SecurityTokenUnavailable"


# ---- timestamps -----------------------------------------------------------------------------


def test_created_older_than_the_skew_is_refused(pki: LocalPki) -> None:
    signed = zeep_sign(request(), pki["brp"])
    later = datetime.now(UTC) + SKEW + timedelta(minutes=1)
    assert refused(signed, pki.trust(), now=later).fault == "wsse:MessageExpired"


def test_created_in_the_future_is_refused(pki: LocalPki) -> None:
    signed = zeep_sign(request(), pki["brp"], now=datetime.now(UTC) + timedelta(minutes=10))
    assert "in the future" in refused(signed, pki.trust()).reason


def test_expires_passed_is_refused(pki: LocalPki) -> None:
    """zeep writes Expires = Created + 5 minutes; with a 10-minute skew Created is still
    acceptable a second after that, but the message has expired."""
    created = datetime.now(UTC).replace(microsecond=0)
    signed = zeep_sign(request(), pki["brp"], now=created)
    skew = timedelta(minutes=10)
    assert verify(signed, pki.trust(), now=created + timedelta(minutes=4), skew=skew)
    later = created + timedelta(minutes=5, seconds=1)
    problem = refused(signed, pki.trust(), now=later, skew=skew)
    assert "expired" in problem.reason


# ---- signing certificates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("party", "why"), [("expired", "expired on"), ("untrusted", "does not chain")]
)
def test_signing_certificate_must_chain_and_be_valid(pki: LocalPki, party: str, why: str) -> None:
    problem = refused(zeep_sign(request(), pki[party]), pki.trust())
    assert problem.fault == "wsse:InvalidSecurityToken"
    assert why in problem.reason


def test_signature_value_is_what_the_answer_confirms(pki: LocalPki) -> None:
    signed = zeep_sign(request(), pki["brp"])
    verified = verify(signed, pki.trust())
    assert verified.signature_value == signature_value(signed)  # type: ignore[attr-defined]


def test_second_security_header_is_refused(pki: LocalPki) -> None:
    root = etree.fromstring(zeep_sign(request(), pki["brp"]))
    header = root.find(f"{{{SOAP11}}}Header")
    assert header is not None
    security = header[-1]
    header.append(etree.fromstring(etree.tostring(security)))
    assert "more than one" in refused(etree.tostring(root), pki.trust()).reason


def test_soap12_envelope_namespace_is_used(pki: LocalPki) -> None:
    root = etree.fromstring(digibridge_sign(pki, request(soap12=True)))
    assert root.tag == f"{{{SOAP12}}}Envelope"
    security = root.find(f"{{{SOAP12}}}Header/{{*}}Security")
    assert security is not None
    assert security.get(f"{{{SOAP12}}}mustUnderstand") == "true"

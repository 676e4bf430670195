"""The secure Digikoppeling profiles end to end: `digibridge serve` terminating mutual TLS on
loopback (2W-be), WS-Security signatures in and out (2W-be-S), and the TLS-terminating-proxy
mode. Each refusal stores nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from lxml import etree

from digibridge.wus.certificates import TrustStore
from digibridge.wus.client import ClientSecurity, SendError, send_levering
from digibridge.wus.tls import client_context
from digibridge.wus.wsse import EnvelopeSigner
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.pki import BRP_OIN, NHR_OIN, LocalPki
from tests.support.soap import SOAP11, envelope, fault_code, headers_for, sample, with_kenmerk
from tests.support.wsse import (
    confirmation_values,
    signature_value,
    xmlsec_verify,
    zeep_sign,
)

BRP = "brp-verhuizing.xml"
NHR = "nhr-nieuwe-inschrijving.xml"
BAG = "bag-pand-nieuw.xml"
BRK = "brk-eigendomsoverdracht.xml"
ACK_NS = "urn:nld:digibridge:wus:1"


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def tls_gateway(
    pki: LocalPki, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[GatewayProcess]:
    """The gateway terminating mutual TLS, as one process and as `serve --workers 2` (each
    worker with the same TLS context and client-certificate identification)."""
    registries = {
        "BRP": {"oins": [BRP_OIN], "ws_security": "optional"},
        "NHR": {"oins": [NHR_OIN], "ws_security": "required"},
        "LV BAG": {"oins": [BRP_OIN]},
    }
    env = {
        "DIGIBRIDGE_TLS_CERTIFICATE": str(pki.server_certificate),
        "DIGIBRIDGE_TLS_KEY": str(pki.server_key),
        "DIGIBRIDGE_TLS_KEY_PASSWORD_FILE": str(pki.server_key_password_file),
        "DIGIBRIDGE_TLS_TRUSTED_CAS": str(pki.ca_bundle),
        "DIGIBRIDGE_REGISTRIES": json.dumps(registries),
    }
    process = GatewayProcess(
        tmp_path_factory.mktemp("tls-gateway"), env, tls=pki.client_tls(), workers=request.param
    )
    process.start()
    yield process
    process.stop()


def soap(document: bytes, *, from_oin: str | None = None, to: str | None = None) -> bytes:
    kwargs: dict[str, object] = {"from_oin": from_oin}
    if to is not None:
        kwargs["to"] = to
    return envelope(with_kenmerk(document), **kwargs)  # type: ignore[arg-type]


def post(
    gateway: GatewayProcess, pki: LocalPki, party: str | None, body: bytes, name: str = BRP
) -> httpx.Response:
    with httpx.Client(verify=pki.client_tls(party), timeout=30) as client:
        return client.post(gateway.wus_url, content=body, headers=headers_for(sample(name)))


def messages(gateway: GatewayProcess) -> dict[str, str | None]:
    """message id → sender OIN, as stored."""
    with sqlite3.connect(f"file:{gateway.data_dir / 'digibridge.db'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT message_id, sender_oin FROM messages").fetchall())


def message_id(body: bytes) -> str:
    return etree.fromstring(body).findtext(".//{*}MessageID") or ""


def unauthorised_log(gateway: GatewayProcess, body: bytes) -> dict[str, object]:
    """The gateway's `soap_unauthorised` log event about the request `body`."""
    wanted = message_id(body)
    found: dict[str, object] = wait_until(
        lambda: next(
            (
                json.loads(line)
                for line in gateway.log().splitlines()
                if wanted in line and "soap_unauthorised" in line
            ),
            None,
        ),
        what="soap_unauthorised log line",
    )
    return found


def assert_refused(response: httpx.Response, code: str, *, says: str) -> None:
    assert response.status_code == 500, response.text
    assert fault_code(response.content) == code, response.text
    assert says in response.text


# ---- mutual TLS (2W-be) and OIN authorisation ------------------------------------------------


def test_trusted_oin_is_accepted_and_recorded_as_sender(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    body = soap(sample(BRP), from_oin=BRP_OIN)
    response = post(tls_gateway, pki, "brp", body)
    assert response.status_code == 200, response.text
    assert messages(tls_gateway)[message_id(body)] == BRP_OIN
    assert f"listening on https://127.0.0.1:{tls_gateway.port}" in tls_gateway.log()


def test_tls12_client_is_served(tls_gateway: GatewayProcess, pki: LocalPki) -> None:
    context = pki.client_tls("brp")
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=context, timeout=30) as client:
        response = client.post(
            tls_gateway.wus_url, content=soap(sample(BRP)), headers=headers_for(sample(BRP))
        )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("party", ["untrusted", "expired"])
def test_certificate_that_does_not_verify_ends_the_handshake(
    tls_gateway: GatewayProcess, pki: LocalPki, party: str
) -> None:
    before = messages(tls_gateway)
    with pytest.raises(httpx.TransportError):
        post(tls_gateway, pki, party, soap(sample(BRP)))
    assert messages(tls_gateway) == before


def test_missing_client_certificate_is_refused_on_the_wus_endpoint_only(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    response = post(tls_gateway, pki, None, soap(sample(BRP)))
    assert_refused(response, "0002", says="client certificate is required")
    assert httpx.get(f"{tls_gateway.url}/readyz", verify=pki.client_tls()).status_code == 200


def test_certificate_without_oin_is_refused(tls_gateway: GatewayProcess, pki: LocalPki) -> None:
    response = post(tls_gateway, pki, "no-oin", soap(sample(BRP)))
    assert_refused(response, "0002", says="carries no OIN")


def test_oin_not_allowed_for_the_registry_is_refused_and_logged(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    before = messages(tls_gateway)
    body = soap(sample(BRP))
    response = post(tls_gateway, pki, "nhr", body)
    assert_refused(response, "0002", says=f"OIN {NHR_OIN} may not deliver basisregistratie 'BRP'")
    assert messages(tls_gateway) == before
    line = unauthorised_log(tls_gateway, body)
    assert line["certificate_oin"] == NHR_OIN


def test_wsa_from_oin_must_match_the_certificate(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    body = soap(sample(BRP), from_oin=NHR_OIN)
    response = post(tls_gateway, pki, "brp", body)
    assert_refused(response, "0002", says="differs from the client certificate")
    line = unauthorised_log(tls_gateway, body)
    assert (line["certificate_oin"], line["from_oin"]) == (BRP_OIN, NHR_OIN)


def test_registry_nobody_may_deliver_is_refused(tls_gateway: GatewayProcess, pki: LocalPki) -> None:
    response = post(tls_gateway, pki, "brp", soap(sample(BRK)), BRK)
    assert_refused(response, "0002", says="no sender is authorised")


# ---- WS-Security (2W-be-S) -------------------------------------------------------------------


def test_zeep_signed_request_is_accepted_and_the_answer_signed_with_confirmation(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    request = zeep_sign(soap(sample(BRP), from_oin=BRP_OIN), pki["brp"])
    response = post(tls_gateway, pki, "brp", request)
    assert response.status_code == 200, response.text
    xmlsec_verify(response.content, pki.server)
    assert confirmation_values(response.content) == [signature_value(request)]
    # The same signed message again, within the freshness window: a duplicate, nothing new.
    again = post(tls_gateway, pki, "brp", request)
    assert again.status_code == 200, again.text
    ack = etree.fromstring(again.content).find(f".//{{{ACK_NS}}}duplicaat")
    assert ack is not None
    assert ack.text == "true"


def test_send_signs_over_mutual_tls_and_verifies_the_signed_answer(
    tls_gateway: GatewayProcess, pki: LocalPki, tmp_path: Path
) -> None:
    message = tmp_path / "nhr.xml"
    message.write_bytes(with_kenmerk(sample(NHR)))
    nhr = pki["nhr"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "digibridge",
            "send",
            str(message),
            "--to",
            tls_gateway.wus_url,
            "--client-cert",
            str(nhr.certificate),
            "--client-key",
            str(nhr.key),
            "--ca-bundle",
            str(pki.ca_bundle),
            "--sign",
            "--from-oin",
            NHR_OIN,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["acknowledgement"]["duplicaat"] is False


def test_sender_refuses_an_answer_signed_by_a_certificate_it_does_not_trust(
    tls_gateway: GatewayProcess, pki: LocalPki, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "other-ca.pem"
    elsewhere.write_bytes(pki.other_ca.bundle_pem())
    nhr = pki["nhr"]
    security = ClientSecurity(
        tls=client_context(trusted_cas=pki.ca_bundle, certificate=nhr.certificate, key=nhr.key),
        tls_trusted_cas=pki.ca_bundle,
        signer=EnvelopeSigner(nhr.credentials),
        answer_trust=TrustStore.load(elsewhere),
    )
    with pytest.raises(SendError, match="answer's signature is not acceptable"):
        send_levering(with_kenmerk(sample(NHR)), tls_gateway.wus_url, security=security)


def test_unsigned_request_for_a_registry_that_requires_signatures_is_refused(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    response = post(tls_gateway, pki, "nhr", soap(sample(NHR)), NHR)
    assert_refused(response, "0002", says="requires a WS-Security signature")


def test_signature_by_another_oin_than_the_tls_certificate_is_refused(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    request = zeep_sign(soap(sample(BRP)), pki["nhr"])
    response = post(tls_gateway, pki, "brp", request)
    assert_refused(response, "0002", says="differs from the client certificate")


def test_tampered_signed_request_is_refused_and_not_stored(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    before = messages(tls_gateway)
    request = zeep_sign(soap(sample(BRP)), pki["brp"]).replace(b"Gv01", b"Gv02")
    response = post(tls_gateway, pki, "brp", request)
    assert_refused(response, "0002", says="wsse:FailedCheck")
    assert messages(tls_gateway) == before


def test_second_body_next_to_the_signed_one_is_refused(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    root = etree.fromstring(zeep_sign(soap(sample(BRP)), pki["brp"]))
    root.append(etree.fromstring(etree.tostring(root.find(f"{{{SOAP11}}}Body"))))
    response = post(tls_gateway, pki, "brp", etree.tostring(root))
    assert_refused(response, "0001", says="Envelope")


def test_security_header_for_a_registry_without_ws_security_is_refused(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    request = zeep_sign(soap(sample(BAG)), pki["brp"])
    response = post(tls_gateway, pki, "brp", request, BAG)
    assert_refused(response, "0010", says="2W-be")


def test_encrypted_body_is_refused_as_unsupported_profile(
    tls_gateway: GatewayProcess, pki: LocalPki
) -> None:
    root = etree.fromstring(soap(sample(BRP)))
    body = root.find(f"{{{SOAP11}}}Body")
    assert body is not None
    body.remove(body[0])
    encrypted = etree.SubElement(body, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData")
    etree.SubElement(encrypted, "{http://www.w3.org/2001/04/xmlenc#}CipherData")
    response = post(tls_gateway, pki, "brp", etree.tostring(root))
    assert_refused(response, "0011", says="2W-be-SE")


# ---- behind a TLS-terminating proxy -------------------------------------------------------------


@pytest.fixture(scope="module")
def proxied_gateway(
    pki: LocalPki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    env = {
        "DIGIBRIDGE_TLS_CLIENT_CERT_HEADER": "X-SSL-Client-Cert",
        "DIGIBRIDGE_TLS_TRUSTED_PROXIES": "127.0.0.1/32",
        "DIGIBRIDGE_TLS_TRUSTED_CAS": str(pki.ca_bundle),
        "DIGIBRIDGE_REGISTRIES": json.dumps({"BRP": {"oins": [BRP_OIN]}}),
    }
    process = GatewayProcess(tmp_path_factory.mktemp("proxied-gateway"), env).start()
    yield process
    process.stop()


def forwarded(gateway: GatewayProcess, pki: LocalPki, party: str | None) -> httpx.Response:
    headers = headers_for(sample(BRP))
    if party is not None:
        headers["X-SSL-Client-Cert"] = quote(pki[party].issued.certificate_pem().decode())
    return httpx.post(gateway.wus_url, content=soap(sample(BRP)), headers=headers, timeout=30)


def test_certificate_forwarded_by_a_trusted_proxy_is_accepted(
    proxied_gateway: GatewayProcess, pki: LocalPki
) -> None:
    response = forwarded(proxied_gateway, pki, "brp")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("party", "says"),
    [(None, "client certificate is required"), ("expired", "expired on"), ("nhr", "may not")],
)
def test_proxy_mode_refusals(
    proxied_gateway: GatewayProcess, pki: LocalPki, party: str | None, says: str
) -> None:
    assert_refused(forwarded(proxied_gateway, pki, party), "0002", says=says)

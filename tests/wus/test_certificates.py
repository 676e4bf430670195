"""OINs, key material, chain verification, the proxy-forwarded certificate, the security
configuration refusals, and `digibridge dev-certs`."""

from __future__ import annotations

import ssl
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization

from digibridge.clock import SystemClock
from digibridge.config import ConfigError, load_settings
from digibridge.wus.certificates import (
    CertificateRefused,
    KeyMaterialError,
    SigningCredentials,
    TrustStore,
    read_certificates,
    read_password,
    read_private_key,
)
from digibridge.wus.oin import oin_of
from digibridge.wus.security import configure
from digibridge.wus.tls import PEER_EXTENSION, ClientIdentification, server_context
from tests.support.pki import BRP_OIN, SERVER_KEY_PASSWORD, LocalPki


def test_oin_is_read_from_the_subject_serial_number(pki: LocalPki) -> None:
    assert oin_of(pki["brp"].issued.certificate) == BRP_OIN
    assert oin_of(pki["no-oin"].issued.certificate) is None


def test_trust_store_verifies_chain_and_validity(pki: LocalPki) -> None:
    trust = pki.trust()
    now = datetime.now(UTC)
    chain = trust.verify(pki["brp"].issued.certificate, at=now)
    assert chain[-1] == pki.ca.root.certificate
    with pytest.raises(CertificateRefused, match="expired on"):
        trust.verify(pki["expired"].issued.certificate, at=now)
    with pytest.raises(CertificateRefused, match="does not chain"):
        trust.verify(pki["untrusted"].issued.certificate, at=now)


def test_ca_bundle_without_a_root_is_refused(pki: LocalPki, tmp_path: Path) -> None:
    bundle = tmp_path / "intermediate-only.pem"
    bundle.write_bytes(pki.ca.intermediate.certificate_pem())
    with pytest.raises(KeyMaterialError, match="no root"):
        TrustStore.load(bundle)


def test_key_password_from_environment_or_file(pki: LocalPki) -> None:
    from_file = read_password(None, pki.server_key_password_file)
    assert from_file == SERVER_KEY_PASSWORD.encode()
    assert read_password(SERVER_KEY_PASSWORD, None) == from_file
    read_private_key(pki.server_key, from_file)
    with pytest.raises(KeyMaterialError, match="needs a password"):
        read_private_key(pki.server_key, None)
    with pytest.raises(KeyMaterialError, match="either"):
        read_password("x", pki.server_key_password_file)


def test_wrong_password_names_the_file_not_the_password(pki: LocalPki) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        read_private_key(pki.server_key, b"fout-wachtwoord")
    assert str(pki.server_key) in str(caught.value)
    assert "fout-wachtwoord" not in str(caught.value)


def test_signing_key_must_belong_to_the_certificate(pki: LocalPki) -> None:
    with pytest.raises(KeyMaterialError, match="does not belong"):
        SigningCredentials.load(pki["brp"].certificate, pki["nhr"].key, None)


def test_server_context_requires_tls12_and_asks_for_client_certificates(pki: LocalPki) -> None:
    context = server_context(
        pki.server_certificate, pki.server_key, SERVER_KEY_PASSWORD.encode(), pki.ca_bundle
    )
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL


def _scope(pem: bytes, client: str) -> dict[str, object]:
    return {
        "type": "http",
        "headers": [(b"x-client-cert", quote(pem.decode()).encode())],
        "extensions": {PEER_EXTENSION: (client, 41234)},
        "client": ("203.0.113.9", 41234),
    }


def test_proxy_header_is_believed_only_from_a_trusted_proxy(pki: LocalPki) -> None:
    identification = ClientIdentification(
        trust=pki.trust(),
        clock=SystemClock(),
        header="X-Client-Cert",
        trusted_proxies=["10.1.2.0/24"],
    )
    pem = pki["brp"].issued.certificate_pem()
    trusted = identification.identify(_scope(pem, "10.1.2.3"))
    assert (trusted.oin, trusted.via, trusted.problem) == (BRP_OIN, "proxy", None)
    # The TCP peer counts, not scope["client"] (which X-Forwarded-For handling may rewrite).
    untrusted = identification.identify(_scope(pem, "192.0.2.7"))
    assert untrusted.certificate is None
    assert "not a trusted proxy" in (untrusted.problem or "")
    expired = identification.identify(_scope(pki["expired"].issued.certificate_pem(), "10.1.2.3"))
    assert expired.certificate is None
    assert "expired" in (expired.problem or "")


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"registries": {"BRP": {"oins": [BRP_OIN]}}}, "registries"),
        ({"tls_certificate": "{pki}/server.pem"}, "tls_trusted_cas"),
        (
            {"tls_client_cert_header": "X-Client-Cert", "tls_trusted_cas": "{pki}/ca-bundle.pem"},
            "tls_trusted_proxies",
        ),
    ],
)
def test_security_configuration_that_cannot_work_is_refused(
    pki: LocalPki, settings: dict[str, object], complaint: str
) -> None:
    resolved = {
        key: value.format(pki=pki.directory) if isinstance(value, str) else value
        for key, value in settings.items()
    }
    with pytest.raises(ConfigError, match=complaint):
        configure(load_settings(None, **resolved), SystemClock())


def test_registry_oins_must_be_oins() -> None:
    with pytest.raises(ConfigError, match="not an OIN"):
        load_settings(None, registries={"BRP": {"oins": ["123"]}})


def test_ws_security_without_a_signing_key_is_refused(pki: LocalPki) -> None:
    settings = load_settings(
        None,
        tls_client_cert_header="X-Client-Cert",
        tls_trusted_proxies=["127.0.0.1/32"],
        tls_trusted_cas=str(pki.ca_bundle),
        registries={"BRP": {"oins": [BRP_OIN], "ws_security": "required"}},
    )
    with pytest.raises(ConfigError, match="wss_signing_certificate"):
        configure(settings, SystemClock())


def test_dev_certs_writes_a_working_test_pki(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "digibridge", "dev-certs", str(tmp_path / "pki")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "pki"
    trust = TrustStore.load(folder / "ca-bundle.pem")
    now = datetime.now(UTC)
    for client in folder.glob("client-*.pem"):
        certificate = read_certificates(client)[0]
        trust.verify(certificate, at=now)
        oin = oin_of(certificate)
        assert oin is not None
        assert oin.startswith("00000099")
        assert client.name == f"client-{oin}.pem"
        assert (folder / f"client-{oin}.key").stat().st_mode & 0o077 == 0
    server = read_certificates(folder / "server.pem")
    trust.verify(server[0], at=now, intermediates=server[1:])
    key = read_private_key(folder / "server.key", None)
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == server[0].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = load_settings(folder / "digibridge-secure.toml")
    assert settings.registries["BRP"].ws_security == "required"
    assert configure(settings, SystemClock()).server_tls is not None

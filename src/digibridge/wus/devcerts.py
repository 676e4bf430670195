"""A local test PKI in the PKIoverheid shape, for trying the secure profiles (`dev-certs`).

A root CA, an intermediate CA under it, a server certificate for `localhost`/`127.0.0.1` and
client certificates whose subject carries a test OIN (`00000099...`) as `serialNumber`, the way
PKIoverheid certificates carry an organisation's OIN. Never for production: the keys are
written unencrypted next to the certificates.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The gateway's own test OIN (server certificate, signed answers).
SERVER_OIN = "00000099000000000001"
#: Test OINs of the client (sender) certificates `dev-certs` writes.
CLIENT_OINS = ("00000099000000000002", "00000099000000000003")


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def _name(common_name: str, organisation: str, oin: str | None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if oin is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, oin))
    return x509.Name(attributes)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class DevCa:
    """A root and an intermediate CA that issue test server and client certificates."""

    def __init__(self, root: Issued, intermediate: Issued, organisation: str) -> None:
        self.root = root
        self.intermediate = intermediate
        self.organisation = organisation

    @classmethod
    def create(cls, organisation: str = "digibridge test", *, now: datetime | None = None) -> DevCa:
        now = now or datetime.now(UTC)
        root_key = _new_key()
        root_name = _name(f"{organisation} Root CA", organisation, None)
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
            )
            .sign(root_key, hashes.SHA256())
        )
        root_issued = Issued(root, root_key)
        intermediate_key = _new_key()
        intermediate = (
            _issued_by(root_issued)
            .subject_name(_name(f"{organisation} Private Services CA", organisation, None))
            .public_key(intermediate_key.public_key())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(intermediate_key.public_key()),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        return cls(root_issued, Issued(intermediate, intermediate_key), organisation)

    def bundle_pem(self) -> bytes:
        """The CA bundle a relying party trusts: root, then intermediate."""
        return self.root.certificate_pem() + self.intermediate.certificate_pem()

    def server(
        self, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), *, oin: str | None = SERVER_OIN
    ) -> Issued:
        """A TLS server certificate (also usable to sign WS-Security answers)."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return self._leaf(
            hosts[0],
            oin,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            alt_names=names,
        )

    def client(
        self,
        oin: str | None,
        *,
        common_name: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """A client (sender) certificate with `oin` as subject serialNumber (None: no OIN)."""
        return self._leaf(
            common_name or f"sender {oin or 'without OIN'}",
            oin,
            usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
            not_before=not_before,
            not_after=not_after,
        )

    def _leaf(
        self,
        common_name: str,
        oin: str | None,
        *,
        usages: list[x509.ObjectIdentifier],
        alt_names: list[x509.GeneralName] | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        now = datetime.now(UTC)
        key = _new_key()
        builder = (
            _issued_by(self.intermediate)
            .subject_name(_name(common_name, self.organisation, oin))
            .public_key(key.public_key())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return Issued(builder.sign(self.intermediate.key, hashes.SHA256()), key)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _issued_by(issuer: Issued) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .issuer_name(issuer.certificate.subject)
        .serial_number(x509.random_serial_number())
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )


def write_dev_pki(directory: Path, *, client_oins: tuple[str, ...] = CLIENT_OINS) -> list[Path]:
    """Write a fresh test PKI and an example configuration into `directory`; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = DevCa.create()
    server = ca.server()
    files: dict[str, bytes] = {
        "ca-bundle.pem": ca.bundle_pem(),
        "server.pem": server.certificate_pem() + ca.intermediate.certificate_pem(),
        "server.key": server.key_pem(),
    }
    for oin in client_oins:
        client = ca.client(oin)
        files[f"client-{oin}.pem"] = client.certificate_pem()
        files[f"client-{oin}.key"] = client.key_pem()
    files["digibridge-secure.toml"] = _example_config(directory, client_oins).encode()
    written = []
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        if name.endswith(".key"):
            path.chmod(0o600)
        written.append(path)
    return written


def _example_config(directory: Path, client_oins: tuple[str, ...]) -> str:
    folder = directory.resolve()
    oins = ", ".join(f'"{oin}"' for oin in client_oins)
    return f"""\
# digibridge with mutual TLS and WS-Security, using the test PKI in this folder.
# Run: digibridge serve --config {folder / "digibridge-secure.toml"}
tls_certificate = "{folder / "server.pem"}"
tls_key = "{folder / "server.key"}"
tls_trusted_cas = "{folder / "ca-bundle.pem"}"

# Which OINs may deliver which basisregistratie, and the WS-Security profile per registry:
# "off" (2W-be), "optional" or "required" (2W-be-S).
[registries.BRP]
oins = [{oins}]
ws_security = "required"

[registries.NHR]
oins = [{oins}]
ws_security = "optional"

[registries."LV BAG"]
oins = [{oins}]
"""

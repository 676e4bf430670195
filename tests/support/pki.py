"""A test PKI in the PKIoverheid shape, written to files once per test session.

A trusted root with an intermediate (the CA bundle), a server certificate for 127.0.0.1 with an
encrypted key, and client (sender) certificates: two with test OINs, one expired, one from an
untrusted root, one without OIN.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digibridge.wus.certificates import SigningCredentials, TrustStore
from digibridge.wus.devcerts import DevCa, Issued

BRP_OIN = "00000099000000000002"
NHR_OIN = "00000099000000000003"
EXPIRED_OIN = "00000099000000000004"
UNTRUSTED_OIN = "00000099000000000005"
SERVER_KEY_PASSWORD = "geheim-voor-tests"


@dataclass(frozen=True)
class Party:
    name: str
    oin: str | None
    issued: Issued
    certificate: Path
    key: Path

    @property
    def credentials(self) -> SigningCredentials:
        return SigningCredentials(self.issued.key, self.issued.certificate)


class LocalPki:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.ca = DevCa.create("digibridge tests")
        self.other_ca = DevCa.create("somebody else")
        self.ca_bundle = directory / "ca-bundle.pem"
        self.ca_bundle.write_bytes(self.ca.bundle_pem())
        server = self.ca.server(("127.0.0.1", "localhost"))
        self.server_certificate = directory / "server.pem"
        self.server_certificate.write_bytes(
            server.certificate_pem() + self.ca.intermediate.certificate_pem()
        )
        self.server_key = directory / "server.key"
        self.server_key.write_bytes(server.key_pem(SERVER_KEY_PASSWORD.encode()))
        self.server_key_password_file = directory / "server.key.password"
        self.server_key_password_file.write_text(SERVER_KEY_PASSWORD + "\n")
        self.server = Party("server", None, server, self.server_certificate, self.server_key)
        now = datetime.now(UTC)
        self.parties = {
            party.name: party
            for party in (
                self._party("brp", BRP_OIN, self.ca.client(BRP_OIN)),
                self._party("nhr", NHR_OIN, self.ca.client(NHR_OIN)),
                self._party(
                    "expired",
                    EXPIRED_OIN,
                    self.ca.client(
                        EXPIRED_OIN,
                        not_before=now - timedelta(days=400),
                        not_after=now - timedelta(days=1),
                    ),
                ),
                self._party("untrusted", UNTRUSTED_OIN, self.other_ca.client(UNTRUSTED_OIN)),
                self._party("no-oin", None, self.ca.client(None)),
            )
        }

    def _party(self, name: str, oin: str | None, issued: Issued) -> Party:
        certificate = self.directory / f"{name}.pem"
        certificate.write_bytes(issued.certificate_pem())
        key = self.directory / f"{name}.key"
        key.write_bytes(issued.key_pem())
        return Party(name, oin, issued, certificate, key)

    def __getitem__(self, name: str) -> Party:
        return self.parties[name]

    def trust(self) -> TrustStore:
        return TrustStore.load(self.ca_bundle)

    def client_tls(self, party: str | None = None) -> ssl.SSLContext:
        """A client context trusting our CA, presenting `party`'s certificate if given."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        if party is not None:
            context.load_cert_chain(self[party].certificate, self[party].key)
        return context

"""Keys, certificates and the trusted roots, read from PEM files; chain verification.

Key material is read once at start. Errors name the file, never its content; a key password
comes from the environment or a file of its own, never from the command line or the log.

    KeyMaterialError (DigibridgeError)   a file cannot be read or holds the wrong thing
    CertificateRefused (DigibridgeError) a certificate does not chain to the trusted roots,
                                         is expired or not yet valid
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509 import verification

from digibridge.errors import DigibridgeError


class KeyMaterialError(DigibridgeError):
    """A key, certificate or CA bundle file cannot be used; the message names the file."""


class CertificateRefused(DigibridgeError):
    """A certificate that is not trusted now; `reason` says why, for a log and a Fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_password(value: str | None, file: Path | None) -> bytes | None:
    """A key password from the environment (`value`) or from `file` (its first line)."""
    if value is not None and file is not None:
        raise KeyMaterialError("give a key password either in the environment or in a file")
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise KeyMaterialError(
                f"cannot read the password file {file}: {exc.strerror}"
            ) from None
        return lines[0].encode() if lines else b""
    return value.encode() if value is not None else None


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order; at least one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeyMaterialError(f"{path} holds no PEM certificate") from None
    return certificates


def read_private_key(path: Path, password: bytes | None) -> PrivateKeyTypes:
    """The private key in a PEM file (PKCS#8 or traditional), decrypted with `password`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return serialization.load_pem_private_key(data, password=password)
    except TypeError:
        # cryptography says TypeError for "encrypted but no password" and the reverse.
        needs = "needs a password" if password is None else "is not encrypted; give no password"
        raise KeyMaterialError(f"the private key in {path} {needs}") from None
    except ValueError:
        raise KeyMaterialError(
            f"{path} holds no PEM private key, or the password does not decrypt it"
        ) from None


@dataclass(frozen=True)
class SigningCredentials:
    """An RSA key and its certificate, for WS-Security signatures."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def load(
        cls, certificate: Path, key: Path | None, password: bytes | None
    ) -> SigningCredentials:
        """The first certificate of `certificate` and the key in `key` (or in the same file)."""
        private_key = read_private_key(key or certificate, password)
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise KeyMaterialError(
                f"the key in {key or certificate} is not an RSA key (Digikoppeling signs RSA)"
            )
        leaf = read_certificates(certificate)[0]
        if leaf.public_key() != private_key.public_key():
            raise KeyMaterialError(f"the key in {key} does not belong to {certificate}")
        return cls(private_key, leaf)


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.subject != certificate.issuer:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def describe(certificate: x509.Certificate) -> str:
    """Subject and serial, for logs: identifies a certificate without printing it."""
    return f"{certificate.subject.rfc4514_string()} (serial {certificate.serial_number:x})"


@dataclass(frozen=True)
class TrustStore:
    """The roots a client or signing certificate must chain to, and known intermediates.

    A CA bundle holds roots (self-signed) and may hold the intermediates senders' certificates
    are issued under: a WS-Security token carries only the signing certificate itself.
    """

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    source: Path

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        certificates = read_certificates(path)
        roots = tuple(cert for cert in certificates if _self_signed(cert))
        if not roots:
            raise KeyMaterialError(f"{path} holds no root certificate (self-signed CA)")
        intermediates = tuple(cert for cert in certificates if cert not in roots)
        return cls(roots, intermediates, path)

    def verify(
        self,
        leaf: x509.Certificate,
        *,
        at: datetime,
        intermediates: Iterable[x509.Certificate] = (),
    ) -> list[x509.Certificate]:
        """The chain from `leaf` to a trusted root, valid at `at`; CertificateRefused if none."""
        if at < leaf.not_valid_before_utc:
            raise CertificateRefused(
                f"certificate {describe(leaf)} is not valid before "
                f"{leaf.not_valid_before_utc.isoformat()}"
            )
        if at > leaf.not_valid_after_utc:
            raise CertificateRefused(
                f"certificate {describe(leaf)} expired on {leaf.not_valid_after_utc.isoformat()}"
            )
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(self.roots)))
            .time(at)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                # PKIoverheid end-entity certificates are not web PKI certificates (no SAN
                # required, other key usages): the chain and validity are what counts here.
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, [*self.intermediates, *intermediates])
        except verification.VerificationError as exc:
            raise CertificateRefused(
                f"certificate {describe(leaf)} does not chain to a trusted root: {exc}"
            ) from None
        return verified.chain

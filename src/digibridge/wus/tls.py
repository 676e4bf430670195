"""Mutual TLS: the server's TLS context, and who the client on the other end is.

Two ways a client certificate reaches the WUS endpoint:

- digibridge terminates TLS itself (`tls_certificate`): the handshake asks for a client
  certificate and refuses one that does not chain to `tls_trusted_cas` or has expired. The REST
  API and health checks share the port, so a client *without* a certificate still gets through
  the handshake; the WUS endpoint then refuses the request (Fault 0002).
- a TLS-terminating proxy in front forwards the certificate it verified as URL-encoded PEM in
  `tls_client_cert_header` (nginx: `$ssl_client_escaped_cert`). The header is believed only
  from `tls_trusted_proxies`; the certificate is verified against `tls_trusted_cas` once more.

uvicorn does not tell the application about the TLS connection, so `serve` runs uvicorn with
`TlsHttpProtocol`: per connection it puts the ASGI TLS extension (`scope["extensions"]["tls"]`,
with `client_cert_chain` as PEM) and the connection's own peer address into every request scope,
before uvicorn's proxy-header middleware can rewrite `scope["client"]`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import structlog
from cryptography import x509
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from digibridge.clock import Clock
from digibridge.wus.certificates import (
    CertificateRefused,
    KeyMaterialError,
    TrustStore,
    describe,
)
from digibridge.wus.oin import oin_of

log = structlog.get_logger("digibridge.wus")

#: Our own scope extension: the TCP peer of the connection, as uvicorn saw it.
PEER_EXTENSION = "digibridge.peer"
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def server_context(
    certificate: Path, key: Path | None, password: bytes | None, trusted_cas: Path
) -> ssl.SSLContext:
    """TLS 1.2 or newer, our certificate, client certificates verified against `trusted_cas`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key, password=password)
    except ssl.SSLError:
        raise KeyMaterialError(
            f"cannot use {certificate} with {key or 'its key'}: not a certificate and matching "
            "key, or the key password is wrong"
        ) from None
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        context.load_verify_locations(cafile=trusted_cas)
    except (ssl.SSLError, OSError):
        raise KeyMaterialError(f"cannot read the CA bundle {trusted_cas}") from None
    # Optional at the handshake (the API shares the port); the WUS endpoint requires it.
    # A certificate that is sent but fails verification still ends the handshake.
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(
    *,
    trusted_cas: Path | None = None,
    certificate: Path | None = None,
    key: Path | None = None,
    password: bytes | None = None,
) -> ssl.SSLContext:
    """A client TLS context: TLS 1.2+, the server verified (against `trusted_cas` if given),
    and our client certificate presented if given."""
    context = ssl.create_default_context(cafile=str(trusted_cas) if trusted_cas else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate is not None:
        try:
            context.load_cert_chain(certificate, key, password=password)
        except ssl.SSLError:
            raise KeyMaterialError(
                f"cannot use {certificate} with {key or 'its key'} as client certificate"
            ) from None
        except OSError as exc:
            raise KeyMaterialError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return context


# ---- the uvicorn hook ---------------------------------------------------------------------


def _connection_extensions(transport: asyncio.BaseTransport) -> dict[str, Any]:
    extensions: dict[str, Any] = {PEER_EXTENSION: transport.get_extra_info("peername")}
    ssl_object = transport.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        der = ssl_object.getpeercert(binary_form=True)
        extensions["tls"] = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": None,
        }
    return extensions


def _with_extensions(app: ASGIApp, extensions: dict[str, Any]) -> ASGIApp:
    async def app_with_connection_facts(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**(scope.get("extensions") or {}), **extensions}
        await app(scope, receive, send)

    return app_with_connection_facts


class TlsHttpProtocol(HttpToolsProtocol):
    """uvicorn's default (httptools) protocol, adding the connection's TLS facts and peer to
    each request scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.app = _with_extensions(self.app, _connection_extensions(transport))
        super().connection_made(transport)


# ---- who is the client ----------------------------------------------------------------------


@dataclass(frozen=True)
class PeerIdentity:
    """The client certificate a request came with, as far as it can be trusted."""

    certificate: x509.Certificate | None = None
    #: OIN from the certificate's subject serialNumber.
    oin: str | None = None
    via: Literal["tls", "proxy"] | None = None
    #: Why a certificate that was offered cannot be used (then `certificate` is None).
    problem: str | None = None


NO_PEER = PeerIdentity()


class ClientIdentification:
    """Finds the client certificate of a request: from the TLS connection, or from a trusted
    proxy's header."""

    def __init__(
        self,
        *,
        trust: TrustStore | None,
        clock: Clock,
        header: str | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self._trust = trust
        self._clock = clock
        self._header = header.lower().encode("latin-1") if header else None
        self._proxies = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]

    def identify(self, scope: Scope) -> PeerIdentity:
        extensions = scope.get("extensions") or {}
        tls = extensions.get("tls") or {}
        chain = tls.get("client_cert_chain") or []
        if chain:
            certificate = x509.load_pem_x509_certificate(chain[0].encode("ascii"))
            # The handshake verified it against the same CA bundle already.
            return PeerIdentity(certificate, oin_of(certificate), "tls")
        if self._header is None:
            return NO_PEER
        forwarded = next(
            (value for name, value in scope.get("headers", []) if name == self._header), None
        )
        if forwarded is None:
            return NO_PEER
        peer = extensions.get(PEER_EXTENSION) or scope.get("client")
        peer_host = peer[0] if peer else None
        if not self._trusted_proxy(peer_host):
            log.warning("client_cert_header_untrusted", peer=peer_host)
            return PeerIdentity(
                problem=f"a client certificate header from {peer_host}, not a trusted proxy"
            )
        return self._forwarded(forwarded.decode("latin-1"))

    def _trusted_proxy(self, host: str | None) -> bool:
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    def _forwarded(self, value: str) -> PeerIdentity:
        try:
            certificate = x509.load_pem_x509_certificate(unquote(value).encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return PeerIdentity(problem="the forwarded client certificate is not a PEM certificate")
        if self._trust is None:  # pragma: no cover - configuration requires a CA bundle
            return PeerIdentity(problem="no trusted CAs configured")
        try:
            self._trust.verify(certificate, at=self._clock.now())
        except CertificateRefused as exc:
            return PeerIdentity(problem=exc.reason)
        log.debug("client_cert_forwarded", certificate=describe(certificate))
        return PeerIdentity(certificate, oin_of(certificate), "proxy")

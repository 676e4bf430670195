"""The HTTP clients webhooks go out on: one shared, plus one per client certificate (mTLS),
and one for OAuth token requests.

Every client connects through the SSRF guard, never follows redirects and ignores proxy
settings from the environment (a proxy would resolve names behind the guard). Webhooks go out
on `SinkClient` (aiohttp, the hot path); token requests on httpx (`GuardedTransport`).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile

import httpx

from digibridge.delivery.guard import GuardedTransport, SinkGuard
from digibridge.delivery.sink_client import SinkClient
from digibridge.store.types import ClientTls


def ssl_context(tls: ClientTls | None = None) -> ssl.SSLContext:
    """Verification with the system's roots (or the subscription's CAs), plus its client
    certificate when it has one."""
    if tls is not None and tls.ca is not None:
        if not tls.ca.isascii():
            # The ssl module answers TypeError to such text; it is the caller's bad value.
            raise ValueError("CA certificates must be PEM text (ASCII only)")
        context = ssl.create_default_context(cadata=tls.ca)
    else:
        context = httpx.create_ssl_context()
    if tls is not None:
        _load_client_certificate(context, tls)
    return context


def _load_client_certificate(context: ssl.SSLContext, tls: ClientTls) -> None:
    # The ssl module loads a certificate and key only from files: write them to a private
    # temporary folder and remove them at once.
    with tempfile.TemporaryDirectory(prefix="digibridge-tls-") as folder:
        certificate = os.path.join(folder, "client.pem")
        key = os.path.join(folder, "client.key")
        for path, text in ((certificate, tls.certificate), (key, tls.key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(text)
        context.load_cert_chain(certificate, key)


class Clients:
    """Hands out the client for a subscription's TLS settings; closes them all at the end."""

    def __init__(self, guard: SinkGuard, *, max_connections: int = 100) -> None:
        self.guard = guard
        self._max_connections = max_connections
        self._shared: SinkClient | None = None
        self._by_tls: dict[str, SinkClient] = {}
        self._tokens: httpx.AsyncClient | None = None

    def for_tls(self, tls: ClientTls | None) -> SinkClient:
        """The client for a subscription's TLS settings (the shared one without any)."""
        if tls is None:
            if self._shared is None:
                self._shared = SinkClient(self.guard, ssl_context(), limit=self._max_connections)
            return self._shared
        key = hashlib.sha256(f"{tls.certificate}\0{tls.key}\0{tls.ca}".encode()).hexdigest()
        client = self._by_tls.get(key)
        if client is None:
            client = self._by_tls[key] = SinkClient(
                self.guard, ssl_context(tls), limit=self._max_connections
            )
        return client

    def tokens(self) -> httpx.AsyncClient:
        """The client OAuth token requests go out on."""
        if self._tokens is None:
            limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
            transport = GuardedTransport(self.guard, ssl_context=ssl_context(), limits=limits)
            self._tokens = httpx.AsyncClient(
                transport=transport, follow_redirects=False, trust_env=False
            )
        return self._tokens

    async def aclose(self) -> None:
        clients = [*self._by_tls.values(), *([self._shared] if self._shared else [])]
        self._by_tls.clear()
        self._shared = None
        for client in clients:
            await client.aclose()
        if self._tokens is not None:
            await self._tokens.aclose()
            self._tokens = None

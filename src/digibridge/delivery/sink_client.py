"""The HTTP client webhooks go out on: aiohttp, through the SSRF guard.

Why aiohttp and not httpx (which the rest of digibridge uses for its rare outbound calls): a
webhook is the hot path, and on the benchmark machine httpx spent 1.5 ms of CPU per request
against 0.2 ms for aiohttp (`docs/performance.md`, "Delivery").

The guard sees every address connected to: host names through the connector's resolver (no DNS
cache, so each new connection resolves and checks again), IP literals, which aiohttp connects to
without asking a resolver, before each request. Redirects are never followed, proxy settings
from the environment are ignored, and an answer is read only as far as its first
`excerpt_bytes` (a connection whose answer was not read to its end is closed, not reused).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from digibridge.delivery.guard import SinkGuard

#: Allowed IP literals remembered, at most (the guard's answer for a literal never changes).
_LITERALS_KEPT = 1024


@dataclass(frozen=True)
class SinkAnswer:
    """What a sink answered: status, reason, headers (case-insensitive) and the first bytes of
    the body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    excerpt: bytes


class _GuardedResolver(AbstractResolver):
    """Resolves host names to the addresses the guard allows (SinkRefused otherwise)."""

    def __init__(self, guard: SinkGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._guard.resolve(host, port)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class SinkClient:
    """A keep-alive connection pool to sinks, for one TLS setting."""

    def __init__(self, guard: SinkGuard, ssl_context: ssl.SSLContext, *, limit: int) -> None:
        self._guard = guard
        self._ssl_context = ssl_context
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._allowed_literals: set[str] = set()

    def _opened(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop, as aiohttp wants.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                resolver=_GuardedResolver(self._guard),
                use_dns_cache=False,
                ssl=self._ssl_context,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def _check_literal(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in self._allowed_literals:
            return
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        await self._guard.resolve(host, parts.port or 0)
        if len(self._allowed_literals) < _LITERALS_KEPT:
            self._allowed_literals.add(host)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes,
        timeout: float,
        excerpt_bytes: int,
    ) -> SinkAnswer:
        """One request; raises SinkRefused, TimeoutError, UnicodeEncodeError (a header that
        is not ASCII, which aiohttp would send as UTF-8) or aiohttp's errors."""
        for value in headers.values():
            value.encode("ascii")
        await self._check_literal(url)
        async with self._opened().request(
            method,
            url,
            data=content or None,
            headers=dict(headers),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            excerpt = b""
            while len(excerpt) < excerpt_bytes and not response.content.at_eof():
                excerpt += await response.content.read(excerpt_bytes - len(excerpt))
            if not response.content.at_eof():
                # More than we read: do not wait for the rest, give the connection up.
                response.close()
            return SinkAnswer(response.status, response.reason or "", response.headers, excerpt)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

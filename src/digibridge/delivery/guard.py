"""SSRF guard: webhooks go to public addresses, or to the networks an operator allow-listed.

A sink is checked when it is subscribed (`check_sink`) and again on every connection: the
guard is the network backend of the delivery HTTP clients (`GuardedTransport`), so the address
checked is the address connected to; a DNS answer that changes between subscribe and send, or
between check and connect, changes nothing.

Refused, unless inside `DIGIBRIDGE_SINK_ALLOWLIST`: loopback, private (RFC 1918, ULA),
link-local (incl. the cloud metadata address 169.254.169.254), shared (CGNAT), multicast,
reserved and unspecified addresses, and IPv4-mapped forms of them. Plain `http://` is accepted
only for sinks that resolve to allow-listed addresses; everything else needs `https://`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import typing
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from digibridge.errors import DigibridgeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Resolves a host name to its addresses (text); injectable so tests need no external DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: Named in refusals: the addresses cloud platforms serve instance credentials on.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


class SinkRefused(DigibridgeError, ValueError):
    """A sink URL the SSRF guard does not allow; the message says why."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _kind(address: IPAddress) -> str | None:
    """Why an address is not public (None: it is)."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for test, kind in (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
    ):
        if test:
            return kind
    return None if address.is_global else "not public"


class SinkGuard:
    """Decides which addresses webhooks may go to."""

    def __init__(self, allowlist: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self.allowlist: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in allowlist
        )
        self._resolver = resolver or system_resolver

    def allow_listed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowlist)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of `host`, each allowed; SinkRefused naming the first that is not."""
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                found = await self._resolver(host, port)
            except OSError as error:
                raise SinkRefused(f"{host} does not resolve: {error}") from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
        if not addresses:
            raise SinkRefused(f"{host} does not resolve")
        for address in addresses:
            plain = getattr(address, "ipv4_mapped", None) or address
            kind = _kind(plain)
            if kind is not None and not (self.allow_listed(address) or self.allow_listed(plain)):
                where = (
                    f"{host} is {kind}"
                    if host.strip("[]") == str(address)
                    else f"{host} resolves to {address}, which is {kind}"
                )
                raise SinkRefused(f"{where}; allow it with DIGIBRIDGE_SINK_ALLOWLIST if intended")
        return addresses

    async def check_sink(self, url: str) -> None:
        """Refuse a sink URL whose host is not allowed, or that is plain HTTP to a host that is
        not allow-listed."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise SinkRefused("must be an absolute http:// or https:// URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise SinkRefused("has an invalid port") from None
        addresses = await self.resolve(host, port)
        if parts.scheme == "http" and not all(self.allow_listed(a) for a in addresses):
            raise SinkRefused(
                "must use https:// (plain http:// only for allow-listed sinks, "
                "see DIGIBRIDGE_SINK_ALLOWLIST)"
            )


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the guard allows, and to exactly those it checked."""

    def __init__(self, guard: SinkGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.resolve(host, port)
        error: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as failed:
                error = failed
        assert error is not None  # noqa: S101 - resolve() never returns an empty list
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guard as its network backend (TLS still verifies the name)."""

    def __init__(
        self, guard: SinkGuard, *, ssl_context: ssl.SSLContext, limits: httpx.Limits
    ) -> None:
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        # httpx does not take a network backend; the pool it built is replaced by the same
        # pool with ours (httpx <1 keeps the pool in `_pool`; pinned in pyproject.toml).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )

"""Who may call the REST API.

With API keys configured (`DIGIBRIDGE_API_KEYS`), every `/v1` call needs
`Authorization: Bearer <key>`. With none (the embedded default) the API answers only callers
on loopback, and says so at start.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from starlette.requests import Request

from digibridge.api.problems import Problem

#: Scope that sees and manages every consumer's subscriptions and deliveries.
ADMIN_SCOPE = "deliveries:admin"


@dataclass(frozen=True)
class Consumer:
    """Who is calling: an API key's name or an OAuth `client_id`, with the scopes granted."""

    id: str
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes


#: The caller on loopback when no keys and no OAuth are configured (the embedded default).
LOCAL_CONSUMER = Consumer(
    id="local",
    scopes=frozenset(
        {
            "subscriptions:read",
            "subscriptions:write",
            "events:read",
            ADMIN_SCOPE,
            "terugmeldingen:write",
        }
    ),
)


def consumer_of(request: Request) -> Consumer:
    """The consumer the auth dependency identified for this request."""
    consumer = getattr(request.state, "consumer", None)
    return consumer if isinstance(consumer, Consumer) else LOCAL_CONSUMER


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def authorise(request: Request, api_keys: list[str]) -> None:
    """Raise a Problem (401 or 403) unless the caller may use the API."""
    if not api_keys:
        if _is_loopback(request.client.host if request.client else None):
            return
        raise Problem(
            403,
            "no API keys are configured, so the API answers only on loopback; "
            "set DIGIBRIDGE_API_KEYS to open it to other hosts",
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401,
            "an API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="digibridge"'},
        )
    if not any(hmac.compare_digest(token.encode(), key.encode()) for key in api_keys):
        raise Problem(
            401,
            "the API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="digibridge", error="invalid_token"'},
        )

"""OAuth 2.0 client credentials (RFC 6749 §4.4) for sinks that want a bearer token.

Tokens are cached per (token endpoint, client, scope, audience) in the process and fetched again
shortly before they expire (a tenth of their lifetime, at most a minute, ahead), or at once when
the sink answers 401 (`invalidate`). The client authenticates with HTTP Basic (§2.3.1).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from digibridge.clock import Clock, SystemClock
from digibridge.errors import DigibridgeError
from digibridge.store.types import OAuthClient

#: Lifetime assumed when the token endpoint gives no `expires_in`.
DEFAULT_LIFETIME = timedelta(minutes=5)
MAX_MARGIN = timedelta(minutes=1)


class TokenError(DigibridgeError):
    """No token could be obtained; the message says what the token endpoint did."""


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: datetime


def _key(oauth: OAuthClient) -> tuple[str, str, str, str | None, str | None]:
    return (oauth.token_url, oauth.client_id, oauth.client_secret, oauth.scope, oauth.audience)


class TokenSource:
    """Fetches and caches client-credentials tokens."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._tokens: dict[tuple[str, str, str, str | None, str | None], _Token] = {}
        self._locks: dict[tuple[str, str, str, str | None, str | None], asyncio.Lock] = {}

    def invalidate(self, oauth: OAuthClient) -> None:
        self._tokens.pop(_key(oauth), None)

    async def token(self, oauth: OAuthClient, client: httpx.AsyncClient, timeout: float) -> str:
        """A valid access token, from the cache or fetched now (one fetch per key at a time)."""
        key = _key(oauth)
        cached = self._tokens.get(key)
        if cached is not None and self._clock.now() < cached.refresh_at:
            return cached.value
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and self._clock.now() < cached.refresh_at:
                return cached.value
            token = await self._fetch(oauth, client, timeout)
            self._tokens[key] = token
            return token.value

    async def _fetch(self, oauth: OAuthClient, client: httpx.AsyncClient, timeout: float) -> _Token:
        form = {"grant_type": "client_credentials"}
        if oauth.scope:
            form["scope"] = oauth.scope
        if oauth.audience:
            form["audience"] = oauth.audience
        fetched_at = self._clock.now()
        try:
            response = await client.post(
                oauth.token_url,
                data=form,
                auth=(oauth.client_id, oauth.client_secret),
                headers={"accept": "application/json"},
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as error:
            raise TokenError(f"token endpoint: {type(error).__name__}: {error}".strip()) from None
        if response.status_code != 200:
            raise TokenError(
                f"token endpoint answered {response.status_code} {response.reason_phrase}".strip()
            )
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = (
                timedelta(seconds=float(body["expires_in"]))
                if body.get("expires_in") is not None
                else DEFAULT_LIFETIME
            )
        except (ValueError, KeyError, TypeError):
            raise TokenError("token endpoint gave no usable access_token") from None
        if not isinstance(value, str) or not value:
            raise TokenError("token endpoint gave no usable access_token")
        margin = min(lifetime / 10, MAX_MARGIN)
        return _Token(value, fetched_at + lifetime - margin)

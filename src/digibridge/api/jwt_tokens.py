"""OAuth 2.0 JWT access tokens (RFC 9068 style) checked against the issuer's JWKS.

Only asymmetric algorithms are accepted (RS256, ES256, as configured): a token saying `none` or
`HS*` is refused before any key is looked at, and every key is bound to one algorithm, so a
public key can never be used as an HMAC secret. The signature, `iss`, `aud`, `exp` (required),
`nbf` and `iat` are checked with the configured leeway.

The consumer is the token's `client_id`, else `azp`, else `sub`; its scopes come from `scope`
(space-separated) or `scp` (a list or a space-separated string).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import structlog

from digibridge.api.consumers import Consumer
from digibridge.errors import DigibridgeError

log = structlog.get_logger("digibridge.api")

#: A JWKS document larger than this is refused (a JWKS holds a handful of keys).
MAX_JWKS_BYTES = 256 * 1024
JWKS_TIMEOUT = 5.0
#: The algorithm of a JWK without `alg`, by (kty, crv).
_DEFAULT_ALGORITHM = {("RSA", ""): "RS256", ("EC", "P-256"): "ES256"}


class InvalidToken(DigibridgeError):
    """The token cannot be accepted; `description` says why (safe to tell the caller)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class KeysUnavailable(DigibridgeError):
    """The issuer's signing keys could not be loaded, so no token can be checked."""


JwksLoader = Callable[[], Awaitable[Mapping[str, Any]]]


def url_loader(url: str) -> JwksLoader:
    async def load() -> Mapping[str, Any]:
        async with (
            httpx.AsyncClient(timeout=JWKS_TIMEOUT, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise KeysUnavailable(f"{url} answered {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise KeysUnavailable(f"{url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes")
        return _json_object(body, url)

    return load


def file_loader(path: Path) -> JwksLoader:
    async def load() -> Mapping[str, Any]:
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise KeysUnavailable(f"{path}: {exc.strerror or exc}") from None
        return _json_object(body, str(path))

    return load


def _json_object(body: bytes, where: str) -> Mapping[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeError):
        raise KeysUnavailable(f"{where}: the JWKS is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysUnavailable(f"{where}: the JWKS has no keys list")
    return document


class JwksCache:
    """The issuer's signing keys by `kid`, loaded when first needed and kept for `max_age`.

    A token with an unknown `kid` (the issuer rotated its keys) reloads the set, but at most once
    per `refresh_interval`, so a stream of made-up `kid`s cannot turn into a stream of fetches.
    Failed loads count too; the keys loaded last stay in use while loading fails.
    """

    def __init__(
        self,
        load: JwksLoader,
        *,
        algorithms: frozenset[str],
        max_age: float,
        refresh_interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._algorithms = algorithms
        self._max_age = max_age
        self._refresh_interval = refresh_interval
        self._monotonic = monotonic
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._loaded_at = 0.0
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()
        #: Loads attempted (for tests and metrics).
        self.loads = 0

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The key for a token's `kid` and `alg`; None when the issuer has no such key."""
        now = self._monotonic()
        if self._keys is None or now - self._loaded_at >= self._max_age:
            await self._reload(since=now - min(self._refresh_interval, self._max_age))
        found = self._find(kid, algorithm)
        if found is None:
            await self._reload(since=now - self._refresh_interval)
            found = self._find(kid, algorithm)
        return found

    def _find(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        keys = self._keys or {}
        if kid is None:
            matching = [key for key in keys.values() if key.algorithm_name == algorithm]
            return matching[0] if len(matching) == 1 else None
        key = keys.get(kid)
        return key if key is not None and key.algorithm_name == algorithm else None

    async def _reload(self, *, since: float) -> None:
        """Load the set unless someone tried after `since` (then their result stands)."""
        async with self._lock:
            if self._tried_at is not None and self._tried_at > since:
                if self._keys is None:
                    raise KeysUnavailable("the issuer's signing keys could not be loaded")
                return
            self._tried_at = self._monotonic()
            self.loads += 1
            try:
                document = await self._load()
            except (KeysUnavailable, httpx.HTTPError) as exc:
                log.warning("jwks_load_failed", error=str(exc) or type(exc).__name__)
                if self._keys is None:
                    raise KeysUnavailable("the issuer's signing keys could not be loaded") from None
                return
            self._keys = self._usable(document)
            self._loaded_at = self._tried_at
            log.info("jwks_loaded", keys=len(self._keys))

    def _usable(self, document: Mapping[str, Any]) -> dict[str | None, jwt.PyJWK]:
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            algorithm = entry.get("alg") or _DEFAULT_ALGORITHM.get(
                (str(entry.get("kty")), str(entry.get("crv", "")))
            )
            if algorithm not in self._algorithms:
                continue
            kid = entry.get("kid")
            try:
                keys[kid if isinstance(kid, str) else None] = jwt.PyJWK(entry, algorithm)
            except jwt.PyJWTError as exc:
                log.warning("jwks_key_skipped", kid=kid, error=str(exc))
        return keys


class TokenVerifier:
    """Checks an access token and says which consumer it stands for."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: frozenset[str],
        leeway: float,
        keys: JwksCache,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algorithms
        self._leeway = leeway
        self._keys = keys

    async def verify(self, token: str) -> Consumer:
        """The consumer of a valid token; InvalidToken (or KeysUnavailable) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            shown = algorithm if isinstance(algorithm, str) else "that algorithm"
            raise InvalidToken(
                f"tokens signed with {shown[:20]} are not accepted "
                f"(accepted: {', '.join(sorted(self._algorithms))})"
            )
        kid = header.get("kid")
        key = await self._keys.key(kid if isinstance(kid, str) else None, algorithm)
        if key is None:
            raise InvalidToken("the token is signed with a key the issuer does not publish")
        claims = self._decode(token, key, algorithm)
        return Consumer(id=_client(claims), scopes=_scopes(claims))

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is meant for another audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token is not valid") from None
        return claims


def _client(claims: Mapping[str, Any]) -> str:
    for claim in ("client_id", "azp", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip() and len(value) <= 200:
            return value
    raise InvalidToken("the token names no client (client_id, azp or sub)")


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    granted = claims.get("scope", claims.get("scp"))
    if isinstance(granted, str):
        return frozenset(granted.split())
    if isinstance(granted, list):
        return frozenset(item for item in granted if isinstance(item, str))
    return frozenset()

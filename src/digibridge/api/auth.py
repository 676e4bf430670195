"""Who may call the REST API, and what for.

Callers present `Authorization: Bearer <credential>`: an API key (`api_keys.py`) or, with OAuth
configured, a JWT access token (`jwt_tokens.py`). Both may be configured at once. With neither
(the embedded default) the API answers only callers on loopback, as `LOCAL_CONSUMER`.

Two steps, so an unknown caller is turned away before its request body is even read:

- `ApiAuthentication` (ASGI middleware) identifies the caller of every `/v1` request outside
  `PUBLIC_PATHS`, applies its rate limit and puts it in `request.state.consumer`; 401 (RFC 6750)
  or 429 otherwise.
- `require_scope(...)` / `scope_by_method(...)` (route dependencies) demand a scope: 403 with
  `error="insufficient_scope"` when the caller lacks it. They identify the caller themselves
  when the middleware did not, so a route with one is never open by accident.

Routes read the caller with `consumer_of(request)`, which raises when no one identified it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from digibridge.api.api_keys import KeyRing
from digibridge.api.consumers import (
    ADMIN_SCOPE,
    ALL_SCOPES,
    CONSUMER_SCOPES,
    EVENTS_READ,
    LOCAL_CONSUMER,
    SUBSCRIPTIONS_READ,
    SUBSCRIPTIONS_WRITE,
    TERUGMELDINGEN_WRITE,
    Consumer,
)
from digibridge.api.jwt_tokens import (
    InvalidToken,
    JwksCache,
    JwksLoader,
    KeysUnavailable,
    TokenVerifier,
    file_loader,
    url_loader,
)
from digibridge.api.problems import Problem, problem_response
from digibridge.api.ratelimit import Rate, RateLimiter, retry_after
from digibridge.config import ConfigError, Settings
from digibridge.errors import DigibridgeError

__all__ = [
    "ADMIN_SCOPE",
    "ALL_SCOPES",
    "CONSUMER_SCOPES",
    "EVENTS_READ",
    "LOCAL_CONSUMER",
    "PUBLIC_PATHS",
    "SUBSCRIPTIONS_READ",
    "SUBSCRIPTIONS_WRITE",
    "TERUGMELDINGEN_WRITE",
    "ApiAuthentication",
    "Authenticator",
    "Consumer",
    "ConsumerUnknown",
    "consumer_of",
    "require_scope",
    "scope_by_method",
]

log = structlog.get_logger("digibridge.api")
REALM = "digibridge"
#: Under `/v1` but open to anyone: documents that describe the API and carry no data.
PUBLIC_PATHS = ("/v1/openapi.json", "/v1/asyncapi.json", "/v1/docs", "/v1/event-types")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: RFC 6750 §3: error_description may hold only these characters.
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class ConsumerUnknown(DigibridgeError, LookupError):
    """A route asked for the consumer of a request that no auth step identified (a wiring
    mistake): refusing beats answering as someone."""


def consumer_of(request: Request) -> Consumer:
    """The consumer the auth step identified for this request; raises if none did."""
    consumer = getattr(request.state, "consumer", None)
    if not isinstance(consumer, Consumer):
        raise ConsumerUnknown(f"no consumer was identified for {request.url.path}")
    return consumer


def _challenge(**params: str) -> dict[str, str]:
    fields = [f'realm="{REALM}"'] + [
        f'{name}="{_UNSAFE.sub("", value)}"' for name, value in params.items()
    ]
    return {"WWW-Authenticate": "Bearer " + ", ".join(fields)}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _is_public(path: str) -> bool:
    return any(path == public or path.startswith(public + "/") for public in PUBLIC_PATHS)


@dataclass(frozen=True)
class _Identified:
    consumer: Consumer
    #: None: not rate limited (the local consumer of the embedded default).
    rate: Rate | None


class Authenticator:
    """Identifies callers from their credentials and keeps their rate limits."""

    def __init__(
        self,
        *,
        keys: KeyRing,
        tokens: TokenVerifier | None,
        rate: Rate,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._keys = keys
        self._tokens = tokens
        self._rate = rate
        self._limiter = limiter or RateLimiter()

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """ConfigError when the keys file cannot be used."""
        rate = Rate(per_second=settings.rate_limit, burst=settings.rate_limit_burst)
        keys = KeyRing.configured(settings.api_keys, settings.api_keys_file, rate)
        tokens = None
        if settings.oauth_enabled and settings.oauth_issuer and settings.oauth_audience:
            algorithms = frozenset(settings.oauth_algorithms)
            load = _jwks_loader(settings)
            tokens = TokenVerifier(
                issuer=settings.oauth_issuer,
                audience=settings.oauth_audience,
                algorithms=algorithms,
                leeway=settings.oauth_leeway,
                keys=JwksCache(
                    load,
                    algorithms=algorithms,
                    max_age=settings.oauth_jwks_cache_seconds,
                    refresh_interval=settings.oauth_jwks_refresh_interval,
                ),
            )
        return cls(keys=keys, tokens=tokens, rate=rate)

    def limit_public(self, request: Request) -> None:
        """Public paths: limited per address (not on loopback in the embedded default)."""
        address = _address(request)
        if not (self.open_on_loopback and _is_loopback(address)):
            self.limit(f"address:{address}", self._rate)

    @property
    def open_on_loopback(self) -> bool:
        """No keys and no OAuth: loopback callers are the local consumer, others are refused."""
        return not self._keys and self._tokens is None

    async def authenticate(self, request: Request) -> Consumer:
        """Identify the caller and take one request from its rate limit: the consumer, stored
        in `request.state.consumer`; Problem 401/403/429/503 otherwise."""
        consumer = getattr(request.state, "consumer", None)
        if isinstance(consumer, Consumer):
            return consumer
        try:
            identified = await self._identify(request)
        except Problem as problem:
            log.info(
                "api_access_refused",
                status=problem.status,
                reason=problem.detail,
                path=request.url.path,
                address=_address(request),
            )
            if problem.status == 401:
                # Guessing credentials costs from the address's budget.
                self.limit(f"address:{_address(request)}", self._rate)
            raise
        if identified.rate is not None:
            try:
                self.limit(f"consumer:{identified.consumer.id}", identified.rate)
            except Problem:
                log.info("api_rate_limited", consumer=identified.consumer.id)
                raise
        request.state.consumer = identified.consumer
        return identified.consumer

    def limit(self, key: str, rate: Rate) -> None:
        """Take one request from `key`'s budget; Problem 429 with `Retry-After` when spent."""
        wait = self._limiter.take(key, rate)
        if wait is not None:
            raise Problem(
                429,
                f"too many requests: at most {rate.per_second:g} per second "
                f"(bursts of {rate.burst}); try again in {retry_after(wait)} s",
                headers={"Retry-After": retry_after(wait)},
            )

    async def _identify(self, request: Request) -> _Identified:
        if self.open_on_loopback:
            if _is_loopback(_address(request)):
                return _Identified(LOCAL_CONSUMER, None)
            raise Problem(
                403,
                "no API keys are configured, so the API answers only on loopback; "
                "set DIGIBRIDGE_API_KEYS to open it to other hosts",
            )
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Problem(401, self._missing(), headers=_challenge())
        key = self._keys.find(credential)
        if key is not None:
            return _Identified(key.consumer, key.rate or self._rate)
        if self._tokens is None or (self._keys and credential.count(".") != 2):
            raise Problem(
                401,
                "the API key is not valid",
                headers=_challenge(error="invalid_token", error_description="unknown API key"),
            )
        try:
            consumer = await self._tokens.verify(credential)
        except InvalidToken as exc:
            raise Problem(
                401,
                f"the access token is not valid: {exc.description}",
                headers=_challenge(error="invalid_token", error_description=exc.description),
            ) from None
        except KeysUnavailable:
            raise Problem(
                503,
                "access tokens cannot be checked now: the issuer's signing keys are unavailable",
                headers={"Retry-After": "30"},
            ) from None
        return _Identified(consumer, self._rate)

    def _missing(self) -> str:
        if self._tokens is None:
            return "an API key is required: Authorization: Bearer <key>"
        if not self._keys:
            return "an access token is required: Authorization: Bearer <token>"
        return "an API key or access token is required: Authorization: Bearer <key or token>"


def _jwks_loader(settings: Settings) -> JwksLoader:
    if settings.oauth_jwks_url:
        return url_loader(settings.oauth_jwks_url)
    if settings.oauth_jwks_file is None or not settings.oauth_jwks_file.is_file():
        raise ConfigError(f"oauth_jwks_file: {settings.oauth_jwks_file} is not a file")
    return file_loader(settings.oauth_jwks_file)


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _authenticator(request: Request) -> Authenticator:
    authenticator = getattr(request.app.state, "authenticator", None)
    if not isinstance(authenticator, Authenticator):
        raise ConsumerUnknown("the app has no authenticator (app.state.authenticator)")
    return authenticator


def require_scope(scope: str) -> ScopeRequirement:
    """A route dependency: the caller, who must hold `scope` (403 `insufficient_scope` if not).

    Use as `dependencies=[Depends(require_scope("terugmeldingen:write"))]`."""
    return scope_by_method(read=scope, write=scope)


def scope_by_method(*, read: str, write: str) -> ScopeRequirement:
    """A route dependency demanding `read` for GET/HEAD/OPTIONS and `write` for the others."""
    if not {read, write} <= ALL_SCOPES:
        raise ValueError(f"unknown scope in {read!r}, {write!r}")
    return ScopeRequirement(read, write)


@dataclass(frozen=True)
class ScopeRequirement:
    """The scope a route family needs, per method; a value (not a closure), so the OpenAPI
    document can name each operation's scope."""

    read: str
    write: str

    def needed(self, method: str) -> str:
        return self.read if method.upper() in _READ_METHODS else self.write

    async def __call__(self, request: Request) -> Consumer:
        consumer = await _authenticator(request).authenticate(request)
        needed = self.needed(request.method)
        if needed not in consumer.scopes:
            raise Problem(
                403,
                f"this needs the scope {needed}, which {consumer.id} has not been granted",
                headers=_challenge(
                    error="insufficient_scope",
                    error_description=f"the scope {needed} is required",
                    scope=needed,
                ),
            )
        return consumer


class ApiAuthentication:
    """Identifies the caller of every protected `/v1` request before the route runs (and before
    its body is read); public paths are limited per address instead."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            if _is_public(path):
                self.authenticator.limit_public(request)
            else:
                await self.authenticator.authenticate(request)
        except Problem as problem:
            await problem_response(problem, request)(scope, receive, send)
            return
        await self.app(scope, receive, send)

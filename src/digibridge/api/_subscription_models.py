"""The request and answer bodies of `/v1/subscriptions`: the CloudEvents Subscriptions API
resource with digibridge's `delivery` object (lowerCamelCase, write-only fields kept out of every
answer), and their conversion from the store's `Subscription`."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from digibridge.api._delivery_options import (
    MAX_TIMEOUT,
    BatchIn,
    OAuthIn,
    OAuthOut,
    TlsIn,
    TlsOut,
    check_signing_key,
    oauth_out,
    signature_of,
    tls_out,
)
from digibridge.api._merge_patch import MAX_DEPTH, json_depth
from digibridge.store.types import DeliverySettings, Subscription


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccessTokenCredential(_Strict):
    credentialtype: Literal["ACCESSTOKEN"]
    # RFC 6750 b64token: it travels as `Authorization: Bearer <token>`, ASCII only.
    accesstoken: str = Field(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9\-._~+/]+=*$")


class HttpSettings(_Strict):
    headers: dict[str, str] = Field(default_factory=dict)
    method: Literal["POST"] = "POST"

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {"content-type", "content-length", "host", "authorization", "user-agent"}
        for name, header_value in value.items():
            lowered = name.lower()
            if lowered in reserved or lowered.startswith(("webhook-", "ce-")):
                raise ValueError(f"header {name!r} is set by digibridge and cannot be configured")
            if not name.isascii() or not name.replace("-", "").isalnum():
                raise ValueError(f"{name!r} is not a valid header name")
            if "\r" in header_value or "\n" in header_value:
                raise ValueError(f"header {name!r} has a line break in its value")
            if not all(" " <= char <= "~" or char == "\t" for char in header_value):
                raise ValueError(f"header {name!r} must have a printable ASCII value")
        return value


class DeliveryIn(_Strict):
    secret: str | None = Field(
        default=None,
        description="Standard Webhooks signing key: whsec_<base64> (v1, HMAC) or whsk_<base64> "
        "(v1a, Ed25519); write-only. Generated when omitted (a whsec_ secret is shown once)",
    )
    signature: Literal["v1", "v1a"] | None = Field(
        default=None, description="v1 (HMAC-SHA256, default) or v1a (Ed25519); follows secret"
    )
    mode: Literal["structured", "binary", "batch"] = "structured"
    ordered: bool = False
    form: Literal["informatierijk", "informatiearm"] = "informatierijk"
    timeout: float | None = Field(
        default=None, gt=0, le=MAX_TIMEOUT, description="seconds per request (default 10)"
    )
    retry4xx: bool = Field(default=False, description="retry 4xx answers (except 410) like 5xx")
    xSignature: bool = Field(  # noqa: N815 - lowerCamelCase per the NL API Design Rules
        default=False, description="also send X-Signature: sha256=<hex HMAC of the body> (v1)"
    )
    oauth: OAuthIn | None = None
    tls: TlsIn | None = None
    batch: BatchIn | None = Field(default=None, description="limits per request in batch mode")
    handshake: Literal["cloudevents", "none", "vng"] = Field(
        default="cloudevents",
        description="how the sink is checked on create and on a change of sink: cloudevents "
        "(the webhook OPTIONS handshake), none (agreed out of band), vng (a test POST must get "
        "2xx with the credential and 401/403 without)",
    )
    rate: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="requests per minute at most (WebHook-Request-Rate); the receiver may "
        "grant fewer",
    )

    @field_validator("secret")
    @classmethod
    def _signing_key(cls, value: str | None) -> str | None:
        return None if value is None else check_signing_key(value)

    @model_validator(mode="after")
    def _consistent(self) -> DeliveryIn:
        kind = None if self.secret is None else "v1a" if self.secret.startswith("whsk_") else "v1"
        if self.signature is not None and kind is not None and self.signature != kind:
            raise ValueError(f"signature {self.signature} does not match the secret's kind")
        if self.xSignature and "v1a" in (kind, self.signature):
            raise ValueError("xSignature needs an HMAC (whsec_, v1) secret")
        if self.batch is not None and self.mode != "batch":
            raise ValueError("batch limits apply only with mode batch")
        return self


class SubscriptionIn(_Strict):
    """A subscription request. `id`, when given, is ignored: the server assigns it."""

    id: str | None = Field(default=None, description="ignored: the server assigns the id")
    sink: str = Field(min_length=1, max_length=2048)
    protocol: Literal["HTTP"] = "HTTP"
    types: list[str] = Field(default_factory=list, max_length=200)
    source: str | None = Field(default=None, max_length=2048)
    filters: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    protocolsettings: HttpSettings = Field(default_factory=HttpSettings)
    sinkcredential: AccessTokenCredential | None = None
    delivery: DeliveryIn = Field(default_factory=DeliveryIn)

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, value: Any) -> Any:
        # JSON may carry lone surrogates (`"\\udb61"`); no header, URL or store can encode them.
        if _has_lone_surrogate(value):
            raise ValueError("text must be valid Unicode (no lone surrogate code points)")
        return value

    @field_validator("filters")
    @classmethod
    def _shallow(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Filters are walked recursively (validation, matching): refuse absurd nesting first.
        if json_depth(value) > MAX_DEPTH:
            raise ValueError(f"filters are nested deeper than {MAX_DEPTH} levels")
        return value

    @field_validator("sink")
    @classmethod
    def _sink(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use sinkcredential")
        return value


def _has_lone_surrogate(document: Any) -> bool:
    """Whether any string in parsed JSON (keys included) holds a lone surrogate; iterative, as
    the nesting is not yet checked."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # only lone surrogates cannot be encoded
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


class BatchOut(BaseModel):
    maxEvents: int  # noqa: N815
    maxBytes: int  # noqa: N815


class DeliveryOut(BaseModel):
    mode: str
    ordered: bool
    form: str
    secret: str | None = Field(
        default=None, description="present only in the answer to a create without a secret"
    )
    signature: str = "v1"
    publicKey: str | None = Field(  # noqa: N815
        default=None, description="v1a: the whpk_ key receivers verify signatures with"
    )
    timeout: float | None = None
    retry4xx: bool = False
    xSignature: bool = False  # noqa: N815
    oauth: OAuthOut | None = None
    tls: TlsOut | None = None
    batch: BatchOut | None = None
    handshake: str = "cloudevents"
    rate: int | None = None
    allowedRate: int | None = Field(  # noqa: N815
        default=None, description="requests per minute the receiver granted (none: no limit)"
    )


class SubscriptionOut(BaseModel):
    id: str
    sink: str
    protocol: str
    types: list[str]
    source: str | None
    filters: list[dict[str, Any]]
    protocolsettings: dict[str, Any]
    delivery: DeliveryOut
    status: str
    statusReason: str | None  # noqa: N815 - lowerCamelCase per the NL API Design Rules
    createdAt: str  # noqa: N815


def delivery_out(settings: DeliverySettings, secret: str | None) -> DeliveryOut:
    signature, key = signature_of(settings)
    return DeliveryOut(
        mode=settings.mode,
        ordered=settings.ordered,
        form=settings.form,
        secret=secret,
        signature=signature,
        publicKey=key,
        timeout=settings.timeout,
        retry4xx=settings.retry_4xx,
        xSignature=settings.x_signature,
        oauth=oauth_out(settings),
        tls=tls_out(settings),
        batch=None
        if settings.mode != "batch"
        else BatchOut(maxEvents=settings.batch_max_events, maxBytes=settings.batch_max_bytes),
        handshake=settings.handshake,
        rate=settings.rate,
        allowedRate=settings.allowed_rate,
    )


def subscription_out(subscription: Subscription, *, secret: str | None = None) -> SubscriptionOut:
    settings = subscription.delivery
    return SubscriptionOut(
        id=subscription.id,
        sink=subscription.sink,
        protocol=subscription.protocol,
        types=list(subscription.types),
        source=subscription.source,
        filters=[dict(expression) for expression in subscription.filters],
        protocolsettings=dict(subscription.protocolsettings),
        delivery=delivery_out(settings, secret),
        status=subscription.status.value,
        statusReason=subscription.status_reason,
        createdAt=subscription.created_at.isoformat(),
    )


class ProbeOut(BaseModel):
    """What the sink answered to a test event."""

    eventId: str  # noqa: N815
    outcome: Literal["succeeded", "retryable", "failed", "gone"] = Field(
        description="what the answer would mean for a real delivery"
    )
    status: int | None = Field(description="HTTP status; none when the sink did not answer")
    headers: dict[str, str] = Field(description="the answer's headers that matter to delivery")
    body: str | None = Field(description="the start of the answer's body (at most 512 bytes)")
    durationMs: float  # noqa: N815
    error: str | None = Field(description="why it is not a success, if it is not")

"""`/v1/subscriptions`: webhook subscriptions in the CloudEvents Subscriptions API shape."""

from __future__ import annotations

import uuid
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from digibridge.api._delivery_options import (
    MAX_TIMEOUT,
    BatchIn,
    OAuthIn,
    OAuthOut,
    TlsIn,
    TlsOut,
    check_signing_key,
    delivery_settings,
    oauth_out,
    signature_of,
    tls_out,
)
from digibridge.api.problems import Problem
from digibridge.delivery.guard import SinkRefused
from digibridge.delivery.signing import generate_key_pair, generate_secret
from digibridge.events.filters import FilterError, validate_filters
from digibridge.runtime import Runtime
from digibridge.store.types import DeliverySettings, Subscription

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccessTokenCredential(_Strict):
    credentialtype: Literal["ACCESSTOKEN"]
    accesstoken: str = Field(min_length=1, max_length=4096)


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

    @field_validator("sink")
    @classmethod
    def _sink(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use sinkcredential")
        return value


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


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _delivery_out(settings: DeliverySettings, secret: str | None) -> DeliveryOut:
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
    )


def _out(subscription: Subscription, *, secret: str | None = None) -> SubscriptionOut:
    settings = subscription.delivery
    return SubscriptionOut(
        id=subscription.id,
        sink=subscription.sink,
        protocol=subscription.protocol,
        types=list(subscription.types),
        source=subscription.source,
        filters=[dict(expression) for expression in subscription.filters],
        protocolsettings=dict(subscription.protocolsettings),
        delivery=_delivery_out(settings, secret),
        status=subscription.status.value,
        statusReason=subscription.status_reason,
        createdAt=subscription.created_at.isoformat(),
    )


@router.post("", status_code=201, response_model_exclude_none=True)
async def create_subscription(
    body: SubscriptionIn, request: Request, response: Response
) -> SubscriptionOut:
    """Create a subscription; the signing secret is generated and shown once when omitted."""
    runtime = _runtime(request)
    try:
        validate_filters(body.filters)
    except FilterError as exc:
        raise Problem(
            400, exc.message, invalid_params=[{"name": exc.pointer, "reason": exc.message}]
        ) from None
    await _check_targets(runtime, body)
    generated = None
    key = body.delivery.secret
    if key is None and body.delivery.signature == "v1a":
        key, _public = generate_key_pair()  # the public key is in every answer; no need to show
    elif key is None:
        key = generated = generate_secret()
    try:
        settings = delivery_settings(body.delivery, key)
    except ValueError as exc:
        raise Problem(
            400,
            f"delivery.tls: {exc}",
            invalid_params=[{"name": "delivery.tls", "reason": str(exc)}],
        ) from None
    subscription = Subscription(
        id=str(uuid.uuid4()),
        sink=body.sink,
        protocol=body.protocol,
        types=tuple(body.types),
        source=body.source,
        filters=tuple(body.filters),
        protocolsettings=body.protocolsettings.model_dump(),
        sinkcredential=body.sinkcredential.accesstoken if body.sinkcredential else None,
        delivery=settings,
        created_at=runtime.clock.now(),
    )
    await runtime.store.create_subscription(subscription)
    response.headers["Location"] = f"/v1/subscriptions/{subscription.id}"
    return _out(subscription, secret=generated)


async def _check_targets(runtime: Runtime, body: SubscriptionIn) -> None:
    """The SSRF guard on every URL digibridge will call for this subscription."""
    targets = [("sink", body.sink)]
    if body.delivery.oauth is not None:
        targets.append(("delivery.oauth.tokenUrl", body.delivery.oauth.tokenUrl))
    for name, url in targets:
        try:
            await runtime.dispatcher.guard.check_sink(url)
        except SinkRefused as exc:
            raise Problem(
                400, f"{name}: {exc}", invalid_params=[{"name": name, "reason": str(exc)}]
            ) from None


@router.get("")
async def list_subscriptions(request: Request) -> list[SubscriptionOut]:
    return [_out(sub) for sub in await _runtime(request).store.list_subscriptions()]


@router.get("/{subscription_id}", response_model_exclude_none=True)
async def get_subscription(subscription_id: str, request: Request) -> SubscriptionOut:
    subscription = await _runtime(request).store.get_subscription(subscription_id)
    if subscription is None:
        raise Problem(404, f"subscription {subscription_id} does not exist")
    return _out(subscription)


@router.delete("/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: str, request: Request) -> Response:
    if not await _runtime(request).store.delete_subscription(subscription_id):
        raise Problem(404, f"subscription {subscription_id} does not exist")
    return Response(status_code=204)

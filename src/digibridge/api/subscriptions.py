"""`/v1/subscriptions`: webhook subscriptions in the CloudEvents Subscriptions API shape."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from digibridge.api.problems import Problem
from digibridge.delivery.signing import generate_secret
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
        default=None, description="Standard Webhooks signing secret whsec_<base64>; write-only"
    )
    mode: Literal["structured"] = "structured"
    ordered: Literal[False] = False
    form: Literal["informatierijk"] = "informatierijk"

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks secret: whsec_<base64>")
        try:
            raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the part after whsec_ is not valid base64") from None
        if not 24 <= len(raw) <= 64:
            raise ValueError("the secret must be 24 to 64 random bytes")
        return value


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


class DeliveryOut(BaseModel):
    mode: str
    ordered: bool
    form: str
    secret: str | None = Field(
        default=None, description="present only in the answer to a create without a secret"
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


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


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
        delivery=DeliveryOut(
            mode=settings.mode, ordered=settings.ordered, form=settings.form, secret=secret
        ),
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
    generated = None if body.delivery.secret else generate_secret()
    subscription = Subscription(
        id=str(uuid.uuid4()),
        sink=body.sink,
        protocol=body.protocol,
        types=tuple(body.types),
        source=body.source,
        filters=tuple(body.filters),
        protocolsettings=body.protocolsettings.model_dump(),
        sinkcredential=body.sinkcredential.accesstoken if body.sinkcredential else None,
        delivery=DeliverySettings(
            secret=body.delivery.secret or generated or "",
            mode=body.delivery.mode,
            ordered=body.delivery.ordered,
            form=body.delivery.form,
        ),
        created_at=runtime.clock.now(),
    )
    await runtime.store.create_subscription(subscription)
    response.headers["Location"] = f"/v1/subscriptions/{subscription.id}"
    return _out(subscription, secret=generated)


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

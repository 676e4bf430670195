"""The delivery log and what operators do with it.

- `GET /v1/deliveries?status=&subscription=&after=&limit=`: deliveries oldest first, paged by an
  opaque cursor (`_links.next.href`). Status `pending` = waiting for its first attempt,
  `failed` = an attempt failed and another is scheduled, `succeeded`, `dead` (a dead letter).
- `GET /v1/deliveries/{id}`: one delivery with every attempt.
- `POST /v1/deliveries/{id}/retry`: send again now, with a fresh retry schedule.
- `POST /v1/subscriptions/{id}/replay`: deliver again every event stored in a time range that
  the subscription matches, delivered or not (for a consumer that lost its data).
- `POST /v1/subscriptions/{id}/enable`: activate a disabled subscription (its endpoint's circuit
  starts closed).
- `POST /v1/subscriptions/{id}/rotate-secret`: a new signing key; the old one keeps signing
  alongside it for `gracePeriod` seconds.

A consumer sees and acts on the deliveries of its own subscriptions only (another's answer 404,
as if they did not exist); a caller with `deliveries:admin` on all of them.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from digibridge.api._delivery_options import check_signing_key, signature_of
from digibridge.api._paging import Link, cursor_links
from digibridge.api._subscription_models import SubscriptionOut, subscription_out
from digibridge.api.auth import consumer_of
from digibridge.api.problems import Problem
from digibridge.api.subscriptions import owned_subscription
from digibridge.delivery.signing import generate_key_pair, generate_secret, is_asymmetric
from digibridge.events.filters import subscription_matches
from digibridge.runtime import Runtime
from digibridge.store.types import (
    Attempt,
    Delivery,
    DeliveryStatus,
    PreviousKey,
    StoreConflict,
)

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])
actions = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

DEFAULT_PAGE = 100
MAX_GRACE = timedelta(days=30)

StatusName = Literal["pending", "failed", "succeeded", "dead"]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _own_delivery(request: Request, delivery_id: str) -> Delivery:
    """The delivery, if it belongs to a subscription the caller owns (or is an admin); 404."""
    store = _runtime(request).store
    delivery = await store.get_delivery(delivery_id)
    if delivery is not None and not consumer_of(request).admin:
        subscription = await store.get_subscription(delivery.subscription_id)
        if subscription is None or not consumer_of(request).owns(subscription.owner):
            delivery = None
    if delivery is None:
        raise Problem(404, f"delivery {delivery_id} does not exist")
    return delivery


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class AttemptOut(BaseModel):
    number: int
    startedAt: str  # noqa: N815 - lowerCamelCase per the NL API Design Rules
    durationMs: float  # noqa: N815
    statusCode: int | None  # noqa: N815
    error: str | None
    responseExcerpt: str | None  # noqa: N815


class DeliveryOut(BaseModel):
    id: str
    subscriptionId: str  # noqa: N815
    eventId: str  # noqa: N815
    status: StatusName
    attemptCount: int  # noqa: N815
    nextAttemptAt: str | None  # noqa: N815
    createdAt: str  # noqa: N815
    updatedAt: str  # noqa: N815
    lastStatusCode: int | None  # noqa: N815
    lastError: str | None  # noqa: N815
    attempts: list[AttemptOut] | None = None
    links: dict[str, Link] = Field(serialization_alias="_links")


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    links: dict[str, Link] = Field(serialization_alias="_links")


def _status(delivery: Delivery) -> StatusName:
    if delivery.status is DeliveryStatus.PENDING:
        return "failed" if delivery.attempts else "pending"
    return "succeeded" if delivery.status is DeliveryStatus.SUCCEEDED else "dead"


def _delivery_out(delivery: Delivery, attempts: list[Attempt] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        subscriptionId=delivery.subscription_id,
        eventId=delivery.event_id,
        status=_status(delivery),
        attemptCount=delivery.attempts,
        nextAttemptAt=_time(delivery.next_attempt_at),
        createdAt=delivery.created_at.isoformat(),
        updatedAt=delivery.updated_at.isoformat(),
        lastStatusCode=delivery.last_status_code,
        lastError=delivery.last_error,
        attempts=None
        if attempts is None
        else [
            AttemptOut(
                number=a.number,
                startedAt=a.started_at.isoformat(),
                durationMs=round(a.duration_ms, 3),
                statusCode=a.status_code,
                error=a.error,
                responseExcerpt=a.response_excerpt,
            )
            for a in attempts
        ],
        links={
            "self": Link(href=f"/v1/deliveries/{delivery.id}"),
            "subscription": Link(href=f"/v1/subscriptions/{delivery.subscription_id}"),
        },
    )


def _cursor(delivery: Delivery) -> str:
    raw = f"{delivery.created_at.isoformat()}|{delivery.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, delivery_id = text.partition("|")
        at = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        at, delivery_id = None, ""
    if at is None or at.tzinfo is None or not delivery_id:
        raise Problem(
            400,
            "after: not a cursor from this API (use the next link of the previous page)",
            invalid_params=[{"name": "after", "reason": "not a valid cursor"}],
        )
    return at, delivery_id


@router.get("", response_model_by_alias=True)
async def list_deliveries(
    request: Request,
    status: Annotated[StatusName | None, Query()] = None,
    subscription: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = DEFAULT_PAGE,
) -> DeliveryPage:
    """Deliveries, oldest first; follow `_links.next.href` for the next page. A consumer sees
    the deliveries of its own subscriptions; an admin sees all."""
    consumer = consumer_of(request)
    stored = None
    if status is not None:
        stored = DeliveryStatus("pending" if status == "failed" else status)
    retrying = {"pending": False, "failed": True}.get(status or "")
    found = await _runtime(request).store.list_deliveries(
        subscription_id=subscription,
        status=stored,
        retrying=retrying,
        after=None if after is None else _after(after),
        limit=limit + 1,
        owner=None if consumer.admin else consumer.id,
    )
    page = found[:limit]
    links = cursor_links(
        "/v1/deliveries",
        {"status": status, "subscription": subscription},
        limit=limit,
        next_after=_cursor(page[-1]) if len(found) > limit else None,
    )
    return DeliveryPage(deliveries=[_delivery_out(d) for d in page], links=links)


@router.get("/{delivery_id}", response_model_by_alias=True)
async def get_delivery(delivery_id: str, request: Request) -> DeliveryOut:
    delivery = await _own_delivery(request, delivery_id)
    return _delivery_out(delivery, await _runtime(request).store.list_attempts(delivery_id))


@router.post("/{delivery_id}/retry", status_code=202, response_model_by_alias=True)
async def retry_delivery(delivery_id: str, request: Request) -> DeliveryOut:
    """Send the delivery again now (any status but in flight), with a fresh retry schedule."""
    runtime = _runtime(request)
    await _own_delivery(request, delivery_id)
    try:
        delivery = await runtime.store.retry_delivery(delivery_id)
    except StoreConflict as exc:
        raise Problem(409, str(exc)) from None
    if delivery is None:
        raise Problem(404, f"delivery {delivery_id} does not exist")
    runtime.dispatcher.wake()
    return _delivery_out(delivery)


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: datetime | None = Field(
        default=None, alias="from", description="events stored at or after this time"
    )
    until: datetime | None = Field(default=None, description="events stored before this time")

    @field_validator("start", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-03-01T00:00:00Z")
        return value


class ReplayOut(BaseModel):
    deliveriesCreated: int  # noqa: N815


@actions.post("/{subscription_id}/replay", status_code=202)
async def replay(subscription_id: str, body: ReplayIn, request: Request) -> ReplayOut:
    """Deliver again every event stored in [from, until) that the subscription matches."""
    if body.start and body.until and body.until <= body.start:
        raise Problem(
            400,
            "until must be later than from",
            invalid_params=[{"name": "until", "reason": "not later than from"}],
        )
    runtime = _runtime(request)
    await owned_subscription(request, subscription_id)
    created = await runtime.store.replay(
        subscription_id, start=body.start, end=body.until, matcher=subscription_matches
    )
    if created is None:
        raise Problem(404, f"subscription {subscription_id} does not exist")
    runtime.dispatcher.wake()
    return ReplayOut(deliveriesCreated=created)


@actions.post("/{subscription_id}/enable", response_model_exclude_none=True)
async def enable(subscription_id: str, request: Request) -> SubscriptionOut:
    """Activate the subscription again; its pending deliveries go out, its endpoint's circuit
    starts closed."""
    runtime = _runtime(request)
    await owned_subscription(request, subscription_id)
    subscription = await runtime.store.enable_subscription(subscription_id)
    if subscription is None:
        raise Problem(404, f"subscription {subscription_id} does not exist")
    runtime.dispatcher.wake()
    return subscription_out(subscription)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(
        default=None, description="the new whsec_/whsk_ key; generated (same kind) when omitted"
    )
    gracePeriod: float = Field(  # noqa: N815
        default=86400, ge=0, le=MAX_GRACE.total_seconds(), description="seconds the old key signs"
    )

    @field_validator("secret")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else check_signing_key(value)


class RotateOut(BaseModel):
    signature: str
    secret: str | None = Field(default=None, description="a generated whsec_ secret, shown once")
    publicKey: str | None = None  # noqa: N815
    previousValidUntil: str  # noqa: N815


@actions.post("/{subscription_id}/rotate-secret", response_model_exclude_none=True)
async def rotate_secret(subscription_id: str, body: RotateIn, request: Request) -> RotateOut:
    """Sign with a new key from now on, and with the old one too until the grace period ends."""
    runtime = _runtime(request)
    subscription = await owned_subscription(request, subscription_id)
    settings = subscription.delivery
    shown = None
    new = body.secret
    if new is None and is_asymmetric(settings.secret):
        new, _public = generate_key_pair()
    elif new is None:
        new = shown = generate_secret()
    if settings.x_signature and is_asymmetric(new):
        raise Problem(400, "secret: xSignature needs an HMAC (whsec_) secret")
    now = runtime.clock.now()
    until = now + timedelta(seconds=body.gracePeriod)
    kept = tuple(key for key in settings.previous_secrets if key.until > now)
    rotated = replace(
        settings, secret=new, previous_secrets=(PreviousKey(settings.secret, until), *kept)
    )
    updated = await runtime.store.update_delivery_settings(subscription_id, rotated)
    if updated is None:
        raise Problem(404, f"subscription {subscription_id} does not exist")
    signature, public = signature_of(rotated)
    return RotateOut(
        signature=signature, secret=shown, publicKey=public, previousValidUntil=until.isoformat()
    )

"""Driving the delivery engine in tests: subscriptions and events in a real store, a running
dispatcher, and waiting for a delivery to settle."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from digibridge.clock import Clock
from digibridge.delivery.dispatcher import Dispatcher
from digibridge.delivery.retry import RetryPolicy
from digibridge.delivery.signing import generate_secret
from digibridge.events.filters import subscription_matches
from digibridge.store.types import (
    Delivery,
    DeliverySettings,
    DeliveryStatus,
    InboundMessage,
    NewEvent,
    Store,
    Subscription,
)
from tests.support.sinks import Received, ScriptedSink, eventually

SECRET = generate_secret()
FAST = RetryPolicy.parse("0,0.05,0.05,0.05")
SOURCE = "urn:nld:oin:00000001823288444000:systeem:BRP"


def subscription(sink: str, **changes: object) -> Subscription:
    fields: dict[str, object] = {
        "id": "sub-1",
        "sink": sink,
        "delivery": DeliverySettings(secret=SECRET),
        "created_at": datetime.now(UTC),
    }
    fields.update(changes)
    return Subscription(**fields)  # type: ignore[arg-type]


def cloud_event(
    event_id: str,
    *,
    subject: str | None = None,
    data: Any = None,
    informatiearm: Any = None,
) -> NewEvent:
    """A CloudEvent of type nl.brp.persoon-verhuisd; with `informatiearm` data, also that form."""

    def document(payload: Any) -> bytes:
        fields: dict[str, Any] = {
            "specversion": "1.0",
            "id": event_id,
            "source": SOURCE,
            "type": "nl.brp.persoon-verhuisd",
        }
        if subject is not None:
            fields["subject"] = subject
        fields["datacontenttype"] = "application/json"
        fields["data"] = payload
        return json.dumps(fields, ensure_ascii=False).encode()

    return NewEvent(
        id=event_id,
        type="nl.brp.persoon-verhuisd",
        source=SOURCE,
        subject=subject,
        time=None,
        attributes={"type": "nl.brp.persoon-verhuisd", "source": SOURCE},
        body=document({"plaats": "Zwolle"} if data is None else data),
        informatiearm_body=None if informatiearm is None else document(informatiearm),
    )


async def publish(
    store: Store, sub: Subscription | None, event_id: str = "ev-1", **event: Any
) -> Delivery:
    """Store the subscription (if given) and one event for the subscriptions that match it; the
    delivery of the event to `sub` (or to the first subscription)."""
    if sub is not None:
        await store.create_subscription(sub)
    message = InboundMessage(
        message_id=f"uuid:{event_id}",
        kenmerk=f"K-{event_id}",
        basisregistratie="BRP",
        gebeurtenissoort="verhuizing",
        received_at=datetime.now(UTC),
    )
    await store.ingest(message, [cloud_event(event_id, **event)], subscription_matches)
    found = [
        d
        for d in await store.list_deliveries()
        if d.event_id == event_id and (sub is None or d.subscription_id == sub.id)
    ]
    return found[0]


@contextlib.asynccontextmanager
async def running(
    store: Store,
    policy: RetryPolicy = FAST,
    clock: Clock | None = None,
    idle_poll: float = 0.2,
    **options: Any,
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(store, policy=policy, clock=clock, idle_poll=idle_poll, **options)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(timeout=2)
        await task


async def settled(store: Store, delivery_id: str, status: DeliveryStatus) -> Delivery:
    async def check() -> bool:
        found = await store.get_delivery(delivery_id)
        return found is not None and found.status is status

    await eventually(check, f"delivery {delivery_id} {status}")
    found = await store.get_delivery(delivery_id)
    assert found is not None
    return found


async def received(sink: ScriptedSink, count: int, path: str | None = None) -> list[Received]:
    """Wait (without blocking the event loop) until `sink` got `count` POSTs; all of them."""

    async def check() -> bool:
        return len(sink.posts(path)) >= count

    await eventually(check, f"{count} webhooks at {sink.url(path or '/')}")
    return sink.posts(path)

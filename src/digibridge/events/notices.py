"""digibridge's own events: notices to operators, subscribable like any other type.

Source: `urn:nld:digibridge`. The NL GOV profile names a publisher by its OIN
(`urn:nld:oin:<OIN>:systeem:<system>`); a digibridge install has no OIN of its own to announce,
so its notices use the `nld` namespace with the system's name alone. Types follow the profile's
reverse-DNS naming by data source: `nl.digibridge.<resource>.<what happened>`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from digibridge.events.types import CloudEvent, format_time
from digibridge.store.types import Subscription

NOTICE_SOURCE = "urn:nld:digibridge"
SUBSCRIPTION_DISABLED = "nl.digibridge.subscription.disabled"
SUBSCRIPTION_TEST = "nl.digibridge.subscription.test"

_NAMESPACE = uuid.UUID("6c1b5cf0-9c1e-4f55-9a3e-2f4d8e0a7b11")


def subscription_disabled(subscription: Subscription, reason: str, at: datetime) -> CloudEvent:
    """`nl.digibridge.subscription.disabled`: a subscription stopped receiving events (410 Gone
    from its sink, or its endpoint failing too long) until someone enables it again."""
    parts = urlsplit(subscription.sink)
    # The sink without credentials, query or fragment: those may hold secrets.
    sink = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return CloudEvent(
        id=str(uuid.uuid5(_NAMESPACE, f"{subscription.id}/{at.isoformat()}")),
        source=NOTICE_SOURCE,
        type=SUBSCRIPTION_DISABLED,
        time=at,
        subject=subscription.id,
        data={
            "subscriptionId": subscription.id,
            "sink": sink,
            "reason": reason,
            "disabledAt": format_time(at),
        },
    )


def subscription_test(subscription: Subscription, at: datetime) -> CloudEvent:
    """`nl.digibridge.subscription.test`: sent on request (`POST /v1/subscriptions/{id}/test`)
    or by the VNG-style check, to show a receiver what a delivery looks like. Each has a new id:
    it is never stored, so a receiver's idempotency must not swallow the next one."""
    return CloudEvent(
        id=str(uuid.uuid4()),
        source=NOTICE_SOURCE,
        type=SUBSCRIPTION_TEST,
        time=at,
        subject=subscription.id,
        data={"subscriptionId": subscription.id, "sentAt": format_time(at)},
    )

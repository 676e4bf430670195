"""The Store protocol and the records it keeps.

The store is the only state shared between the inbound side and delivery: an inbound message, its
events and one delivery per matching subscription are written in one transaction (`ingest`)
before the SOAP acknowledgement is sent. Nothing here imports the other stages; callers convert
their own types into these records.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from digibridge.errors import DigibridgeError


class StoreError(DigibridgeError):
    """The store could not do what was asked (unreachable, locked, corrupt)."""


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DeliveryStatus(enum.StrEnum):
    #: Waiting for its `next_attempt_at`; claimable once due and not leased.
    PENDING = "pending"
    #: 2xx received.
    SUCCEEDED = "succeeded"
    #: Given up: non-retryable answer or retries exhausted. Kept until handled; replayable.
    DEAD = "dead"


@dataclass(frozen=True)
class DeliverySettings:
    """digibridge's own `delivery` object on a subscription."""

    #: Standard Webhooks signing secret, `whsec_<base64>`. Write-only in the API.
    secret: str
    mode: str = "structured"
    ordered: bool = False
    form: str = "informatierijk"


@dataclass(frozen=True)
class Subscription:
    """A webhook subscription in the CloudEvents Subscriptions API shape."""

    id: str
    sink: str
    delivery: DeliverySettings
    created_at: datetime
    protocol: str = "HTTP"
    types: tuple[str, ...] = ()
    source: str | None = None
    #: Filter expressions as given (dialect objects), evaluated by `events.filters`.
    filters: tuple[Mapping[str, Any], ...] = ()
    protocolsettings: Mapping[str, Any] = field(default_factory=dict)
    #: Write-only credential for the sink (e.g. a bearer token).
    sinkcredential: str | None = None
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    #: Why the subscription was disabled (e.g. `410 Gone from sink`), None while active.
    status_reason: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """An accepted inbound SOAP message: the keys it is deduplicated on, and its raw bytes."""

    #: `wsa:MessageID` of the request (opaque string).
    message_id: str
    #: The DigiLevering kenmerk (`kenmerkDigilevering`/`KenmerkLogius`), the second dedupe key.
    kenmerk: str
    basisregistratie: str
    gebeurtenissoort: str
    received_at: datetime
    sender_oin: str | None = None
    #: The exact request body as received, kept for audit and replay of the mapping.
    raw: bytes = b""


@dataclass(frozen=True)
class NewEvent:
    """An event to store: the attributes needed to route it, and its serialized JSON body."""

    id: str
    type: str
    source: str
    subject: str | None
    time: datetime | None
    #: All context attributes (string-valued as in the JSON format), used by subscription filters.
    attributes: Mapping[str, Any]
    #: The structured-mode CloudEvent JSON, exactly as it will be sent.
    body: bytes


@dataclass(frozen=True)
class StoredEvent:
    id: str
    type: str
    source: str
    subject: str | None
    time: datetime | None
    body: bytes
    message_id: str
    created_at: datetime


@dataclass(frozen=True)
class IngestResult:
    #: True when the message (by MessageID or kenmerk) was seen before; nothing was written.
    duplicate: bool
    #: The event ids of the message: the new ones, or on a duplicate those stored the first time.
    event_ids: tuple[str, ...]
    #: MessageID under which the events were first stored (differs from the request's own on a
    #: duplicate by kenmerk).
    original_message_id: str
    deliveries_created: int


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one subscription."""

    id: str
    subscription_id: str
    event_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None
    last_status_code: int | None = None


@dataclass(frozen=True)
class Attempt:
    """The record of one HTTP attempt of a delivery."""

    delivery_id: str
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    #: First bytes of the response body (decoded leniently), for operators.
    response_excerpt: str | None = None


@dataclass(frozen=True)
class DeliveryJob:
    """A claimed delivery with what the sender needs: the subscription and the event body."""

    delivery: Delivery
    subscription: Subscription
    event: StoredEvent
    #: Lease expiry; the claim returns to the queue when it passes without an outcome.
    lease_until: datetime
    #: Who holds the lease (the `owner` given to `claim_due`); `complete` applies only while the
    #: lease is still this owner's, so a job taken over after its lease expired records nothing.
    lease_owner: str = ""


class OutcomeKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    """What to do with a delivery after an attempt."""

    kind: OutcomeKind
    #: With RETRY: when to try again.
    retry_at: datetime | None = None
    #: With DEAD: why (also stored as `last_error`).
    reason: str | None = None
    #: Also disable the subscription (410 Gone), with this reason.
    disable_subscription: str | None = None


#: Decides whether a subscription wants an event; evaluated inside the ingest transaction.
SubscriptionMatcher = Callable[[Subscription, NewEvent], bool]


class Store(Protocol):
    """Durable state of digibridge. Every method is a single transaction."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers (for `/readyz`)."""

    async def ingest(
        self,
        message: InboundMessage,
        events: Sequence[NewEvent],
        matcher: SubscriptionMatcher,
    ) -> IngestResult:
        """Store a message, its events and one pending delivery per (event, matching active
        subscription), atomically and durably; or, for a duplicate, write nothing."""

    async def create_subscription(self, subscription: Subscription) -> None: ...

    async def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    async def list_subscriptions(self) -> list[Subscription]: ...

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Delete it and its pending deliveries; False when it did not exist."""

    async def get_event(self, event_id: str) -> StoredEvent | None: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(
        self, *, subscription_id: str | None = None, status: DeliveryStatus | None = None
    ) -> list[Delivery]: ...

    async def list_attempts(self, delivery_id: str) -> list[Attempt]: ...

    async def claim_due(
        self, *, now: datetime, limit: int, lease_until: datetime, owner: str
    ) -> list[DeliveryJob]:
        """Lease up to `limit` pending deliveries due at `now` (oldest first) whose subscription is
        active and that are not leased by anyone (or whose lease expired). A claimed delivery is
        never handed out twice while its lease runs."""

    async def complete(self, job: DeliveryJob, attempt: Attempt, outcome: Outcome) -> None:
        """Record the attempt and apply the outcome, releasing the lease."""

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending, unleased delivery of an active subscription becomes due."""

    async def release_leases(self, owner: str | None = None) -> int:
        """Return leased deliveries to the queue (all, or one owner's); the count released."""

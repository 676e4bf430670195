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
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from digibridge.errors import DigibridgeError


class StoreError(DigibridgeError):
    """The store could not do what was asked (unreachable, locked, corrupt)."""


class StoreConflict(StoreError):
    """The change conflicts with the record's state (e.g. a retry of a delivery in flight)."""


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
class PreviousKey:
    """A signing key being rotated out: requests are signed with it too until `until`."""

    secret: str
    until: datetime


@dataclass(frozen=True)
class OAuthClient:
    """OAuth 2.0 client credentials grant for the sink's `Authorization: Bearer` token."""

    token_url: str
    client_id: str
    #: Write-only in the API.
    client_secret: str
    scope: str | None = None
    audience: str | None = None


@dataclass(frozen=True)
class ClientTls:
    """Mutual TLS towards the sink: our client certificate, and whom to trust for the sink."""

    #: PEM certificate (chain) presented to the sink.
    certificate: str
    #: PEM private key of the certificate. Write-only in the API.
    key: str
    #: PEM CA certificates that sign the sink's certificate; None: the system's roots.
    ca: str | None = None


@dataclass(frozen=True)
class DeliverySettings:
    """digibridge's own `delivery` object on a subscription."""

    #: Standard Webhooks signing key: `whsec_<base64>` (HMAC `v1`) or `whsk_<base64>` (Ed25519
    #: `v1a`). Write-only in the API.
    secret: str
    mode: str = "structured"
    ordered: bool = False
    form: str = "informatierijk"
    #: Seconds one request may take; None: the gateway's `delivery_timeout`.
    timeout: float | None = None
    #: Retry 4xx answers (other than 410) like 5xx instead of dead-lettering them at once.
    retry_4xx: bool = False
    #: Keys being rotated out, still signing until their `until`.
    previous_secrets: tuple[PreviousKey, ...] = ()
    #: Also send `X-Signature: sha256=<hex HMAC-SHA256 of the body>` (needs a `whsec_` key).
    x_signature: bool = False
    oauth: OAuthClient | None = None
    tls: ClientTls | None = None
    #: Batch mode: at most this many events, and this many bytes of JSON, per request.
    batch_max_events: int = 100
    batch_max_bytes: int = 1024 * 1024


def endpoint_of(sink: str) -> str:
    """The endpoint a sink URL belongs to: `scheme://host[:port]` as written, lower-cased.

    Circuit breaking and the per-endpoint concurrency limit work per endpoint, so several
    subscriptions to one receiver share its health."""
    parts = urlsplit(sink)
    return f"{parts.scheme}://{parts.netloc}".lower()


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
    disabled_at: datetime | None = None
    #: The consumer (API key name or OAuth `client_id`) that created it; only it (or an admin)
    #: sees it. None for subscriptions made before ownership was recorded: admin-only.
    owner: str | None = None

    @property
    def endpoint(self) -> str:
        return endpoint_of(self.sink)


#: Decides whether a subscription wants an event; evaluated inside the ingest transaction.
SubscriptionMatcher = Callable[[Subscription, "NewEvent"], bool]


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
    #: The same event in the informatiearm form (identifiers + `dataref`), for subscriptions
    #: with `delivery.form = informatiearm`.
    informatiearm_body: bytes | None = None


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
    #: The informatiearm form of `body`; None for events stored without one.
    informatiearm_body: bytes | None = None


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
    #: The retry schedule runs from here (None: `created_at`); a manual retry restarts it.
    schedule_start: datetime | None = None
    #: Attempts made before the schedule (re)started.
    schedule_offset: int = 0


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
    #: For the endpoint's circuit breaker: True when the endpoint failed (5xx, 429, timeout,
    #: connection error), False when it answered (2xx, 4xx), None when it was not reached.
    endpoint_failed: bool | None = None


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class CircuitPolicy:
    """When an endpoint's circuit opens, how long it stays open, when it is given up on."""

    #: Outcomes are counted over windows this long.
    window: timedelta = timedelta(seconds=60)
    #: No opening on fewer outcomes than this in the window.
    min_requests: int = 5
    #: Open when this share of the window's outcomes failed.
    failure_ratio: float = 0.5
    #: How long an open circuit waits before letting one probe through (half-open).
    pause: timedelta = timedelta(seconds=30)
    #: An endpoint failing without a single success this long gets its subscriptions disabled.
    disable_after: timedelta = timedelta(days=5)


@dataclass(frozen=True)
class Circuit:
    """The stored state of one endpoint's circuit breaker."""

    endpoint: str
    state: CircuitState
    window_start: datetime
    successes: int = 0
    failures: int = 0
    retry_at: datetime | None = None
    probe_until: datetime | None = None
    failing_since: datetime | None = None


@dataclass(frozen=True)
class EndpointHealth:
    """What `complete` needs to keep endpoint health: the circuit policy, and how to announce a
    disabled subscription (a `subscription.disabled` event, stored and fanned out to matching
    subscriptions like any event)."""

    policy: CircuitPolicy
    notice: Callable[[Subscription, str, datetime], NewEvent]
    matcher: SubscriptionMatcher


@dataclass(frozen=True)
class Completion:
    """One finished attempt waiting to be recorded: what `complete` takes, as a value, so a
    dispatcher can hand several to `claim_due` and record them in the claim's transaction."""

    job: DeliveryJob
    attempt: Attempt
    outcome: Outcome
    #: As for `complete`: count the outcome in the endpoint's circuit (None: do not, e.g. for
    #: all but the first delivery of a batch, which is one request).
    health: EndpointHealth | None = None


@dataclass(frozen=True)
class PurgeResult:
    deliveries: int
    events: int
    messages: int


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
        self,
        *,
        subscription_id: str | None = None,
        status: DeliveryStatus | None = None,
        retrying: bool | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        """Deliveries in (created_at, id) order. `retrying` narrows pending ones to those with
        (True) or without (False) a failed attempt; `after` is the (created_at, id) of the last
        one of the previous page."""

    async def list_attempts(self, delivery_id: str) -> list[Attempt]: ...

    async def claim_due(
        self,
        *,
        now: datetime,
        limit: int,
        lease_until: datetime,
        owner: str,
        per_endpoint: int | None = None,
        completed: Sequence[Completion] = (),
    ) -> list[DeliveryJob]:
        """Record `completed` exactly as `complete` would, in order; then lease up to `limit`
        pending deliveries due at `now` (oldest first) whose subscription is active and that are
        not leased by anyone (or whose lease expired). A claimed delivery is never handed out
        twice while its lease runs.

        Also held back: deliveries to an endpoint with `per_endpoint` leases running; to an
        endpoint whose circuit is open (once its pause is over, one delivery is let through as
        the probe, and the circuit is half-open until the probe's lease ends); and, for an
        `ordered` subscription, those with an earlier pending delivery of the same subject.

        Both happen in one transaction, so a dispatcher pays one round trip per turn of its
        loop instead of two per delivery, and the leases and ordering the outcomes release
        are free for this very claim. `limit=0` only records."""

    async def claim_batch(
        self, job: DeliveryJob, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[DeliveryJob]:
        """Lease up to `limit` more claimable deliveries of `job`'s subscription, for the same
        owner (batch mode)."""

    async def complete(
        self,
        job: DeliveryJob,
        attempt: Attempt,
        outcome: Outcome,
        health: EndpointHealth | None = None,
    ) -> None:
        """Record the attempt and apply the outcome, releasing the lease.

        With `health`: count the outcome in the endpoint's circuit, and when the endpoint has
        failed for `disable_after` (or the outcome disables the subscription) disable its
        subscriptions and store a `subscription.disabled` notice for each, in this transaction."""

    async def get_circuit(self, endpoint: str) -> Circuit | None: ...

    async def retry_delivery(self, delivery_id: str) -> Delivery | None:
        """Make a delivery due now with a fresh retry schedule (None: unknown id).
        Raises StoreConflict while it is being sent."""

    async def replay(
        self,
        subscription_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        matcher: SubscriptionMatcher,
    ) -> int | None:
        """New pending deliveries for every event stored in [start, end) that the subscription
        matches, delivered or not; the count (None: unknown subscription)."""

    async def enable_subscription(self, subscription_id: str) -> Subscription | None:
        """Activate it again and close its endpoint's circuit (None: unknown id)."""

    async def update_delivery_settings(
        self, subscription_id: str, settings: DeliverySettings
    ) -> Subscription | None: ...

    async def purge(self, *, delivered_before: datetime) -> PurgeResult:
        """Delete deliveries that succeeded before `delivered_before` with their attempts, then
        events stored before it that no delivery needs any more, then messages left without
        events. Dead and pending deliveries are kept."""

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending, unleased delivery of an active subscription becomes due."""

    async def release_leases(self, owner: str | None = None) -> int:
        """Return leased deliveries to the queue (all, or one owner's); the count released."""

"""The Store protocol and the records it keeps.

The store is the only state shared between the inbound side and delivery: an inbound message, its
events and one delivery per matching subscription are written in one transaction (`ingest`)
before the SOAP acknowledgement is sent. Nothing here imports the other stages; callers convert
their own types into these records.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from digibridge.errors import DigibridgeError


def process_owner(pid: int | None = None) -> str:
    """The name a gateway process (this one, or `pid` on this host) leases work under: host and
    pid. A supervisor hands back by it what a worker held when it died."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


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
    #: Validation of the sink before use: `cloudevents` (the webhook spec's OPTIONS handshake),
    #: `none` (endpoint agreed out of band) or `vng` (a test POST with and without credential).
    handshake: str = "cloudevents"
    #: Requests per minute the subscriber asked for (`WebHook-Request-Rate`); None: no limit.
    rate: int | None = None
    #: Requests per minute the receiver granted (`WebHook-Allowed-Rate`); None: no limit (`*`).
    allowed_rate: int | None = None

    @property
    def rate_limit(self) -> int | None:
        """Requests per minute the dispatcher keeps to: the lower of asked and granted."""
        limits = [limit for limit in (self.rate, self.allowed_rate) if limit is not None]
        return min(limits) if limits else None


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
    #: The `sequence` attribute the store gave it (per source, zero-padded; also in `body`).
    sequence: str | None = None
    #: Where it stands in the feed: increasing in commit order, never reused (see
    #: `Store.list_events`).
    position: int = 0


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


@dataclass(frozen=True)
class QueueStats:
    """The delivery queue at one moment, for `/metrics` (counts only, never ids)."""

    #: Pending deliveries, leased (being sent) or not.
    pending: int
    #: Of `pending`: held by a dispatcher's lease right now.
    in_flight: int
    dead: int
    #: When the oldest pending delivery was created; None when nothing is pending.
    oldest_pending_since: datetime | None
    #: Endpoints per circuit state (states without endpoints are left out).
    circuits: Mapping[CircuitState, int] = field(default_factory=dict)


# -- terugmeldingen (the reverse path) ------------------------------------------------------


class TransportStatus(enum.StrEnum):
    """How far digibridge got handing a request to DigiMelding."""

    #: Accepted and committed; waiting in the outbox (also while being retried).
    ONTVANGEN = "ontvangen"
    #: DigiMelding answered with an `AnnotatieVerwijzing`.
    VERZONDEN = "verzonden"
    #: Given up: a fault that is not retried, or attempts exhausted.
    MISLUKT = "mislukt"


class RequestKind(enum.StrEnum):
    """What an outbox request does to its terugmelding."""

    MELDING = "melding"
    INTREKKING = "intrekking"


class HistoryKind(enum.StrEnum):
    #: The transport status of a request (`request_kind`) changed.
    TRANSPORT = "transport"
    #: The registry's DMKS status changed (seen by the poller).
    DMKS = "dmks"
    #: One attempt failed (a SOAP Fault with its DK code, or a transport error).
    FAULT = "fault"


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a terugmelding's history."""

    kind: HistoryKind
    at: datetime
    status: str | None = None
    previous: str | None = None
    request_kind: RequestKind | None = None
    #: A fault's DK code (`DK0004`), or `transport` for a connection error.
    code: str | None = None
    text: str | None = None
    #: Retried after this fault (False: given up).
    retried: bool | None = None
    #: A DMKS status change the lifecycle does not allow (recorded all the same).
    unexpected: bool = False
    #: Registry's time of a DMKS status change or of a receipt.
    registry_time: datetime | None = None


@dataclass(frozen=True)
class TerugmeldingRecord:
    """A terugmelding as stored: its owner, what was accepted, and its two statuses."""

    id: str
    #: The consumer that submitted it; only it (or an admin) sees it.
    owner: str
    registratie: str
    oin_basisregistratie: str
    oin_melder: str
    #: The accepted resource fields (lowerCamelCase JSON, attachment data left out).
    document: Mapping[str, Any]
    #: `@uuid` of the root `Terugmelding` annotation: the registry's handle on it.
    root_uuid: str
    transport_status: TransportStatus
    created_at: datetime
    updated_at: datetime
    dmks_status: str | None = None
    dmks_status_at: datetime | None = None
    #: `AnnotatieVerwijzing` and `Tijdstempel` of DigiMelding's receipt of the melding.
    annotatie_uuid: str | None = None
    verzonden_at: datetime | None = None
    #: Transport status of a withdrawal, None when none was asked.
    intrekking_status: TransportStatus | None = None


@dataclass(frozen=True)
class DmksRequest:
    """An `AnnotatieToevoegen` waiting in the outbox, exactly as it will be sent."""

    id: str
    terugmelding_id: str
    kind: RequestKind
    registratie: str
    oin_basisregistratie: str
    #: The serialised `AnnotatieBoom` element.
    annotatieboom: bytes
    root_uuid: str
    uuids: tuple[str, ...]
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    #: With a claimed request: who holds it and until when.
    lease_owner: str | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class IdempotencyKey:
    """`Idempotency-Key` of a create, scoped per consumer, with a digest of the body."""

    owner: str
    key: str
    body_digest: str


class IdempotencyConflict(StoreConflict):
    """The key was used before with another body."""


@dataclass(frozen=True)
class CreatedTerugmelding:
    record: TerugmeldingRecord
    #: True when an earlier create with the same key and body is answered again.
    replayed: bool


class DmksOutcomeKind(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class DmksOutcome:
    """What became of one attempt to send a `DmksRequest`."""

    kind: DmksOutcomeKind
    at: datetime
    #: SENT: the receipt.
    annotatie_uuid: str | None = None
    tijdstempel: datetime | None = None
    #: RETRY: when to try again.
    retry_at: datetime | None = None
    #: RETRY / FAILED: the DK code (or `transport`) and the text.
    code: str | None = None
    error: str | None = None


#: Builds the CloudEvent announcing a transport status change: (record after the change, request
#: kind, new status, time) -> the event to store.
TransportNotice = Callable[[TerugmeldingRecord, RequestKind, TransportStatus, datetime], NewEvent]


@dataclass(frozen=True)
class OpenTerugmelding:
    """A sent terugmelding whose DMKS status can still change: what the poller asks after."""

    id: str
    registratie: str
    oin_basisregistratie: str
    oin_melder: str
    root_uuid: str
    dmks_status: str | None


@dataclass(frozen=True)
class DmksStatusChange:
    """A DMKS status seen by the poller, to record if the stored status is still `previous`."""

    terugmelding_id: str
    previous: str | None
    status: str
    #: The registry's time of the change (`Tijdstempel` of the status entry).
    at: datetime
    unexpected: bool
    #: The `status-gewijzigd` CloudEvent; its id makes a re-observed change a no-op.
    event: NewEvent


class Store(Protocol):
    """Durable state of digibridge. Every method is a single transaction."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers (for `/readyz`)."""

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) whenever any instance sharing this store commits
        events or work that may be due, so the dispatcher and event streams look at once
        instead of at their next poll. A store only one process uses never calls it (its own
        writers wake it directly)."""

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

    async def list_subscriptions(
        self,
        *,
        owner: str | None = None,
        sink: str | None = None,
        types: Sequence[str] = (),
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Subscription]:
        """Subscriptions in (created_at, id) order, narrowed to one `owner`, one exact `sink`,
        and those whose `types` include every one of `types`; then `offset` and `limit`."""

    async def count_subscriptions(
        self, *, owner: str | None = None, sink: str | None = None, types: Sequence[str] = ()
    ) -> int:
        """How many subscriptions `list_subscriptions` with the same filters would give in all."""

    async def update_subscription(self, subscription: Subscription) -> Subscription | None:
        """Replace what a client may change (sink, types, source, filters, protocolsettings,
        sinkcredential, delivery settings) of the stored subscription with that id, keeping its
        id, owner, creation time and status; the stored result (None: unknown id). The next
        ingest matches with the new filters."""

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Delete it and its pending deliveries; False when it did not exist."""

    async def get_event(self, event_id: str) -> StoredEvent | None: ...

    async def list_events(
        self,
        *,
        after: int = 0,
        types: Sequence[str] = (),
        source: str | None = None,
        limit: int,
    ) -> list[StoredEvent]:
        """Up to `limit` events with a `position` above `after`, in position order, narrowed to
        those of one of `types` (empty: any) and of `source`.

        Positions grow in commit order, so a reader that resumes after the last position it saw
        never misses an event committed later (SQLite: the AUTOINCREMENT row id, one writer; a
        shared database: a counter row taken in the ingest transaction, held until commit)."""

    async def feed_head(self) -> int:
        """The highest position ever given (0 for an empty store): where a feed reader that
        wants only what comes next starts, and the bound a valid cursor cannot pass. Every
        event at or below it is committed: a `list_events` that starts after this call sees
        them all."""

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(
        self,
        *,
        subscription_id: str | None = None,
        status: DeliveryStatus | None = None,
        retrying: bool | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
        owner: str | None = None,
    ) -> list[Delivery]:
        """Deliveries in (created_at, id) order. `retrying` narrows pending ones to those with
        (True) or without (False) a failed attempt; `after` is the (created_at, id) of the last
        one of the previous page; `owner` keeps those of subscriptions that consumer owns."""

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
        `ordered` subscription, those with an earlier pending delivery of the same subject;
        and for a subscription with a `rate_limit` (requests per minute), all but one request
        per `60 / rate_limit` seconds (a batch claimed with it is that one request).

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

    async def queue_stats(self, *, now: datetime) -> QueueStats:
        """Counts of the delivery queue and circuit states (leases still valid at `now` count
        as in flight), read in one transaction."""

    # -- terugmeldingen ----------------------------------------------------------------------

    async def create_terugmelding(
        self,
        record: TerugmeldingRecord,
        request: DmksRequest,
        idempotency: IdempotencyKey | None = None,
    ) -> CreatedTerugmelding:
        """Store a terugmelding, its first history line and its outbox request, durably, in one
        transaction. With a key already used by the owner: the first record (`replayed`) when
        the body digest matches, IdempotencyConflict when it does not."""

    async def get_terugmelding(self, terugmelding_id: str) -> TerugmeldingRecord | None: ...

    async def list_terugmeldingen(
        self,
        *,
        owner: str | None = None,
        transport_status: TransportStatus | None = None,
        dmks_status: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TerugmeldingRecord]:
        """In (created_at, id) order; `owner` None: everyone's; `after` as for deliveries."""

    async def terugmelding_history(self, terugmelding_id: str) -> list[HistoryEntry]:
        """Oldest first."""

    async def queue_intrekking(
        self, request: DmksRequest, *, end_states: Collection[str]
    ) -> TerugmeldingRecord | None:
        """Queue a withdrawal (its transport status `ontvangen`) and its history line; None for
        an unknown terugmelding. StoreConflict when its melding failed to send, a withdrawal
        was already asked, or its DMKS status is one of `end_states`."""

    async def claim_dmks_requests(
        self, *, now: datetime, limit: int, lease_until: datetime, owner: str
    ) -> list[DmksRequest]:
        """Lease up to `limit` pending outbox requests due at `now`, oldest first, that nobody
        holds, and that have no earlier pending request of the same terugmelding (a withdrawal
        waits for its melding)."""

    async def complete_dmks_request(
        self,
        request: DmksRequest,
        outcome: DmksOutcome,
        notice: TransportNotice,
        matcher: SubscriptionMatcher,
    ) -> bool:
        """Record an attempt's outcome, only while `request`'s lease is still ours (False:
        it was taken over, nothing recorded). A transport status change is written to the
        history and announced by the `notice` event, stored like any event. A failed melding
        fails the requests queued behind it."""

    async def next_dmks_due_at(self) -> datetime | None:
        """When the earliest pending outbox request becomes claimable (lease included)."""

    async def release_dmks_leases(self, owner: str | None = None) -> int:
        """Return leased outbox requests to the queue (all, or one owner's); the count."""

    async def open_terugmeldingen(self, *, end_states: Collection[str]) -> list[OpenTerugmelding]:
        """Sent terugmeldingen whose DMKS status is not one of `end_states`, oldest first."""

    async def record_dmks_status(
        self, change: DmksStatusChange, matcher: SubscriptionMatcher
    ) -> bool:
        """Record a DMKS status change with its history line and event, if the stored status
        is still `change.previous` (False otherwise: nothing written)."""

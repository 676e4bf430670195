"""The delivery loop: claim due deliveries, send each (or each batch) as its own task, record
the outcome.

The store is the queue, and it also keeps what several dispatchers must agree on: leases, the
per-endpoint concurrency limit (counted in leases) and each endpoint's circuit breaker (updated
in the same transaction as the outcome, so the hot path costs no extra round trip). The loop
sleeps until the next delivery is due (capped by `idle_poll`, so deliveries made by other
processes or clock changes are noticed) or until `wake()`; it claims only as many deliveries as
it has free slots, so a lease is never taken for work that would wait. A finished send does not
write its outcome itself: it queues it and wakes the loop, which records every queued outcome
and claims work for the freed slots in one store transaction (`claim_due(completed=...)`), so
the store's single thread does one round trip per turn of the loop, not two per delivery, and a
freed slot is refilled at once. Until its outcome is recorded a send still holds its lease and
its slot. Leases outlive an
attempt (`lease` > 4 times the longest request timeout: an OAuth token fetch and a retry after 401
can precede the send), and a delivery whose lease ran out is handed to whoever claims it next;
the late owner's `complete` is then ignored by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from digibridge.clock import Clock, SystemClock
from digibridge.delivery.clients import Clients
from digibridge.delivery.guard import SinkGuard
from digibridge.delivery.oauth import TokenError, TokenSource
from digibridge.delivery.retry import RetryPolicy
from digibridge.delivery.sender import ResultKind, SendResult, attempts_of, event_body, send
from digibridge.events.filters import subscription_matches
from digibridge.events.notices import subscription_disabled
from digibridge.events.records import to_new_event
from digibridge.metrics import Metrics
from digibridge.store.types import (
    Attempt,
    CircuitPolicy,
    Completion,
    DeliveryJob,
    EndpointHealth,
    NewEvent,
    Outcome,
    OutcomeKind,
    Store,
    Subscription,
)
from digibridge.tracing import LocalSpans, Spans

#: How long to wait before retrying after the store itself failed.
_STORE_ERROR_PAUSE = 1.0
#: Shortest sleep when nothing could be claimed although something looked due (no busy loop).
_MIN_PAUSE = 0.05
#: Sends in flight at most, slow ones included, as a multiple of `concurrency`.
_SLOW_LANE_FACTOR = 4
#: The longest request timeout a subscription may ask for (seconds).
MAX_SUBSCRIPTION_TIMEOUT = 60.0
LOOPBACK = ("127.0.0.0/8", "::1/128")

logger = structlog.get_logger("digibridge.delivery")


def _notice(subscription: Subscription, reason: str, at: datetime) -> NewEvent:
    return to_new_event(subscription_disabled(subscription, reason, at))


class Dispatcher:
    """Sends the store's due deliveries; one per process (or several, each with its own owner)."""

    def __init__(
        self,
        store: Store,
        *,
        policy: RetryPolicy,
        clock: Clock | None = None,
        owner: str | None = None,
        concurrency: int = 16,
        per_endpoint: int | None = None,
        request_timeout: float = 10.0,
        lease: timedelta | None = None,
        idle_poll: float = 1.0,
        circuit: CircuitPolicy | None = None,
        guard: SinkGuard | None = None,
        rng: random.Random | None = None,
        origin: str | None = None,
        metrics: Metrics | None = None,
        spans: Spans | None = None,
        slow_after: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._store = store
        self._policy = policy
        self._clock: Clock = clock or SystemClock()
        self.owner = owner or f"dispatcher-{uuid.uuid4()}"
        self._concurrency = concurrency
        #: In-flight requests per endpoint, across every dispatcher on the store.
        self._per_endpoint = per_endpoint or concurrency
        self._request_timeout = request_timeout
        self._max_timeout = max(request_timeout, MAX_SUBSCRIPTION_TIMEOUT)
        # A lease must outlast an attempt, or a slow send would be handed out twice.
        if lease is None:
            lease = timedelta(seconds=4 * self._max_timeout + 5)
        else:
            # A short lease (a dead instance's claims are taken over sooner) caps every request
            # instead, so that a token fetch, a send and a retry after 401 still fit inside it.
            self._max_timeout = min(self._max_timeout, lease.total_seconds() / 4)
        self._lease = lease
        self._idle_poll = idle_poll
        #: Decides which addresses webhooks may go to (loopback only unless told otherwise).
        self.guard = guard or SinkGuard(LOOPBACK)
        self._health = EndpointHealth(
            policy=circuit or CircuitPolicy(), notice=_notice, matcher=subscription_matches
        )
        self._tokens = TokenSource(self._clock)
        self._rng = rng
        #: `WebHook-Request-Origin` on every delivery (the name the handshake offered).
        self.origin = origin
        self._metrics = metrics or Metrics()
        #: Where webhook requests are recorded as hops of their event's trace.
        self._spans: Spans = spans or LocalSpans()
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_timeout = 10.0
        #: In-flight sends and when each started (monotonic seconds).
        self._inflight: dict[asyncio.Task[None], float] = {}
        #: A send in flight longer than this stops counting against `concurrency`: an endpoint
        #: that hangs keeps its own slots (at most `per_endpoint`) but not everyone else's.
        #: All sends together stay under `_SLOW_LANE_FACTOR * concurrency`.
        self._slow_after = slow_after if slow_after is not None else min(1.0, request_timeout / 4)
        #: Endpoints whose last send was answered (any HTTP status). Any other endpoint's sends
        #: start in the slow lane (they keep their endpoint's slots, not the global ones): one
        #: not heard from yet, or whose last send timed out or could not connect. So a dead
        #: endpoint costs the others nothing at all, not even for `slow_after` after a start.
        self._answering: set[str] = set()
        #: Outcomes of finished sends not yet recorded, one list per request (a batch is one).
        self._completed: list[list[Completion]] = []
        self._finished: asyncio.Event | None = None

    def wake(self) -> None:
        """New work may be due (an ingest, a new subscription, a replay): look now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until `stop()`; store failures are logged and retried, never fatal."""
        self._finished = asyncio.Event()
        clients = Clients(self.guard, max_connections=max(100, self._concurrency))
        try:
            await self._loop(clients)
        finally:
            await clients.aclose()
            self._finished.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let in-flight sends finish for up to `timeout` seconds, then cancel
        them and release their leases so they are sent again at once by the next dispatcher."""
        self._stop_timeout = timeout
        self._stopping = True
        self._wake.set()
        if self._finished is not None:
            await self._finished.wait()

    async def _loop(self, clients: Clients) -> None:
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    delay = await self._dispatch_once(clients)
                except Exception:
                    logger.exception("dispatcher_store_error", owner=self.owner)
                    delay = _STORE_ERROR_PAUSE
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            await self._drain()

    async def _dispatch_once(self, clients: Clients) -> float:
        """Record finished sends, claim and start what fits; the seconds to sleep before
        looking again."""
        # Slots of finished sends are free once this claim has recorded their outcomes.
        completed = self._take_completed()
        started = time.monotonic()
        free = max(
            min(
                self._concurrency - self._busy(started),
                _SLOW_LANE_FACTOR * self._concurrency - len(self._inflight),
            ),
            0,
        )
        if free == 0 and not completed:
            return self._until_slot_frees(started)  # or a finishing task wakes us
        now = self._clock.now()
        lease_until = now + self._lease
        try:
            jobs = await self._store.claim_due(
                now=now,
                limit=free,
                lease_until=lease_until,
                owner=self.owner,
                per_endpoint=self._per_endpoint,
                completed=completed,
            )
        except Exception:
            if completed:
                # As when a single outcome could not be written: the leases run out and the
                # deliveries go out again (at-least-once).
                logger.warning("delivery_outcomes_lost", owner=self.owner, count=len(completed))
            raise
        for group in await self._group(jobs, now, lease_until):
            task = asyncio.create_task(
                self._deliver(group, clients), name=f"deliver-{group[0].delivery.id}"
            )
            lane = 0.0 if group[0].subscription.endpoint in self._answering else self._slow_after
            self._inflight[task] = time.monotonic() - lane
            task.add_done_callback(self._task_done)
        if len(jobs) == free:
            return self._until_slot_frees(time.monotonic())  # or a finishing task wakes us
        due = await self._store.next_due_at()
        if due is None:
            return self._idle_poll
        wait = (due - self._clock.now()).total_seconds()
        if wait <= 0 and not jobs:
            return _MIN_PAUSE
        return min(max(wait, 0.0), self._idle_poll)

    async def _group(
        self, jobs: list[DeliveryJob], now: datetime, lease_until: datetime
    ) -> list[list[DeliveryJob]]:
        """One job per request, except for batch-mode subscriptions: their due deliveries are
        claimed together and cut into batches of at most `batch_max_events` and
        `batch_max_bytes`."""
        groups: list[list[DeliveryJob]] = []
        batches: dict[str, list[DeliveryJob]] = {}
        for job in jobs:
            if job.subscription.delivery.mode == "batch":
                batches.setdefault(job.subscription.id, []).append(job)
            else:
                groups.append([job])
        for claimed in batches.values():
            settings = claimed[0].subscription.delivery
            batch = claimed + await self._store.claim_batch(
                claimed[0],
                now=now,
                limit=settings.batch_max_events - len(claimed),
                lease_until=lease_until,
            )
            groups += _cut(batch, settings.batch_max_events, settings.batch_max_bytes)
        return groups

    def _take_completed(self) -> list[Completion]:
        completed = [done for request in self._completed for done in request]
        self._completed.clear()
        return completed

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()

    def _note_answer(self, endpoint: str, result: SendResult) -> None:
        if result.status is not None:
            self._answering.add(endpoint)
        elif result.kind is ResultKind.RETRYABLE:
            self._answering.discard(endpoint)

    def _busy(self, now: float) -> int:
        """Sends that hold a slot: those in flight for less than `slow_after`."""
        return sum(1 for started in self._inflight.values() if now - started < self._slow_after)

    def _until_slot_frees(self, now: float) -> float:
        """How long to sleep when all slots are busy: until the oldest busy send turns slow
        (and gives its slot up), at most `idle_poll`."""
        ages = [now - started for started in self._inflight.values()]
        busy = [age for age in ages if age < self._slow_after]
        if not busy:
            return _MIN_PAUSE
        return min(max(self._slow_after - max(busy), _MIN_PAUSE), self._idle_poll)

    async def _deliver(self, jobs: list[DeliveryJob], clients: Clients) -> None:
        first = jobs[0]
        correlation = {
            "message_id": first.event.message_id,
            "event_id": first.event.id,
            "delivery_id": first.delivery.id,
            "subscription_id": first.subscription.id,
        }
        # Each send is its own task: what is bound here is on every line it logs, down to the
        # OAuth token source and the sink guard, and on no other task's.
        structlog.contextvars.bind_contextvars(**correlation)
        log = logger.bind(**correlation)
        if len(jobs) > 1:
            log = log.bind(batch=len(jobs))
        try:
            attempts, result = await self._attempt(jobs, clients)
            # A batch is one request: its endpoint's health counts it once.
            healths = [self._health] + [None] * (len(jobs) - 1)
            completions = [
                Completion(job, attempt, self._outcome(job, result), health)
                for job, attempt, health in zip(jobs, attempts, healths, strict=True)
            ]
        except Exception:
            # The lease runs out and the delivery is tried again; nothing is lost.
            log.exception("delivery_error")
            return
        self._completed.append(completions)
        self._note_answer(first.subscription.endpoint, result)
        self._metrics.delivery(
            result=completions[0].outcome.kind.value,
            status=attempts[0].status_code,
            mode=first.subscription.delivery.mode,
            seconds=attempts[0].duration_ms / 1000,
        )
        _log_outcome(log, attempts[0].number, attempts[0].status_code, completions[0].outcome)

    async def _attempt(
        self, jobs: Sequence[DeliveryJob], clients: Clients
    ) -> tuple[list[Attempt], SendResult]:
        """Send once: with an OAuth token when the subscription wants one (fetched again and
        the request repeated once when the sink answers 401)."""
        subscription = jobs[0].subscription
        settings = subscription.delivery
        timeout = min(settings.timeout or self._request_timeout, self._max_timeout)
        now = self._clock.now()
        try:
            client = clients.for_tls(settings.tls)
        except (ssl.SSLError, ValueError) as error:
            result = SendResult(ResultKind.FAILED, f"client TLS settings unusable: {error}")
            return attempts_of(jobs, now, result), result
        if settings.oauth is None:
            return await send(
                jobs, client, now=now, timeout=timeout, origin=self.origin, spans=self._spans
            )
        started = time.perf_counter()
        oauth = settings.oauth

        async def with_token(at: datetime) -> tuple[list[Attempt], SendResult]:
            bearer = await self._tokens.token(oauth, clients.tokens(), timeout)
            return await send(
                jobs,
                client,
                now=at,
                timeout=timeout,
                bearer=bearer,
                origin=self.origin,
                spans=self._spans,
            )

        try:
            attempts, result = await with_token(now)
            if result.status == 401:
                # The token may have been revoked before it expired: one fresh one, once.
                self._tokens.invalidate(oauth)
                attempts, result = await with_token(self._clock.now())
        except TokenError as error:
            result = SendResult(ResultKind.RETRYABLE, f"OAuth: {error}")
            duration_ms = (time.perf_counter() - started) * 1000
            return attempts_of(jobs, now, result, duration_ms=duration_ms), result
        return attempts, result

    def _outcome(self, job: DeliveryJob, result: SendResult) -> Outcome:
        failed = result.endpoint_failed
        if result.kind is ResultKind.SUCCEEDED:
            return Outcome(OutcomeKind.SUCCEEDED, endpoint_failed=failed)
        if result.kind is ResultKind.GONE:
            return Outcome(
                OutcomeKind.DEAD,
                reason=result.reason,
                disable_subscription=f"{result.reason} from sink",
                endpoint_failed=failed,
            )
        retry_4xx = (
            job.subscription.delivery.retry_4xx
            and result.status is not None
            and 400 <= result.status < 500
        )
        if result.kind is ResultKind.FAILED and not retry_4xx:
            return Outcome(OutcomeKind.DEAD, reason=result.reason, endpoint_failed=failed)
        delivery = job.delivery
        attempts_done = delivery.attempts + 1 - delivery.schedule_offset
        retry_at = self._policy.next_attempt(
            attempts_done,
            delivery.schedule_start or delivery.created_at,
            self._clock.now(),
            result.retry_after,
            self._rng,
        )
        if retry_at is None:
            return Outcome(
                OutcomeKind.DEAD,
                reason=f"gave up after {delivery.attempts + 1} attempts; last: {result.reason}",
                endpoint_failed=failed,
            )
        return Outcome(OutcomeKind.RETRY, retry_at=retry_at, endpoint_failed=failed)

    async def _drain(self) -> None:
        """Wait for in-flight sends up to the stop timeout, cancel the rest, record the outcomes
        of those that finished, then release the leases of the cancelled ones."""
        pending = set(self._inflight)
        if pending and self._stopping:
            _done, pending = await asyncio.wait(pending, timeout=self._stop_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._record_completed()
        if pending:
            try:
                released = await asyncio.shield(self._store.release_leases(self.owner))
            except Exception:
                logger.exception("dispatcher_release_failed", owner=self.owner)
            else:
                logger.info("dispatcher_leases_released", owner=self.owner, released=released)

    async def _record_completed(self) -> None:
        """Record queued outcomes without claiming (when stopping)."""
        completed = self._take_completed()
        if not completed:
            return
        now = self._clock.now()
        try:
            await asyncio.shield(
                self._store.claim_due(
                    now=now, limit=0, lease_until=now, owner=self.owner, completed=completed
                )
            )
        except Exception:
            logger.exception("delivery_outcomes_lost", owner=self.owner, count=len(completed))


def _cut(jobs: list[DeliveryJob], max_events: int, max_bytes: int) -> list[list[DeliveryJob]]:
    """Consecutive batches within both limits (an event larger than `max_bytes` goes alone)."""
    batches: list[list[DeliveryJob]] = []
    current: list[DeliveryJob] = []
    size = 2  # the brackets
    for job in jobs:
        length = len(event_body(job)) + 1
        if current and (len(current) >= max_events or size + length > max_bytes):
            batches.append(current)
            current, size = [], 2
        current.append(job)
        size += length
    if current:
        batches.append(current)
    return batches


def _log_outcome(log: Any, number: int, status: int | None, outcome: Outcome) -> None:
    if outcome.kind is OutcomeKind.SUCCEEDED:
        log.info("delivery_succeeded", attempt=number, status_code=status)
    elif outcome.kind is OutcomeKind.RETRY:
        retry_at = outcome.retry_at.isoformat() if outcome.retry_at else None
        log.info("delivery_retry_scheduled", attempt=number, status_code=status, retry_at=retry_at)
    else:
        log.warning("delivery_dead", attempt=number, status_code=status, reason=outcome.reason)
    if outcome.disable_subscription is not None:
        log.warning("subscription_disabled", reason=outcome.disable_subscription)

"""The delivery loop: claim due deliveries, send each as its own task, record the outcome.

The store is the queue. The loop sleeps until the next delivery is due (capped by `idle_poll`,
so deliveries made by other processes or clock changes are noticed) or until `wake()`; it claims
only as many deliveries as it has free slots, so a lease is never taken for work that would
wait. Leases outlive a request (`lease` > `request_timeout`), and a delivery whose lease ran out
is handed to whoever claims it next; the late owner's `complete` is then ignored by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import timedelta
from typing import Any

import httpx
import structlog

from digibridge.clock import Clock, SystemClock
from digibridge.delivery.retry import RetryPolicy
from digibridge.delivery.sender import ResultKind, SendResult, send
from digibridge.store.types import DeliveryJob, Outcome, OutcomeKind, Store

#: How long to wait before retrying after the store itself failed.
_STORE_ERROR_PAUSE = 1.0
#: Shortest sleep when nothing could be claimed although something looked due (no busy loop).
_MIN_PAUSE = 0.05

logger = structlog.get_logger("digibridge.delivery")


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
        request_timeout: float = 10.0,
        lease: timedelta = timedelta(seconds=60),
        idle_poll: float = 1.0,
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._store = store
        self._policy = policy
        self._clock: Clock = clock or SystemClock()
        self.owner = owner or f"dispatcher-{uuid.uuid4()}"
        self._concurrency = concurrency
        self._request_timeout = request_timeout
        # A lease must outlast a request, or a slow send would be handed out twice.
        self._lease = max(lease, timedelta(seconds=2 * request_timeout + 5))
        self._idle_poll = idle_poll
        self._client = client
        self._rng = rng
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_timeout = 10.0
        self._inflight: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Event | None = None

    def wake(self) -> None:
        """New work may be due (an ingest, a new subscription, a replay): look now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until `stop()`; store failures are logged and retried, never fatal."""
        self._finished = asyncio.Event()
        try:
            if self._client is not None:
                await self._loop(self._client)
            else:
                async with httpx.AsyncClient(follow_redirects=False) as client:
                    await self._loop(client)
        finally:
            self._finished.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let in-flight sends finish for up to `timeout` seconds, then cancel
        them and release their leases so they are sent again at once by the next dispatcher."""
        self._stop_timeout = timeout
        self._stopping = True
        self._wake.set()
        if self._finished is not None:
            await self._finished.wait()

    async def _loop(self, client: httpx.AsyncClient) -> None:
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    delay = await self._dispatch_once(client)
                except Exception:
                    logger.exception("dispatcher_store_error", owner=self.owner)
                    delay = _STORE_ERROR_PAUSE
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            await self._drain()

    async def _dispatch_once(self, client: httpx.AsyncClient) -> float:
        """Claim and start what fits; the seconds to sleep before looking again."""
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return self._idle_poll  # a finishing task wakes us
        now = self._clock.now()
        jobs = await self._store.claim_due(
            now=now, limit=free, lease_until=now + self._lease, owner=self.owner
        )
        for job in jobs:
            task = asyncio.create_task(
                self._deliver(job, client), name=f"deliver-{job.delivery.id}"
            )
            self._inflight.add(task)
            task.add_done_callback(self._task_done)
        if len(jobs) == free:
            return self._idle_poll  # all slots busy; a finishing task wakes us
        due = await self._store.next_due_at()
        if due is None:
            return self._idle_poll
        wait = (due - self._clock.now()).total_seconds()
        if wait <= 0 and not jobs:
            return _MIN_PAUSE
        return min(max(wait, 0.0), self._idle_poll)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _deliver(self, job: DeliveryJob, client: httpx.AsyncClient) -> None:
        log = logger.bind(
            delivery_id=job.delivery.id, event_id=job.event.id, subscription_id=job.subscription.id
        )
        try:
            attempt, result = await send(
                job, client, now=self._clock.now(), timeout=self._request_timeout
            )
            outcome = self._outcome(job, result)
            await self._store.complete(job, attempt, outcome)
        except Exception:
            # The lease runs out and the delivery is tried again; nothing is lost.
            log.exception("delivery_error")
            return
        _log_outcome(log, attempt.number, attempt.status_code, outcome)

    def _outcome(self, job: DeliveryJob, result: SendResult) -> Outcome:
        if result.kind is ResultKind.SUCCEEDED:
            return Outcome(OutcomeKind.SUCCEEDED)
        if result.kind is ResultKind.GONE:
            return Outcome(
                OutcomeKind.DEAD,
                reason=result.reason,
                disable_subscription=f"{result.reason} from sink",
            )
        if result.kind is ResultKind.FAILED:
            return Outcome(OutcomeKind.DEAD, reason=result.reason)
        attempts_done = job.delivery.attempts + 1
        retry_at = self._policy.next_attempt(
            attempts_done,
            job.delivery.created_at,
            self._clock.now(),
            result.retry_after,
            self._rng,
        )
        if retry_at is None:
            return Outcome(
                OutcomeKind.DEAD,
                reason=f"gave up after {attempts_done} attempts; last: {result.reason}",
            )
        return Outcome(OutcomeKind.RETRY, retry_at=retry_at)

    async def _drain(self) -> None:
        """Wait for in-flight sends up to the stop timeout, cancel the rest, release leases."""
        if not self._inflight:
            return
        pending = set(self._inflight)
        if self._stopping:
            _done, pending = await asyncio.wait(pending, timeout=self._stop_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            try:
                released = await asyncio.shield(self._store.release_leases(self.owner))
            except Exception:
                logger.exception("dispatcher_release_failed", owner=self.owner)
            else:
                logger.info("dispatcher_leases_released", owner=self.owner, released=released)


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

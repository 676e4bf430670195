"""The embedded store: one SQLite file, owned by one process, used from one thread.

sqlite3 connections are blocking and not meant to be shared between threads, so the connection
lives on a single-worker executor and every `Store` method is one job (one transaction) on it.
An exclusive `flock` on `<db>.lock` makes the file one process's, which is what makes
`release_leases()` at start-up safe: no other live process can hold a lease.

Deleting a subscription deletes all its deliveries and their attempts (pending, succeeded and
dead alike): the delivery log is read per subscription, so orphaned rows would be unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from digibridge.clock import Clock, SystemClock
from digibridge.store._migrations import apply_sqlite
from digibridge.store.types import (
    Attempt,
    Delivery,
    DeliveryJob,
    DeliverySettings,
    DeliveryStatus,
    InboundMessage,
    IngestResult,
    NewEvent,
    Outcome,
    OutcomeKind,
    StoredEvent,
    StoreError,
    Subscription,
    SubscriptionMatcher,
    SubscriptionStatus,
)

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 5000

_DELIVERY_COLUMNS = (
    "d.id, d.subscription_id, d.event_id, d.status, d.attempts, d.next_attempt_at, "
    "d.created_at, d.updated_at, d.last_error, d.last_status_code"
)


def _ts(value: datetime) -> str:
    """Fixed-width UTC text, so SQL text comparison is time comparison."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime given to the store: {value!r}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _dt_or_none(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


class SqliteStore:
    """`Store` on a SQLite file (WAL, `synchronous=FULL`, foreign keys on)."""

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the file for this process, connect, and apply pending migrations."""
        if self._executor is not None:
            raise StoreError(f"{self.path} is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digibridge-sqlite")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the folder of {self.path}: {error}") from error
        self._lock_fd = _lock(self.path)
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            apply_sqlite(connection, self._clock.now())
        except sqlite3.Error as error:
            _unlock(self._lock_fd)
            self._lock_fd = None
            raise StoreError(f"cannot open {self.path}: {error}") from error
        except BaseException:
            _unlock(self._lock_fd)
            self._lock_fd = None
            raise
        self._connection = connection

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close_sync)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._lock_fd is not None:
            _unlock(self._lock_fd)
            self._lock_fd = None

    async def ping(self) -> bool:
        try:
            return await self._read(lambda c: c.execute("SELECT 1").fetchone()[0] == 1)
        except StoreError:
            return False

    async def applied_migrations(self) -> list[int]:
        """The schema versions recorded in `schema_migrations` (for tests and diagnostics)."""
        return await self._read(
            lambda c: [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        )

    # -- plumbing ----------------------------------------------------------------------------

    async def _run(self, function: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError(f"{self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def _write(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(partial(self._transaction, function, "BEGIN IMMEDIATE"))

    async def _read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(partial(self._transaction, function, "BEGIN"))

    def _transaction(self, function: Callable[[sqlite3.Connection], T], begin: str) -> T:
        connection = self._connection
        if connection is None:
            raise StoreError(f"{self.path} is not open")
        try:
            connection.execute(begin)
            try:
                result = function(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StoreError(f"{self.path}: {error}") from error
        return result

    # -- ingest ------------------------------------------------------------------------------

    async def ingest(
        self,
        message: InboundMessage,
        events: Sequence[NewEvent],
        matcher: SubscriptionMatcher,
    ) -> IngestResult:
        return await self._write(partial(self._ingest, message, tuple(events), matcher))

    def _ingest(
        self,
        message: InboundMessage,
        events: tuple[NewEvent, ...],
        matcher: SubscriptionMatcher,
        c: sqlite3.Connection,
    ) -> IngestResult:
        first = c.execute(
            "SELECT message_id FROM messages WHERE message_id = ? OR kenmerk = ? LIMIT 1",
            (message.message_id, message.kenmerk),
        ).fetchone()
        if first is not None:
            ids = c.execute(
                "SELECT id FROM events WHERE message_id = ? ORDER BY seq", (first[0],)
            ).fetchall()
            return IngestResult(
                duplicate=True,
                event_ids=tuple(r[0] for r in ids),
                original_message_id=first[0],
                deliveries_created=0,
            )
        now = _ts(self._clock.now())
        c.execute(
            "INSERT INTO messages (message_id, kenmerk, basisregistratie, gebeurtenissoort,"
            " sender_oin, received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                message.message_id,
                message.kenmerk,
                message.basisregistratie,
                message.gebeurtenissoort,
                message.sender_oin,
                _ts(message.received_at),
                message.raw,
            ),
        )
        subscriptions = [
            _subscription(row)
            for row in c.execute("SELECT * FROM subscriptions WHERE status = 'active'")
        ]
        created = 0
        for event in events:
            c.execute(
                "INSERT INTO events (id, message_id, type, source, subject, time, attributes,"
                " body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.id,
                    message.message_id,
                    event.type,
                    event.source,
                    event.subject,
                    None if event.time is None else _ts(event.time),
                    json.dumps(dict(event.attributes), default=str),
                    event.body,
                    now,
                ),
            )
            for subscription in subscriptions:
                if matcher(subscription, event):
                    c.execute(
                        "INSERT INTO deliveries (id, subscription_id, event_id, status, attempts,"
                        " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                        (str(uuid.uuid4()), subscription.id, event.id, "pending", now, now, now),
                    )
                    created += 1
        return IngestResult(
            duplicate=False,
            event_ids=tuple(e.id for e in events),
            original_message_id=message.message_id,
            deliveries_created=created,
        )

    # -- subscriptions -----------------------------------------------------------------------

    async def create_subscription(self, subscription: Subscription) -> None:
        s = subscription
        row = (
            s.id,
            s.sink,
            s.protocol,
            json.dumps(list(s.types)),
            s.source,
            json.dumps([dict(f) for f in s.filters]),
            json.dumps(dict(s.protocolsettings)),
            s.sinkcredential,
            s.delivery.secret,
            s.delivery.mode,
            int(s.delivery.ordered),
            s.delivery.form,
            s.status.value,
            s.status_reason,
            _ts(s.created_at),
        )
        await self._write(
            lambda c: c.execute(
                "INSERT INTO subscriptions (id, sink, protocol, types, source, filters,"
                " protocolsettings, sinkcredential, secret, mode, ordered, form, status,"
                " status_reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT * FROM subscriptions WHERE id = ?", (subscription_id,)
            ).fetchone()
        )
        return None if row is None else _subscription(row)

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._read(
            lambda c: c.execute("SELECT * FROM subscriptions ORDER BY created_at, id").fetchall()
        )
        return [_subscription(row) for row in rows]

    async def delete_subscription(self, subscription_id: str) -> bool:
        # Deliveries and their attempts go by ON DELETE CASCADE.
        deleted = await self._write(
            lambda c: c.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
        )
        return deleted.rowcount > 0

    # -- reads -------------------------------------------------------------------------------

    async def get_event(self, event_id: str) -> StoredEvent | None:
        row = await self._read(
            lambda c: c.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        )
        return None if row is None else _event(row)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ?",  # noqa: S608
                (delivery_id,),
            ).fetchone()
        )
        return None if row is None else _delivery(row)

    async def list_deliveries(
        self, *, subscription_id: str | None = None, status: DeliveryStatus | None = None
    ) -> list[Delivery]:
        sql = (
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608
            " WHERE (:sub IS NULL OR d.subscription_id = :sub)"
            " AND (:status IS NULL OR d.status = :status) ORDER BY d.created_at, d.id"
        )
        parameters = {"sub": subscription_id, "status": None if status is None else status.value}
        rows = await self._read(lambda c: c.execute(sql, parameters).fetchall())
        return [_delivery(row) for row in rows]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY number", (delivery_id,)
            ).fetchall()
        )
        return [
            Attempt(
                delivery_id=row["delivery_id"],
                number=row["number"],
                started_at=_dt(row["started_at"]),
                duration_ms=row["duration_ms"],
                status_code=row["status_code"],
                error=row["error"],
                response_excerpt=row["response_excerpt"],
            )
            for row in rows
        ]

    # -- delivery queue ----------------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, limit: int, lease_until: datetime, owner: str
    ) -> list[DeliveryJob]:
        return await self._write(partial(self._claim_due, now, limit, lease_until, owner))

    def _claim_due(
        self, now: datetime, limit: int, lease_until: datetime, owner: str, c: sqlite3.Connection
    ) -> list[DeliveryJob]:
        at, until = _ts(now), _ts(lease_until)
        rows = c.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608
            " JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= :now AND s.status = 'active'"
            " AND (d.lease_until IS NULL OR d.lease_until <= :now)"
            " ORDER BY d.next_attempt_at, d.created_at LIMIT :limit",
            {"now": at, "limit": limit},
        ).fetchall()
        jobs: list[DeliveryJob] = []
        subscriptions: dict[str, Subscription] = {}
        for row in rows:
            c.execute(
                "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id = ?",
                (owner, until, row["id"]),
            )
            sub_id = row["subscription_id"]
            if sub_id not in subscriptions:
                sub_row = c.execute("SELECT * FROM subscriptions WHERE id = ?", (sub_id,))
                subscriptions[sub_id] = _subscription(sub_row.fetchone())
            event_row = c.execute("SELECT * FROM events WHERE id = ?", (row["event_id"],))
            jobs.append(
                DeliveryJob(
                    delivery=_delivery(row),
                    subscription=subscriptions[sub_id],
                    event=_event(event_row.fetchone()),
                    lease_until=_dt(until),
                    lease_owner=owner,
                )
            )
        return jobs

    async def complete(self, job: DeliveryJob, attempt: Attempt, outcome: Outcome) -> None:
        await self._write(partial(self._complete, job, attempt, outcome))

    def _complete(
        self, job: DeliveryJob, attempt: Attempt, outcome: Outcome, c: sqlite3.Connection
    ) -> None:
        held = c.execute(
            "SELECT 1 FROM deliveries WHERE id = ? AND status = 'pending'"
            " AND lease_owner = ? AND lease_until = ?",
            (job.delivery.id, job.lease_owner, _ts(job.lease_until)),
        ).fetchone()
        if held is None:
            return  # the lease expired and someone else took the delivery over
        c.execute(
            "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code,"
            " error, response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                job.delivery.id,
                attempt.number,
                _ts(attempt.started_at),
                attempt.duration_ms,
                attempt.status_code,
                attempt.error,
                attempt.response_excerpt,
            ),
        )
        status, next_at, error = _apply(outcome, attempt)
        c.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
            " lease_owner = NULL, lease_until = NULL, updated_at = ?, last_error = ?,"
            " last_status_code = ? WHERE id = ?",
            (
                status,
                next_at,
                _ts(self._clock.now()),
                error,
                attempt.status_code,
                job.delivery.id,
            ),
        )
        if outcome.disable_subscription is not None:
            c.execute(
                "UPDATE subscriptions SET status = 'disabled', status_reason = ? WHERE id = ?",
                (outcome.disable_subscription, job.subscription.id),
            )

    async def next_due_at(self) -> datetime | None:
        # A leased delivery becomes claimable when its lease expires, so that time counts.
        row = await self._read(
            lambda c: c.execute(
                "SELECT MIN(MAX(d.next_attempt_at, COALESCE(d.lease_until, d.next_attempt_at)))"
                " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
                " WHERE d.status = 'pending' AND s.status = 'active'"
            ).fetchone()
        )
        return _dt_or_none(row[0])

    async def release_leases(self, owner: str | None = None) -> int:
        cursor = await self._write(
            lambda c: c.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner IS NOT NULL AND (:owner IS NULL OR lease_owner = :owner)",
                {"owner": owner},
            )
        )
        return cursor.rowcount


def _apply(outcome: Outcome, attempt: Attempt) -> tuple[str, str | None, str | None]:
    """The delivery's new (status, next_attempt_at, last_error) for an outcome."""
    if outcome.kind is OutcomeKind.SUCCEEDED:
        return DeliveryStatus.SUCCEEDED.value, None, None
    if outcome.kind is OutcomeKind.RETRY:
        if outcome.retry_at is None:
            raise StoreError("a RETRY outcome needs retry_at")
        return DeliveryStatus.PENDING.value, _ts(outcome.retry_at), attempt.error
    return DeliveryStatus.DEAD.value, None, outcome.reason or attempt.error


def _subscription(row: sqlite3.Row) -> Subscription:
    filters: list[dict[str, Any]] = json.loads(row["filters"])
    return Subscription(
        id=row["id"],
        sink=row["sink"],
        delivery=DeliverySettings(
            secret=row["secret"],
            mode=row["mode"],
            ordered=bool(row["ordered"]),
            form=row["form"],
        ),
        created_at=_dt(row["created_at"]),
        protocol=row["protocol"],
        types=tuple(json.loads(row["types"])),
        source=row["source"],
        filters=tuple(filters),
        protocolsettings=json.loads(row["protocolsettings"]),
        sinkcredential=row["sinkcredential"],
        status=SubscriptionStatus(row["status"]),
        status_reason=row["status_reason"],
    )


def _event(row: sqlite3.Row) -> StoredEvent:
    return StoredEvent(
        id=row["id"],
        type=row["type"],
        source=row["source"],
        subject=row["subject"],
        time=_dt_or_none(row["time"]),
        body=bytes(row["body"]),
        message_id=row["message_id"],
        created_at=_dt(row["created_at"]),
    )


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        subscription_id=row["subscription_id"],
        event_id=row["event_id"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=_dt_or_none(row["next_attempt_at"]),
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
        last_error=row["last_error"],
        last_status_code=row["last_status_code"],
    )


def _lock(path: Path) -> int:
    """Take the process lock on `<db>.lock`, recording our pid in it; its descriptor."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(f"{path} is in use by another digibridge process (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)

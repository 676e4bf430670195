"""The embedded store: one SQLite file, owned by one process, used from one thread.

sqlite3 connections are blocking and not meant to be shared between threads, so the connection
lives on a single-worker executor and every `Store` method is one job (one transaction) on it.
An exclusive `flock` on `<db>.lock` makes the file one process's, which is what makes
`release_leases()` at start-up safe: no other live process can hold a lease.

The workers of `serve --workers N` share the file their parent owns (`shared=True`): each takes
`<db>.write-lock` around its write transactions and notices the others' commits through
`PRAGMA data_version` (`_file_locks.py`).

Deleting a subscription deletes all its deliveries and their attempts (pending, succeeded and
dead alike): the delivery log is read per subscription, so orphaned rows would be unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from digibridge.clock import Clock, SystemClock
from digibridge.store import _file_locks
from digibridge.store import _sqlite_terugmeldingen as _tm
from digibridge.store._circuit import failing_too_long, new_circuit, record
from digibridge.store._codec import options_json, settings_from
from digibridge.store._migrations import apply_sqlite
from digibridge.store._sequence import format_sequence, with_sequence
from digibridge.store.types import (
    Attempt,
    Circuit,
    CircuitState,
    Completion,
    CreatedTerugmelding,
    Delivery,
    DeliveryJob,
    DeliverySettings,
    DeliveryStatus,
    DmksOutcome,
    DmksRequest,
    DmksStatusChange,
    EndpointHealth,
    HistoryEntry,
    IdempotencyKey,
    InboundMessage,
    IngestResult,
    NewEvent,
    OpenTerugmelding,
    Outcome,
    OutcomeKind,
    PurgeResult,
    QueueStats,
    StoreConflict,
    StoredEvent,
    StoreError,
    Subscription,
    SubscriptionMatcher,
    SubscriptionStatus,
    TerugmeldingRecord,
    TransportNotice,
    TransportStatus,
)

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 5000
#: How a write transaction begins: with the write lock of the file at once.
_BEGIN_WRITE = "BEGIN IMMEDIATE"

_DELIVERY_FIELDS = (
    "id, subscription_id, event_id, status, attempts, next_attempt_at, created_at, updated_at,"
    " last_error, last_status_code, schedule_start, schedule_offset"
)
#: The same, of the deliveries table named `d`.
_DELIVERY_COLUMNS = ", ".join(f"d.{field.strip()}" for field in _DELIVERY_FIELDS.split(","))

#: Tables joined by the claim queries: the delivery `d`, its subscription `s`, event `e`, and the
#: circuit `c` of the subscription's endpoint.
_QUEUE_JOINS = (
    " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
    " JOIN events e ON e.id = d.event_id LEFT JOIN circuits c ON c.endpoint = s.endpoint"
)
#: For an ordered subscription: no earlier pending delivery of the same subject.
_IN_ORDER = (
    "(s.ordered = 0 OR e.subject IS NULL OR NOT EXISTS ("
    " SELECT 1 FROM deliveries p JOIN events pe ON pe.id = p.event_id"
    " WHERE p.subscription_id = d.subscription_id AND p.status = 'pending'"
    " AND pe.subject = e.subject AND pe.seq < e.seq))"
)
#: The circuit `c` of the endpoint lets a request through: closed, or open/half-open with its
#: wait over (the probe).
_CIRCUIT_LETS_THROUGH = (
    "(c.state IS NULL OR c.state = 'closed' OR (c.state = 'open' AND c.retry_at <= :now)"
    " OR (c.state = 'half_open' AND c.probe_until <= :now))"
)
#: A rate-limited subscription `s` may send its next request.
_RATE_LETS_THROUGH = "(s.rate_limit IS NULL OR s.rate_next_at IS NULL OR s.rate_next_at <= :now)"
#: A pending delivery that may be claimed at :now once due: subscription active, not leased,
#: circuit closed (or open/half-open with its wait over: the probe), and in order.
_CLAIMABLE = (
    " d.status = 'pending' AND s.status = 'active'"
    " AND (d.lease_until IS NULL OR d.lease_until <= :now)"
    f" AND {_CIRCUIT_LETS_THROUGH} AND {_IN_ORDER}"
)
#: Per endpoint, the leases running now (for the per-endpoint concurrency limit); reads the
#: small partial index of leased deliveries.
_BUSY = (
    "SELECT s.endpoint AS endpoint, COUNT(*) AS n FROM deliveries d"
    " JOIN subscriptions s ON s.id = d.subscription_id"
    # `+d.status`: drive the query from the leased (small) index, not the pending (large) one.
    " WHERE d.lease_until > :now AND +d.status = 'pending' GROUP BY s.endpoint"
)
#: Claimable due deliveries, oldest first. The order is the `deliveries_due` index's own
#: (status, next_attempt_at, rowid = insertion order), so the rows stream without a sort and a
#: claim reads only as far as it needs: while no endpoint is at its limit, every row it reads
#: it takes.
_DUE = (
    f"SELECT d.id, s.endpoint, c.state AS circuit, s.id AS sub, s.rate_limit{_QUEUE_JOINS}"
    f" WHERE d.status = 'pending' AND d.next_attempt_at <= :now AND {_CLAIMABLE}"
    f" AND {_RATE_LETS_THROUGH} ORDER BY d.next_attempt_at, d.rowid"
)
#: The same, once some endpoints are at their limit (`:full`, a JSON list) or some
#: subscriptions have had their one request (`:spent`), without them, and without the
#: deliveries already taken (`:taken`). A hanging endpoint's backlog sits at the front of the
#: due order: the walk above would read all of it, in SQLite or row by row in Python, at every
#: claim. Here each other active subscription gives its earliest `:each` claimable deliveries
#: from an index range (`deliveries_subscription_due`), and only those are sorted: the cost
#: follows the number of subscriptions, not the length of any backlog.
_DUE_BESIDE_FULL = (
    "SELECT q.id, s.endpoint, c.state AS circuit, s.id AS sub, s.rate_limit"  # noqa: S608
    " FROM subscriptions s LEFT JOIN circuits c ON c.endpoint = s.endpoint"
    " JOIN deliveries q ON q.rowid IN ("
    "  SELECT d.rowid FROM deliveries d JOIN events e ON e.id = d.event_id"
    "  WHERE d.subscription_id = s.id AND d.status = 'pending' AND d.next_attempt_at <= :now"
    "  AND (d.lease_until IS NULL OR d.lease_until <= :now)"
    f"  AND {_IN_ORDER}"
    "  AND d.id NOT IN (SELECT value FROM json_each(:taken))"
    "  ORDER BY d.next_attempt_at, d.rowid LIMIT :each)"
    f" WHERE s.status = 'active' AND {_CIRCUIT_LETS_THROUGH} AND {_RATE_LETS_THROUGH}"
    " AND s.endpoint NOT IN (SELECT value FROM json_each(:full))"
    " AND s.id NOT IN (SELECT value FROM json_each(:spent))"
    " ORDER BY q.next_attempt_at, q.rowid LIMIT :scan"
)
#: Whether any delivery may be due (an index seek): a claim with nothing due and nothing to
#: record then needs no write transaction, which would wait for (and hold) the write lock.
_ANY_DUE = "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1"
#: Bound on the parsed subscriptions a store keeps (see `_subscription_of`).
_PARSED_SUBSCRIPTIONS = 1024
#: A claim looks at most this many due deliveries (per delivery it may take) past held-back ones.
_SCAN_PER_CLAIM = 64
#: How many of the earliest pending deliveries `next_due_at` weighs one by one.
_NEXT_DUE_WINDOW = 256
#: When the earliest pending delivery becomes claimable (lease, circuit wait and order
#: included). Weighed over the `_NEXT_DUE_WINDOW` earliest by `next_attempt_at` (an index
#: range), plus the window's edge: any delivery past it is due no earlier than its own
#: `next_attempt_at`, which is no earlier than the edge's. So the answer is never later than the
#: true one (at worst a look too early) and costs the same with ten or a million queued.
_NEXT_DUE = (
    "SELECT MIN(due) FROM ("  # noqa: S608 - constants only, no input
    " SELECT MAX(d.next_attempt_at, COALESCE(d.lease_until, d.next_attempt_at),"
    " CASE WHEN c.state = 'open' THEN c.retry_at WHEN c.state = 'half_open' THEN c.probe_until"
    " ELSE d.next_attempt_at END,"
    " CASE WHEN s.rate_limit IS NULL THEN d.next_attempt_at"
    " ELSE COALESCE(s.rate_next_at, d.next_attempt_at) END) AS due"
    " FROM (SELECT * FROM deliveries WHERE status = 'pending'"
    f" ORDER BY next_attempt_at LIMIT {_NEXT_DUE_WINDOW}) d"
    " JOIN subscriptions s ON s.id = d.subscription_id"
    " JOIN events e ON e.id = d.event_id LEFT JOIN circuits c ON c.endpoint = s.endpoint"
    f" WHERE s.status = 'active' AND {_IN_ORDER}"
    " UNION ALL SELECT * FROM (SELECT next_attempt_at FROM deliveries WHERE status = 'pending'"
    f" ORDER BY next_attempt_at LIMIT 1 OFFSET {_NEXT_DUE_WINDOW - 1}))"
)


def _client_columns(s: Subscription) -> dict[str, Any]:
    """The columns of what a client sets (create, replace, patch), by name."""
    return {
        "sink": s.sink,
        "protocol": s.protocol,
        "types": json.dumps(list(s.types)),
        "source": s.source,
        "filters": json.dumps([dict(f) for f in s.filters]),
        "protocolsettings": json.dumps(dict(s.protocolsettings)),
        "sinkcredential": s.sinkcredential,
        "secret": s.delivery.secret,
        "mode": s.delivery.mode,
        "ordered": int(s.delivery.ordered),
        "form": s.delivery.form,
        "options": options_json(s.delivery),
        "endpoint": s.endpoint,
        "rate_limit": s.delivery.rate_limit,
    }


def _ts(value: datetime) -> str:
    """Fixed-width UTC text, so SQL text comparison is time comparison
    (`2026-12-07T06:54:30.337526Z`; `isoformat`, a third cheaper than `strftime`, which was a
    few per cent of an ingest in the profile)."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime given to the store: {value!r}")
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _dt_or_none(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


#: Ingests committed together at most (a bound on one transaction's size and time).
_GROUP_COMMIT_MAX = 256
#: Seconds between looks at whether another worker sharing the file committed.
_WAKE_POLL = 0.05


class _Picking:
    """What one claim takes, oldest first: within each endpoint's limit (one request for an
    endpoint whose circuit is open or half-open: its probe), one request per rate-limited
    subscription, and at most `limit` in all."""

    def __init__(self, *, limit: int, cap: int, busy: dict[str, int]) -> None:
        self.limit = limit
        self.cap = cap
        #: Leases running per endpoint, these included.
        self.busy = busy
        self.taken: list[str] = []
        #: Endpoints whose probe this claim took.
        self.probes: set[str] = set()
        #: Rate-limited subscriptions given their one request, with their rates.
        self.paced: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return len(self.taken) >= self.limit

    def full(self) -> list[str]:
        """The endpoints that may not have another request now."""
        return [
            endpoint
            for endpoint, count in self.busy.items()
            if count >= self.cap or endpoint in self.probes
        ]

    def offer(self, row: sqlite3.Row) -> bool:
        """Take the claimable due delivery `row`; False when its endpoint or subscription may
        not have another request now."""
        endpoint = row["endpoint"]
        probing = row["circuit"] in (CircuitState.OPEN, CircuitState.HALF_OPEN)
        if self.busy.get(endpoint, 0) >= (1 if probing else self.cap):
            return False
        if row["rate_limit"] is not None:
            if row["sub"] in self.paced:
                return False
            self.paced[row["sub"]] = row["rate_limit"]
        self.busy[endpoint] = self.busy.get(endpoint, 0) + 1
        self.taken.append(row["id"])
        if probing:
            self.probes.add(endpoint)
        return True


@dataclasses.dataclass(frozen=True)
class _WaitingIngest:
    message: InboundMessage
    events: tuple[NewEvent, ...]
    matcher: SubscriptionMatcher
    future: asyncio.Future[IngestResult]


class SqliteStore:
    """`Store` on a SQLite file (WAL, `synchronous=FULL`, foreign keys on).

    `shared`: one of the workers of `serve --workers`, whose parent owns the file; opening
    fails when no live process owns it."""

    def __init__(self, path: Path, *, clock: Clock | None = None, shared: bool = False) -> None:
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        self._shared = shared
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._write_lock: _file_locks.WriteLock | None = None
        self._watch: asyncio.Task[None] | None = None
        self._synchronous = "FULL"
        #: Parsed subscriptions by id, with the row they were parsed from (store thread only).
        self._parsed: dict[str, tuple[tuple[Any, ...], Subscription]] = {}
        #: Ingests waiting for the next group commit, and whether one is under way.
        self._waiting: list[_WaitingIngest] = []
        self._committing = False
        self._commit_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the file for this process (or, shared, check that its owner lives), connect,
        and apply pending migrations."""
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
        if self._shared:
            if not _file_locks.is_owned(self.path):
                raise StoreError(
                    f"{self.path}: no process owns the file; it is shared only among the"
                    " workers of `digibridge serve --workers`"
                )
            self._write_lock = _file_locks.WriteLock(self.path)
        else:
            self._lock_fd = _file_locks.own(self.path)
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            with self._writing():
                apply_sqlite(connection, self._clock.now())
        except sqlite3.Error as error:
            self._release_locks()
            raise StoreError(f"cannot open {self.path}: {error}") from error
        except BaseException:
            self._release_locks()
            raise
        self._connection = connection

    def _release_locks(self) -> None:
        if self._lock_fd is not None:
            _file_locks.disown(self._lock_fd)
            self._lock_fd = None
        if self._write_lock is not None:
            self._write_lock.close()
            self._write_lock = None

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        """A write's turn: the write lock when shared (nothing to wait for otherwise)."""
        return contextlib.nullcontext() if self._write_lock is None else self._write_lock.held()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
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
        self._release_locks()

    async def ping(self) -> bool:
        try:
            return await self._read(lambda c: c.execute("SELECT 1").fetchone()[0] == 1)
        except StoreError:
            return False

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Shared: called when another worker has committed, seen by polling
        `PRAGMA data_version` (which changes only for other connections' commits) every
        `_WAKE_POLL` seconds. A file this process owns alone never needs it: its own writers
        wake it."""
        if self._shared and self._watch is None:
            self._watch = asyncio.create_task(
                self._watch_others(callback), name="digibridge-sqlite-watch"
            )

    async def _watch_others(self, callback: Callable[[], None]) -> None:
        seen: int | None = None
        while True:
            version: int | None
            try:
                version = await self._run(self._data_version)
            except StoreError:
                version = seen  # closing, or the file unreadable for a moment: look again
            if seen is not None and version != seen:
                callback()
            seen = version
            await asyncio.sleep(_WAKE_POLL)

    def _data_version(self) -> int:
        connection = self._connection
        if connection is None:
            raise StoreError(f"{self.path} is not open")
        try:
            return int(connection.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: {error}") from error

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

    async def _write(
        self, function: Callable[[sqlite3.Connection], T], *, durable: bool = True
    ) -> T:
        """A write transaction. `durable=False` (claims and outcomes of deliveries) commits
        without waiting for the disk: in WAL mode that survives a process crash, and what a
        power cut could undo is a lease or an outcome, which only means a delivery is sent
        again (at-least-once holds). Ingest, the commit before an acknowledgement, is always
        durable."""
        synchronous = "FULL" if durable else "NORMAL"
        return await self._run(partial(self._transaction, function, _BEGIN_WRITE, synchronous))

    async def _read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(partial(self._transaction, function, "BEGIN"))

    def _transaction(
        self,
        function: Callable[[sqlite3.Connection], T],
        begin: str,
        synchronous: str | None = None,
    ) -> T:
        connection = self._connection
        if connection is None:
            raise StoreError(f"{self.path} is not open")
        # A failed commit is rolled back before the write lock goes to the next writer.
        with self._writing() if begin == _BEGIN_WRITE else contextlib.nullcontext():
            try:
                if synchronous is not None and synchronous != self._synchronous:
                    connection.execute(f"PRAGMA synchronous={synchronous}")
                    self._synchronous = synchronous
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
        """Store a message's events durably, in a group commit: ingests that arrive while a
        commit is on its way to disk are committed together after it, in one transaction with a
        savepoint each (one failing rolls back only its own), so concurrent senders share one
        fsync. Each returns only after the commit that holds it, as before."""
        if self._executor is None:
            raise StoreError(f"{self.path} is not open")
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_WaitingIngest(message, tuple(events), matcher, future))
        if not self._committing:
            self._committing = True
            # The commit loop lives on its own, so a caller that gives up does not stop it.
            task = asyncio.create_task(self._commit_waiting(), name="digibridge-group-commit")
            self._commit_tasks.add(task)
            task.add_done_callback(self._commit_tasks.discard)
        return await future

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:_GROUP_COMMIT_MAX]
                del self._waiting[: len(batch)]
                try:
                    outcomes = await self._write(partial(self._ingest_group, batch))
                except BaseException as error:  # the commit failed: nobody is acknowledged
                    for waiting in batch:
                        if not waiting.future.done():
                            waiting.future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                    continue
                for waiting, outcome in zip(batch, outcomes, strict=True):
                    if waiting.future.done():  # the caller gave up (e.g. disconnected)
                        continue
                    if isinstance(outcome, Exception):
                        waiting.future.set_exception(outcome)
                    else:
                        waiting.future.set_result(outcome)
        finally:
            self._committing = False

    def _ingest_group(
        self, batch: list[_WaitingIngest], c: sqlite3.Connection
    ) -> list[IngestResult | Exception]:
        outcomes: list[IngestResult | Exception] = []
        for waiting in batch:
            c.execute("SAVEPOINT ingest")
            try:
                outcomes.append(self._ingest(waiting.message, waiting.events, waiting.matcher, c))
            except Exception as error:  # noqa: BLE001 - handed to that ingest's caller
                c.execute("ROLLBACK TO ingest")
                outcomes.append(
                    StoreError(f"{self.path}: {error}")
                    if isinstance(error, sqlite3.Error)
                    else error
                )
            c.execute("RELEASE ingest")
        return outcomes

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
            self._parsed_row(row)
            for row in c.execute("SELECT * FROM subscriptions WHERE status = 'active'")
        ]
        created = 0
        for unnumbered in events:
            event, sequence = _sequenced(c, unnumbered)
            c.execute(
                "INSERT INTO events (id, message_id, type, source, subject, time, attributes,"
                " body, created_at, informatiearm_body, sequence)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    event.informatiearm_body,
                    sequence,
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
        values = {
            "id": s.id,
            **_client_columns(s),
            "status": s.status.value,
            "status_reason": s.status_reason,
            "created_at": _ts(s.created_at),
            "disabled_at": None if s.disabled_at is None else _ts(s.disabled_at),
            "owner": s.owner,
        }
        columns = ", ".join(values)
        placeholders = ", ".join(f":{name}" for name in values)
        sql = f"INSERT INTO subscriptions ({columns}) VALUES ({placeholders})"  # noqa: S608
        await self._write(lambda c: c.execute(sql, values))

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT * FROM subscriptions WHERE id = ?", (subscription_id,)
            ).fetchone()
        )
        return None if row is None else _subscription(row)

    async def list_subscriptions(
        self,
        *,
        owner: str | None = None,
        sink: str | None = None,
        types: Sequence[str] = (),
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Subscription]:
        where, params = _subscription_filter(owner, sink, types)
        params.update(offset=max(offset, 0), limit=-1 if limit is None else max(limit, 0))
        sql = (
            f"SELECT * FROM subscriptions{where}"  # noqa: S608 - fixed clauses, bound values
            " ORDER BY created_at, id LIMIT :limit OFFSET :offset"
        )
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [_subscription(row) for row in rows]

    async def count_subscriptions(
        self, *, owner: str | None = None, sink: str | None = None, types: Sequence[str] = ()
    ) -> int:
        where, params = _subscription_filter(owner, sink, types)
        sql = f"SELECT COUNT(*) FROM subscriptions{where}"  # noqa: S608 - as above
        row = await self._read(lambda c: c.execute(sql, params).fetchone())
        return int(row[0])

    async def update_subscription(self, subscription: Subscription) -> Subscription | None:
        s = subscription
        values = {**_client_columns(s), "id": s.id}
        assignments = ", ".join(f"{name} = :{name}" for name in _client_columns(s))
        sql = (
            f"UPDATE subscriptions SET {assignments},"  # noqa: S608 - column names, constants
            " rate_next_at = CASE WHEN :rate_limit IS NULL THEN NULL ELSE rate_next_at END"
            " WHERE id = :id"
        )

        def update(c: sqlite3.Connection) -> Subscription | None:
            if not c.execute(sql, values).rowcount:
                return None
            row = c.execute("SELECT * FROM subscriptions WHERE id = ?", (s.id,))
            return _subscription(row.fetchone())

        return await self._write(update)

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

    async def list_events(
        self,
        *,
        after: int = 0,
        types: Sequence[str] = (),
        source: str | None = None,
        limit: int,
    ) -> list[StoredEvent]:
        parameters = {
            "after": after,
            "types": json.dumps(list(types)) if types else None,
            "source": source,
            "limit": limit,
        }
        rows = await self._read(
            lambda c: c.execute(
                "SELECT * FROM events WHERE seq > :after"
                " AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))"
                " AND (:source IS NULL OR source = :source)"
                " ORDER BY seq LIMIT :limit",
                parameters,
            ).fetchall()
        )
        return [_event(row) for row in rows]

    async def feed_head(self) -> int:
        # sqlite_sequence keeps the highest AUTOINCREMENT value even when those rows are gone.
        row = await self._read(
            lambda c: c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        )
        return 0 if row is None else int(row[0])

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ?",  # noqa: S608
                (delivery_id,),
            ).fetchone()
        )
        return None if row is None else _delivery(row)

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
        sql = (
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608
            " WHERE (:sub IS NULL OR d.subscription_id = :sub)"
            " AND (:owner IS NULL OR d.subscription_id IN"
            "  (SELECT o.id FROM subscriptions o WHERE o.owner = :owner))"
            " AND (:status IS NULL OR d.status = :status)"
            " AND (:retrying IS NULL OR (d.status = 'pending' AND (d.attempts > 0) = :retrying))"
            " AND (:after_at IS NULL OR (d.created_at, d.id) > (:after_at, :after_id))"
            " ORDER BY d.created_at, d.id LIMIT :limit"
        )
        parameters = {
            "sub": subscription_id,
            "status": None if status is None else status.value,
            "retrying": retrying,
            "after_at": None if after is None else _ts(after[0]),
            "after_id": None if after is None else after[1],
            "limit": -1 if limit is None else limit,
            "owner": owner,
        }
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
        self,
        *,
        now: datetime,
        limit: int,
        lease_until: datetime,
        owner: str,
        per_endpoint: int | None = None,
        completed: Sequence[Completion] = (),
    ) -> list[DeliveryJob]:
        at, until = _ts(now), _ts(lease_until)
        if not completed and (
            limit <= 0
            or not await self._read(lambda c: bool(c.execute(_ANY_DUE, (at,)).fetchone()))
        ):
            return []

        def claim(c: sqlite3.Connection) -> list[DeliveryJob]:
            self._complete_all(completed, c)
            if limit <= 0:
                return []
            busy = {row["endpoint"]: row["n"] for row in c.execute(_BUSY, {"now": at})}
            picking = _Picking(limit=limit, cap=per_endpoint or 2**31, busy=busy)
            if not picking.full():
                rows = c.execute(_DUE, {"now": at})
                held_back = False
                for row in rows:
                    if not picking.offer(row):
                        held_back = True
                        break
                    if picking.done:
                        break
                rows.close()
                if not held_back:
                    return self._leased(c, picking, now, owner, until)
            if not picking.done:
                room = limit - len(picking.taken)
                parameters = {
                    "now": at,
                    "full": json.dumps(picking.full()),
                    "spent": json.dumps(list(picking.paced)),
                    "taken": json.dumps(picking.taken),
                    "each": min(room, picking.cap),
                    "scan": room * _SCAN_PER_CLAIM,
                }
                for row in c.execute(_DUE_BESIDE_FULL, parameters):
                    picking.offer(row)
                    if picking.done:
                        break
            return self._leased(c, picking, now, owner, until)

        return await self._write(claim, durable=False)

    def _leased(
        self, c: sqlite3.Connection, picking: _Picking, now: datetime, owner: str, until: str
    ) -> list[DeliveryJob]:
        """Lease what `picking` took; open circuits whose probe it took turn half-open, and
        rate-limited subscriptions wait for their next turn."""
        at = _ts(now)
        for endpoint in picking.probes:
            # The open circuit's pause is over: the delivery just taken is its probe.
            c.execute(
                "UPDATE circuits SET state = 'half_open', probe_until = ?, updated_at = ?"
                " WHERE endpoint = ?",
                (until, at, endpoint),
            )
        for sub, rate in picking.paced.items():
            # One request per 60/rate seconds: a batch claimed with it rides along.
            c.execute(
                "UPDATE subscriptions SET rate_next_at = ? WHERE id = ?",
                (_ts(now + timedelta(seconds=60 / rate)), sub),
            )
        return self._lease(c, picking.taken, owner, until)

    def _lease(
        self, c: sqlite3.Connection, ids: list[str], owner: str, until: str
    ) -> list[DeliveryJob]:
        """Lease `ids` (in that order) in one statement, and read their events in another: per
        delivery, four statements cost a claim more than its query."""
        if not ids:
            return []
        chosen = json.dumps(ids)
        leased = {
            row["id"]: row
            for row in c.execute(
                "UPDATE deliveries SET lease_owner = ?, lease_until = ?"  # noqa: S608 - constants
                " WHERE id IN (SELECT value FROM json_each(?))"
                f" RETURNING {_DELIVERY_FIELDS}",
                (owner, until, chosen),
            )
        }
        events = {
            row["id"]: _event(row)
            for row in c.execute(
                "SELECT * FROM events WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps([row["event_id"] for row in leased.values()]),),
            )
        }
        subscriptions: dict[str, Subscription] = {}
        jobs: list[DeliveryJob] = []
        lease_until = _dt(until)
        for delivery_id in ids:
            row = leased[delivery_id]
            subscription_id = row["subscription_id"]
            if subscription_id not in subscriptions:
                subscriptions[subscription_id] = self._subscription_of(c, subscription_id)
            jobs.append(
                DeliveryJob(
                    delivery=_delivery(row),
                    subscription=subscriptions[subscription_id],
                    event=events[row["event_id"]],
                    lease_until=lease_until,
                    lease_owner=owner,
                )
            )
        return jobs

    def _subscription_of(self, c: sqlite3.Connection, subscription_id: str) -> Subscription:
        """The subscription, parsed once per version of its row: parsing (JSON columns, the
        delivery options) cost more than the read, and is the same for every claim. Comparing
        the whole row keeps the cache right whoever changed it, without invalidation."""
        row = c.execute("SELECT * FROM subscriptions WHERE id = ?", (subscription_id,)).fetchone()
        return self._parsed_row(row)

    def _parsed_row(self, row: sqlite3.Row) -> Subscription:
        """A subscription row parsed, from the cache when the row is unchanged (every ingest
        reads all active subscriptions: with a thousand of them, parsing them was most of it)."""
        values = tuple(row)
        cached = self._parsed.get(row["id"])
        if cached is not None and cached[0] == values:
            return cached[1]
        if len(self._parsed) >= _PARSED_SUBSCRIPTIONS:
            self._parsed.clear()
        parsed = _subscription(row)
        self._parsed[row["id"]] = (values, parsed)
        return parsed

    async def claim_batch(
        self, job: DeliveryJob, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[DeliveryJob]:
        if limit <= 0:
            return []
        sql = (
            f"SELECT d.id{_QUEUE_JOINS} WHERE d.subscription_id = :sub"
            f" AND d.next_attempt_at <= :now AND {_CLAIMABLE}"
            " ORDER BY d.next_attempt_at, d.rowid LIMIT :limit"
        )

        def claim(c: sqlite3.Connection) -> list[DeliveryJob]:
            rows = c.execute(
                sql, {"sub": job.subscription.id, "now": _ts(now), "limit": limit}
            ).fetchall()
            return self._lease(c, [row["id"] for row in rows], job.lease_owner, _ts(lease_until))

        return await self._write(claim, durable=False)

    async def complete(
        self,
        job: DeliveryJob,
        attempt: Attempt,
        outcome: Outcome,
        health: EndpointHealth | None = None,
    ) -> None:
        await self._write(
            partial(self._complete_all, [Completion(job, attempt, outcome, health)]),
            durable=False,
        )

    def _complete_all(self, completed: Sequence[Completion], c: sqlite3.Connection) -> None:
        """Record `completed` in order. Each endpoint's circuit is read once and written once,
        however many of them went to it: a claim records several outcomes, mostly for the same
        endpoint, and reading, parsing and writing its circuit per outcome was a third of the
        claim's time."""
        circuits: dict[str, Circuit] = {}
        for done in completed:
            self._complete(done, c, circuits)
        now = self._clock.now()
        for circuit in circuits.values():
            _write_circuit(c, circuit, now)

    def _complete(
        self, done: Completion, c: sqlite3.Connection, circuits: dict[str, Circuit]
    ) -> None:
        job, attempt, outcome, health = done.job, done.attempt, done.outcome, done.health
        status, next_at, error = _apply(outcome, attempt)
        held = c.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
            " lease_owner = NULL, lease_until = NULL, updated_at = ?, last_error = ?,"
            " last_status_code = ? WHERE id = ? AND status = 'pending'"
            " AND lease_owner = ? AND lease_until = ?",
            (
                status,
                next_at,
                _ts(self._clock.now()),
                error,
                attempt.status_code,
                job.delivery.id,
                job.lease_owner,
                _ts(job.lease_until),
            ),
        ).rowcount
        if not held:
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
        now = self._clock.now()
        to_disable: list[tuple[str, str]] = []
        if outcome.disable_subscription is not None:
            to_disable.append((job.subscription.id, outcome.disable_subscription))
        if health is not None and outcome.endpoint_failed is not None:
            to_disable += self._record_health(
                c, job.subscription.endpoint, outcome, health, now, circuits=circuits
            )
        for subscription_id, reason in to_disable:
            self._disable(c, subscription_id, reason, now, health)

    def _record_health(
        self,
        c: sqlite3.Connection,
        endpoint: str,
        outcome: Outcome,
        health: EndpointHealth,
        now: datetime,
        *,
        circuits: dict[str, Circuit],
    ) -> list[tuple[str, str]]:
        """Count the outcome in the endpoint's circuit, kept in `circuits` (written by the
        caller); the subscriptions to disable for it."""
        before = circuits.get(endpoint)
        if before is None:
            row = c.execute("SELECT * FROM circuits WHERE endpoint = ?", (endpoint,)).fetchone()
            before = new_circuit(endpoint, now) if row is None else _circuit(row)
        after = record(before, failed=bool(outcome.endpoint_failed), now=now, policy=health.policy)
        circuits[endpoint] = after
        if not failing_too_long(after, now, health.policy):
            return []
        assert after.failing_since is not None  # noqa: S101 - implied by failing_too_long
        reason = f"endpoint {endpoint} failing since {_ts(after.failing_since)}"
        rows = c.execute(
            "SELECT id FROM subscriptions WHERE endpoint = ? AND status = 'active'", (endpoint,)
        ).fetchall()
        return [(r["id"], reason) for r in rows]

    def _disable(
        self,
        c: sqlite3.Connection,
        subscription_id: str,
        reason: str,
        now: datetime,
        health: EndpointHealth | None,
    ) -> None:
        """Disable an active subscription and, with `health`, announce it as an event."""
        changed = c.execute(
            "UPDATE subscriptions SET status = 'disabled', status_reason = ?, disabled_at = ?"
            " WHERE id = ? AND status = 'active'",
            (reason, _ts(now), subscription_id),
        ).rowcount
        if not changed or health is None:
            return
        subscription = _subscription(
            c.execute("SELECT * FROM subscriptions WHERE id = ?", (subscription_id,)).fetchone()
        )
        notice = health.notice(subscription, reason, now)
        # The notice goes the way of every event: stored, and a delivery per matching
        # subscription. Its "message" is digibridge itself, keyed by the notice's id.
        message_id = f"urn:digibridge:notice:{notice.id}"
        message = InboundMessage(
            message_id=message_id,
            kenmerk=message_id,
            basisregistratie="digibridge",
            gebeurtenissoort=notice.type,
            received_at=now,
        )
        self._ingest(message, (notice,), health.matcher, c)

    async def next_due_at(self) -> datetime | None:
        # A leased delivery becomes claimable when its lease expires, one behind an open circuit
        # when the circuit's pause is over, so those times count.
        row = await self._read(lambda c: c.execute(_NEXT_DUE).fetchone())
        return _dt_or_none(row[0])

    async def get_circuit(self, endpoint: str) -> Circuit | None:
        row = await self._read(
            lambda c: c.execute("SELECT * FROM circuits WHERE endpoint = ?", (endpoint,)).fetchone()
        )
        return None if row is None else _circuit(row)

    # -- operator actions --------------------------------------------------------------------

    async def retry_delivery(self, delivery_id: str) -> Delivery | None:
        def retry(c: sqlite3.Connection) -> Delivery | None:
            now = _ts(self._clock.now())
            row = c.execute(
                "SELECT status, lease_until FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:
                return None
            if row["status"] == "pending" and row["lease_until"] and row["lease_until"] > now:
                raise StoreConflict(f"delivery {delivery_id} is being sent right now")
            c.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = :now,"
                " schedule_start = :now, schedule_offset = attempts, lease_owner = NULL,"
                " lease_until = NULL, updated_at = :now WHERE id = :id",
                {"now": now, "id": delivery_id},
            )
            found = c.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ?",  # noqa: S608
                (delivery_id,),
            ).fetchone()
            return _delivery(found)

        return await self._write(retry)

    async def replay(
        self,
        subscription_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        matcher: SubscriptionMatcher,
    ) -> int | None:
        def replay(c: sqlite3.Connection) -> int | None:
            row = c.execute("SELECT * FROM subscriptions WHERE id = ?", (subscription_id,))
            found = row.fetchone()
            if found is None:
                return None
            subscription = _subscription(found)
            now = _ts(self._clock.now())
            events = c.execute(
                "SELECT * FROM events WHERE (:start IS NULL OR created_at >= :start)"
                " AND (:end IS NULL OR created_at < :end) ORDER BY seq",
                {
                    "start": None if start is None else _ts(start),
                    "end": None if end is None else _ts(end),
                },
            ).fetchall()
            created = 0
            for event_row in events:
                if not matcher(subscription, _new_event(event_row)):
                    continue
                c.execute(
                    "INSERT INTO deliveries (id, subscription_id, event_id, status, attempts,"
                    " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                    (str(uuid.uuid4()), subscription_id, event_row["id"], "pending", now, now, now),
                )
                created += 1
            return created

        return await self._write(replay)

    async def enable_subscription(self, subscription_id: str) -> Subscription | None:
        def enable(c: sqlite3.Connection) -> Subscription | None:
            row = c.execute("SELECT * FROM subscriptions WHERE id = ?", (subscription_id,))
            found = row.fetchone()
            if found is None:
                return None
            c.execute(
                "UPDATE subscriptions SET status = 'active', status_reason = NULL,"
                " disabled_at = NULL WHERE id = ?",
                (subscription_id,),
            )
            # A fresh start: the endpoint is trusted again until it fails again.
            c.execute("DELETE FROM circuits WHERE endpoint = ?", (found["endpoint"],))
            row = c.execute("SELECT * FROM subscriptions WHERE id = ?", (subscription_id,))
            return _subscription(row.fetchone())

        return await self._write(enable)

    async def update_delivery_settings(
        self, subscription_id: str, settings: DeliverySettings
    ) -> Subscription | None:
        def update(c: sqlite3.Connection) -> Subscription | None:
            changed = c.execute(
                "UPDATE subscriptions SET secret = ?, mode = ?, ordered = ?, form = ?, options = ?,"
                " rate_limit = ? WHERE id = ?",
                (
                    settings.secret,
                    settings.mode,
                    int(settings.ordered),
                    settings.form,
                    options_json(settings),
                    settings.rate_limit,
                    subscription_id,
                ),
            ).rowcount
            if not changed:
                return None
            row = c.execute("SELECT * FROM subscriptions WHERE id = ?", (subscription_id,))
            return _subscription(row.fetchone())

        return await self._write(update)

    async def purge(self, *, delivered_before: datetime) -> PurgeResult:
        def purge(c: sqlite3.Connection) -> PurgeResult:
            cut = {"cut": _ts(delivered_before)}
            deliveries = c.execute(
                "DELETE FROM deliveries WHERE status = 'succeeded' AND updated_at < :cut", cut
            ).rowcount
            events = c.execute(
                "DELETE FROM events WHERE created_at < :cut"
                " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
                cut,
            ).rowcount
            messages = c.execute(
                "DELETE FROM messages WHERE received_at < :cut AND NOT EXISTS"
                " (SELECT 1 FROM events e WHERE e.message_id = messages.message_id)",
                cut,
            ).rowcount
            return PurgeResult(deliveries=deliveries, events=events, messages=messages)

        return await self._write(purge)

    async def release_leases(self, owner: str | None = None) -> int:
        cursor = await self._write(
            lambda c: c.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner IS NOT NULL AND (:owner IS NULL OR lease_owner = :owner)",
                {"owner": owner},
            )
        )
        return cursor.rowcount

    async def queue_stats(self, *, now: datetime) -> QueueStats:
        def stats(c: sqlite3.Connection) -> QueueStats:
            pending, in_flight, oldest = c.execute(
                "SELECT count(*), coalesce(sum(lease_until IS NOT NULL AND lease_until > ?), 0),"
                " min(created_at) FROM deliveries WHERE status = 'pending'",
                (_ts(now),),
            ).fetchone()
            (dead,) = c.execute("SELECT count(*) FROM deliveries WHERE status = 'dead'").fetchone()
            circuits = {
                CircuitState(state): count
                for state, count in c.execute("SELECT state, count(*) FROM circuits GROUP BY 1")
            }
            return QueueStats(pending, in_flight, dead, _dt_or_none(oldest), circuits)

        return await self._read(stats)

    # -- terugmeldingen (transaction bodies in _sqlite_terugmeldingen.py) ---------------------

    async def create_terugmelding(
        self,
        record: TerugmeldingRecord,
        request: DmksRequest,
        idempotency: IdempotencyKey | None = None,
    ) -> CreatedTerugmelding:
        return await self._write(partial(_tm.create, record, request, idempotency))

    async def get_terugmelding(self, terugmelding_id: str) -> TerugmeldingRecord | None:
        return await self._read(partial(_tm.get, terugmelding_id))

    async def list_terugmeldingen(
        self,
        *,
        owner: str | None = None,
        transport_status: TransportStatus | None = None,
        dmks_status: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TerugmeldingRecord]:
        return await self._read(
            partial(
                _tm.listing,
                owner=owner,
                transport_status=transport_status,
                dmks_status=dmks_status,
                after=after,
                limit=limit,
            )
        )

    async def terugmelding_history(self, terugmelding_id: str) -> list[HistoryEntry]:
        return await self._read(partial(_tm.history, terugmelding_id))

    async def queue_intrekking(
        self, request: DmksRequest, *, end_states: Collection[str]
    ) -> TerugmeldingRecord | None:
        return await self._write(partial(_tm.queue_intrekking, request, tuple(end_states)))

    async def claim_dmks_requests(
        self, *, now: datetime, limit: int, lease_until: datetime, owner: str
    ) -> list[DmksRequest]:
        return await self._write(partial(_tm.claim, now, limit, lease_until, owner), durable=False)

    async def complete_dmks_request(
        self,
        request: DmksRequest,
        outcome: DmksOutcome,
        notice: TransportNotice,
        matcher: SubscriptionMatcher,
    ) -> bool:
        return await self._write(
            partial(
                _tm.complete,
                request=request,
                outcome=outcome,
                notice=notice,
                matcher=matcher,
                ingest=self._ingest,
            )
        )

    async def next_dmks_due_at(self) -> datetime | None:
        return await self._read(_tm.next_due)

    async def release_dmks_leases(self, owner: str | None = None) -> int:
        return await self._write(partial(_tm.release, owner))

    async def open_terugmeldingen(self, *, end_states: Collection[str]) -> list[OpenTerugmelding]:
        return await self._read(partial(_tm.open_ones, tuple(end_states)))

    async def record_dmks_status(
        self, change: DmksStatusChange, matcher: SubscriptionMatcher
    ) -> bool:
        return await self._write(
            partial(_tm.record_status, change, matcher, self._ingest, self._clock.now())
        )


def _apply(outcome: Outcome, attempt: Attempt) -> tuple[str, str | None, str | None]:
    """The delivery's new (status, next_attempt_at, last_error) for an outcome."""
    if outcome.kind is OutcomeKind.SUCCEEDED:
        return DeliveryStatus.SUCCEEDED.value, None, None
    if outcome.kind is OutcomeKind.RETRY:
        if outcome.retry_at is None:
            raise StoreError("a RETRY outcome needs retry_at")
        return DeliveryStatus.PENDING.value, _ts(outcome.retry_at), attempt.error
    return DeliveryStatus.DEAD.value, None, outcome.reason or attempt.error


def _subscription_filter(
    owner: str | None, sink: str | None, types: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (empty or starting with a space) and its parameters for a listing."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if owner is not None:
        clauses.append("owner = :owner")
        params["owner"] = owner
    if sink is not None:
        clauses.append("sink = :sink")
        params["sink"] = sink
    for index, wanted in enumerate(dict.fromkeys(types)):
        # The index only names a bound parameter; the values themselves are bound.
        exists = "EXISTS (SELECT 1 FROM json_each(subscriptions.types) WHERE value = :type"
        clauses.append(f"{exists}{index})")
        params[f"type{index}"] = wanted
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _subscription(row: sqlite3.Row) -> Subscription:
    filters: list[dict[str, Any]] = json.loads(row["filters"])
    return Subscription(
        id=row["id"],
        sink=row["sink"],
        delivery=settings_from(
            secret=row["secret"],
            mode=row["mode"],
            ordered=bool(row["ordered"]),
            form=row["form"],
            options=row["options"],
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
        disabled_at=_dt_or_none(row["disabled_at"]),
        owner=row["owner"],
    )


def _new_event(row: sqlite3.Row) -> NewEvent:
    """A stored event as the matcher sees it at ingest (for replay)."""
    return NewEvent(
        id=row["id"],
        type=row["type"],
        source=row["source"],
        subject=row["subject"],
        time=_dt_or_none(row["time"]),
        attributes=json.loads(row["attributes"]),
        body=bytes(row["body"]),
    )


def _write_circuit(c: sqlite3.Connection, circuit: Circuit, now: datetime) -> None:
    c.execute(
        "INSERT OR REPLACE INTO circuits (endpoint, state, window_start, successes, failures,"
        " retry_at, probe_until, failing_since, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            circuit.endpoint,
            circuit.state.value,
            _ts(circuit.window_start),
            circuit.successes,
            circuit.failures,
            None if circuit.retry_at is None else _ts(circuit.retry_at),
            None if circuit.probe_until is None else _ts(circuit.probe_until),
            None if circuit.failing_since is None else _ts(circuit.failing_since),
            _ts(now),
        ),
    )


def _circuit(row: sqlite3.Row) -> Circuit:
    return Circuit(
        endpoint=row["endpoint"],
        state=CircuitState(row["state"]),
        window_start=_dt(row["window_start"]),
        successes=row["successes"],
        failures=row["failures"],
        retry_at=_dt_or_none(row["retry_at"]),
        probe_until=_dt_or_none(row["probe_until"]),
        failing_since=_dt_or_none(row["failing_since"]),
    )


def _sequenced(c: sqlite3.Connection, event: NewEvent) -> tuple[NewEvent, str]:
    """The event with the next `sequence` of its source in its bodies and attributes.

    The counter row stays locked until the ingest transaction ends, so numbers are given in
    commit order and a rolled-back ingest gives none away."""
    (number,) = c.execute(
        "INSERT INTO source_sequences (source, last) VALUES (?, 1)"
        " ON CONFLICT (source) DO UPDATE SET last = last + 1 RETURNING last",
        (event.source,),
    ).fetchone()
    sequence = format_sequence(number)
    try:
        numbered = dataclasses.replace(
            event,
            attributes={**event.attributes, "sequence": sequence},
            body=with_sequence(event.body, sequence),
            informatiearm_body=(
                None
                if event.informatiearm_body is None
                else with_sequence(event.informatiearm_body, sequence)
            ),
        )
    except ValueError as error:
        raise StoreError(f"event {event.id} cannot be stored: {error}") from error
    return numbered, sequence


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
        informatiearm_body=(
            None if row["informatiearm_body"] is None else bytes(row["informatiearm_body"])
        ),
        sequence=row["sequence"],
        position=row["seq"],
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
        schedule_start=_dt_or_none(row["schedule_start"]),
        schedule_offset=row["schedule_offset"],
    )

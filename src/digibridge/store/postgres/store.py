"""`PostgresStore`: the `Store` protocol on PostgreSQL, for several instances on one database.

Each method is one transaction on a pooled connection; the bodies live in modules per concern
(`_ingest`, `_queue`, `_terugmeldingen`). Unlike SQLite nothing makes the database one process's:
leases are the only claim on a delivery, so `release_leases()` without an owner must not be
called while other instances run (app.py does not call it on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

from digibridge.clock import Clock, SystemClock
from digibridge.store._codec import options_json
from digibridge.store._migrations import apply_postgres
from digibridge.store.postgres import _queue, _rows
from digibridge.store.postgres import _terugmeldingen as _tm
from digibridge.store.postgres._connection import Database, opt_ts, ts
from digibridge.store.postgres._ingest import ingest
from digibridge.store.postgres._listener import Listener, notify_wake
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
    PurgeResult,
    QueueStats,
    StoreConflict,
    StoredEvent,
    StoreError,
    Subscription,
    SubscriptionMatcher,
    TerugmeldingRecord,
    TransportNotice,
    TransportStatus,
)


class PostgresStore:
    """`Store` on PostgreSQL (psycopg 3, async, with a connection pool)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self._clock: Clock = clock or SystemClock()
        self._db = Database(url, min_size=1, max_size=pool_size, timeout=connect_timeout)
        self._connect_timeout = connect_timeout
        self._wake_callbacks: list[Callable[[], None]] = []
        self._listener: Listener | None = None

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Call `callback` when any instance on this database (this one included) commits
        events or work that may be due (`LISTEN/NOTIFY`, see `_listener`)."""
        self._wake_callbacks.append(callback)

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, apply pending migrations (under an advisory lock), and start listening."""
        await self._db.open()
        try:
            async with self._db.connection() as connection:
                await apply_postgres(connection, self._clock.now())
            # The listener reads the callback list as it is then: `on_wake` may come later.
            self._listener = Listener(self.url, self._wake_callbacks)
            await self._listener.start(timeout=self._connect_timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        await self._db.close()

    async def ping(self) -> bool:
        try:
            async with self._db.transaction() as c:
                row = await (await c.execute("SELECT 1 AS one")).fetchone()
                return row is not None and row["one"] == 1
        except StoreError:
            return False

    async def applied_migrations(self) -> list[int]:
        """The schema versions recorded in `schema_migrations` (for tests and diagnostics)."""
        async with self._db.transaction() as c:
            rows = await (
                await c.execute("SELECT version FROM schema_migrations ORDER BY 1")
            ).fetchall()
        return [row["version"] for row in rows]

    # -- ingest ------------------------------------------------------------------------------

    async def ingest(
        self,
        message: InboundMessage,
        events: Sequence[NewEvent],
        matcher: SubscriptionMatcher,
    ) -> IngestResult:
        async with self._db.transaction() as c:
            return await ingest(c, message, tuple(events), matcher, self._clock.now())

    # -- subscriptions -----------------------------------------------------------------------

    async def create_subscription(self, subscription: Subscription) -> None:
        s = subscription
        async with self._db.transaction() as c:
            await c.execute(
                "INSERT INTO subscriptions (id, sink, protocol, types, source, filters,"
                " protocolsettings, sinkcredential, secret, mode, ordered, form, status,"
                " status_reason, created_at, options, endpoint, disabled_at, rate_limit, owner)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s::jsonb, %s, %s, %s, %s)",
                (
                    s.id,
                    s.sink,
                    s.protocol,
                    Jsonb(list(s.types)),
                    s.source,
                    Jsonb([dict(f) for f in s.filters]),
                    Jsonb(dict(s.protocolsettings)),
                    s.sinkcredential,
                    s.delivery.secret,
                    s.delivery.mode,
                    s.delivery.ordered,
                    s.delivery.form,
                    s.status.value,
                    s.status_reason,
                    ts(s.created_at),
                    options_json(s.delivery),
                    s.endpoint,
                    opt_ts(s.disabled_at),
                    s.delivery.rate_limit,
                    s.owner,
                ),
            )

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        async with self._db.transaction() as c:
            row = await (
                await c.execute(f"{_rows.SUBSCRIPTION} WHERE id = %s", (subscription_id,))
            ).fetchone()
        return None if row is None else _rows.subscription(row)

    async def list_subscriptions(
        self,
        *,
        owner: str | None = None,
        sink: str | None = None,
        types: Sequence[str] = (),
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Subscription]:
        params = _listing(owner, sink, types)
        params.update(offset=max(offset, 0), limit=None if limit is None else max(limit, 0))
        async with self._db.transaction() as c:
            rows = await (
                await c.execute(
                    f"{_rows.SUBSCRIPTION} WHERE {_LISTED}"
                    " ORDER BY created_at, id LIMIT %(limit)s OFFSET %(offset)s",
                    params,
                )
            ).fetchall()
        return [_rows.subscription(row) for row in rows]

    async def count_subscriptions(
        self, *, owner: str | None = None, sink: str | None = None, types: Sequence[str] = ()
    ) -> int:
        async with self._db.transaction() as c:
            row = await (
                await c.execute(
                    f"SELECT count(*) AS n FROM subscriptions WHERE {_LISTED}",  # noqa: S608
                    _listing(owner, sink, types),
                )
            ).fetchone()
        return 0 if row is None else int(row["n"])

    async def update_subscription(self, subscription: Subscription) -> Subscription | None:
        s = subscription
        async with self._db.transaction() as c:
            row = await (
                await c.execute(
                    "UPDATE subscriptions SET sink = %(sink)s, protocol = %(protocol)s,"
                    " types = %(types)s, source = %(source)s, filters = %(filters)s,"
                    " protocolsettings = %(protocolsettings)s, sinkcredential = %(cred)s,"
                    " secret = %(secret)s, mode = %(mode)s, ordered = %(ordered)s,"
                    " form = %(form)s, options = %(options)s::jsonb, endpoint = %(endpoint)s,"
                    " rate_limit = %(rate)s, rate_next_at = CASE WHEN %(rate)s::integer IS NULL"
                    " THEN NULL ELSE rate_next_at END WHERE id = %(id)s"
                    " RETURNING *, options::text AS options_text",
                    {
                        "sink": s.sink,
                        "protocol": s.protocol,
                        "types": Jsonb(list(s.types)),
                        "source": s.source,
                        "filters": Jsonb([dict(f) for f in s.filters]),
                        "protocolsettings": Jsonb(dict(s.protocolsettings)),
                        "cred": s.sinkcredential,
                        "secret": s.delivery.secret,
                        "mode": s.delivery.mode,
                        "ordered": s.delivery.ordered,
                        "form": s.delivery.form,
                        "options": options_json(s.delivery),
                        "endpoint": s.endpoint,
                        "rate": s.delivery.rate_limit,
                        "id": s.id,
                    },
                )
            ).fetchone()
        return None if row is None else _rows.subscription(row)

    async def delete_subscription(self, subscription_id: str) -> bool:
        # Deliveries and their attempts go by ON DELETE CASCADE.
        async with self._db.transaction() as c:
            cursor = await c.execute("DELETE FROM subscriptions WHERE id = %s", (subscription_id,))
            return cursor.rowcount > 0

    # -- reads -------------------------------------------------------------------------------

    async def get_event(self, event_id: str) -> StoredEvent | None:
        async with self._db.transaction() as c:
            row = await (
                await c.execute("SELECT * FROM events WHERE id = %s", (event_id,))
            ).fetchone()
        return None if row is None else _rows.event(row)

    async def list_events(
        self,
        *,
        after: int = 0,
        types: Sequence[str] = (),
        source: str | None = None,
        limit: int,
    ) -> list[StoredEvent]:
        async with self._db.transaction() as c:
            rows = await (
                await c.execute(
                    "SELECT * FROM events WHERE position > %(after)s"
                    " AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))"
                    " AND (%(source)s::text IS NULL OR source = %(source)s)"
                    " ORDER BY position LIMIT %(limit)s",
                    {
                        "after": after,
                        "types": list(types) if types else None,
                        "source": source,
                        "limit": max(limit, 0),
                    },
                )
            ).fetchall()
        return [_rows.event(row) for row in rows]

    async def feed_head(self) -> int:
        async with self._db.transaction() as c:
            row = await (await c.execute("SELECT value FROM feed_position")).fetchone()
        return 0 if row is None else int(row["value"])

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async with self._db.transaction() as c:
            row = await (
                await c.execute(
                    f"SELECT {_rows.DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608
                    " WHERE d.id = %s",
                    (delivery_id,),
                )
            ).fetchone()
        return None if row is None else _rows.delivery(row)

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
        async with self._db.transaction() as c:
            rows = await (
                await c.execute(
                    f"SELECT {_rows.DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608
                    " WHERE (%(sub)s::text IS NULL OR d.subscription_id = %(sub)s)"
                    " AND (%(owner)s::text IS NULL OR d.subscription_id IN"
                    "  (SELECT o.id FROM subscriptions o WHERE o.owner = %(owner)s))"
                    " AND (%(status)s::text IS NULL OR d.status = %(status)s)"
                    " AND (%(retrying)s::boolean IS NULL OR (d.status = 'pending'"
                    "  AND (d.attempts > 0) = %(retrying)s))"
                    " AND (%(after_at)s::timestamptz IS NULL"
                    "  OR (d.created_at, d.id) > (%(after_at)s, %(after_id)s::text))"
                    " ORDER BY d.created_at, d.id LIMIT %(limit)s",
                    {
                        "sub": subscription_id,
                        "status": None if status is None else status.value,
                        "retrying": retrying,
                        "after_at": None if after is None else ts(after[0]),
                        "after_id": None if after is None else after[1],
                        "limit": limit,
                        "owner": owner,
                    },
                )
            ).fetchall()
        return [_rows.delivery(row) for row in rows]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        async with self._db.transaction() as c:
            rows = await (
                await c.execute(
                    "SELECT * FROM attempts WHERE delivery_id = %s ORDER BY number", (delivery_id,)
                )
            ).fetchall()
        return [_rows.attempt(row) for row in rows]

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
        async with self._db.transaction(durable=False) as c:
            await _queue.complete_all(c, completed, self._clock.now())
            if limit <= 0:
                return []
            return await _queue.claim(
                c,
                now=now,
                limit=limit,
                lease_until=lease_until,
                owner=owner,
                per_endpoint=per_endpoint,
            )

    async def claim_batch(
        self, job: DeliveryJob, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[DeliveryJob]:
        if limit <= 0:
            return []
        async with self._db.transaction(durable=False) as c:
            return await _queue.claim_batch(c, job, now=now, limit=limit, lease_until=lease_until)

    async def complete(
        self,
        job: DeliveryJob,
        attempt: Attempt,
        outcome: Outcome,
        health: EndpointHealth | None = None,
    ) -> None:
        async with self._db.transaction(durable=False) as c:
            await _queue.complete_all(
                c, (Completion(job, attempt, outcome, health),), self._clock.now()
            )

    async def next_due_at(self) -> datetime | None:
        async with self._db.transaction() as c:
            row = await (await c.execute(_queue.NEXT_DUE)).fetchone()
        return None if row is None else row["due"]

    async def get_circuit(self, endpoint: str) -> Circuit | None:
        async with self._db.transaction() as c:
            row = await (
                await c.execute("SELECT * FROM circuits WHERE endpoint = %s", (endpoint,))
            ).fetchone()
        return None if row is None else _rows.circuit(row)

    # -- operator actions --------------------------------------------------------------------

    async def retry_delivery(self, delivery_id: str) -> Delivery | None:
        now = ts(self._clock.now())
        async with self._db.transaction() as c:
            row = await (
                await c.execute(
                    "SELECT status, lease_until FROM deliveries WHERE id = %s FOR UPDATE",
                    (delivery_id,),
                )
            ).fetchone()
            if row is None:
                return None
            if row["status"] == "pending" and row["lease_until"] and row["lease_until"] > now:
                raise StoreConflict(f"delivery {delivery_id} is being sent right now")
            found = await (
                await c.execute(
                    "UPDATE deliveries d SET status = 'pending', next_attempt_at = %(now)s,"  # noqa: S608
                    " schedule_start = %(now)s, schedule_offset = attempts, lease_owner = NULL,"
                    " lease_until = NULL, updated_at = %(now)s WHERE id = %(id)s"
                    f" RETURNING {_rows.DELIVERY_COLUMNS}",
                    {"now": now, "id": delivery_id},
                )
            ).fetchone()
            await notify_wake(c)
        return None if found is None else _rows.delivery(found)

    async def replay(
        self,
        subscription_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        matcher: SubscriptionMatcher,
    ) -> int | None:
        async with self._db.transaction() as c:
            found = await (
                await c.execute(f"{_rows.SUBSCRIPTION} WHERE id = %s", (subscription_id,))
            ).fetchone()
            if found is None:
                return None
            subscription = _rows.subscription(found)
            events = await (
                await c.execute(
                    "SELECT * FROM events WHERE (%(start)s::timestamptz IS NULL"
                    " OR created_at >= %(start)s) AND (%(end)s::timestamptz IS NULL"
                    " OR created_at < %(end)s) ORDER BY position",
                    {"start": opt_ts(start), "end": opt_ts(end)},
                )
            ).fetchall()
            matched = [row["id"] for row in events if matcher(subscription, _rows.new_event(row))]
            if matched:
                await _queue.new_deliveries(c, subscription_id, matched, self._clock.now())
                await notify_wake(c)
            return len(matched)

    async def enable_subscription(self, subscription_id: str) -> Subscription | None:
        async with self._db.transaction() as c:
            found = await (
                await c.execute(
                    "SELECT endpoint FROM subscriptions WHERE id = %s", (subscription_id,)
                )
            ).fetchone()
            if found is None:
                return None
            # The endpoint's lock first, as every writer of its circuit takes it.
            await _queue.lock_endpoints(c, [found["endpoint"]])
            row = await (
                await c.execute(
                    "UPDATE subscriptions SET status = 'active', status_reason = NULL,"
                    " disabled_at = NULL WHERE id = %s RETURNING *, options::text AS options_text",
                    (subscription_id,),
                )
            ).fetchone()
            if row is None:
                return None
            # A fresh start: the endpoint is trusted again until it fails again.
            await c.execute("DELETE FROM circuits WHERE endpoint = %s", (row["endpoint"],))
            await notify_wake(c)
        return _rows.subscription(row)

    async def update_delivery_settings(
        self, subscription_id: str, settings: DeliverySettings
    ) -> Subscription | None:
        async with self._db.transaction() as c:
            row = await (
                await c.execute(
                    "UPDATE subscriptions SET secret = %s, mode = %s, ordered = %s, form = %s,"
                    " options = %s::jsonb, rate_limit = %s WHERE id = %s"
                    " RETURNING *, options::text AS options_text",
                    (
                        settings.secret,
                        settings.mode,
                        settings.ordered,
                        settings.form,
                        options_json(settings),
                        settings.rate_limit,
                        subscription_id,
                    ),
                )
            ).fetchone()
        return None if row is None else _rows.subscription(row)

    async def purge(self, *, delivered_before: datetime) -> PurgeResult:
        cut = {"cut": ts(delivered_before)}
        async with self._db.transaction() as c:
            # One instance at a time: the others' janitors find the work done (or being done).
            turn = await (await c.execute(_PURGE_TURN)).fetchone()
            if turn is None or not turn["mine"]:
                return PurgeResult(deliveries=0, events=0, messages=0)
            deliveries = await c.execute(
                "DELETE FROM deliveries WHERE status = 'succeeded' AND updated_at < %(cut)s", cut
            )
            events = await c.execute(
                "DELETE FROM events WHERE created_at < %(cut)s"
                " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
                cut,
            )
            messages = await c.execute(
                "DELETE FROM messages WHERE received_at < %(cut)s AND NOT EXISTS"
                " (SELECT 1 FROM events e WHERE e.message_id = messages.message_id)",
                cut,
            )
            return PurgeResult(
                deliveries=deliveries.rowcount, events=events.rowcount, messages=messages.rowcount
            )

    async def release_leases(self, owner: str | None = None) -> int:
        async with self._db.transaction() as c:
            cursor = await c.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner IS NOT NULL"
                " AND (%(owner)s::text IS NULL OR lease_owner = %(owner)s)",
                {"owner": owner},
            )
            if cursor.rowcount:
                await notify_wake(c)
            return cursor.rowcount

    async def queue_stats(self, *, now: datetime) -> QueueStats:
        async with self._db.transaction() as c:
            row = await (
                await c.execute(
                    "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
                    " count(*) FILTER (WHERE status = 'pending' AND lease_until > %s) AS in_flight,"
                    " min(created_at) FILTER (WHERE status = 'pending') AS oldest,"
                    " count(*) FILTER (WHERE status = 'dead') AS dead"
                    " FROM deliveries WHERE status IN ('pending', 'dead')",
                    (ts(now),),
                )
            ).fetchone()
            circuits = {
                CircuitState(r["state"]): int(r["n"])
                for r in await (
                    await c.execute("SELECT state, count(*) AS n FROM circuits GROUP BY 1")
                ).fetchall()
            }
        if row is None:  # pragma: no cover - an aggregate always answers one row
            raise StoreError("queue statistics returned nothing")
        return QueueStats(
            int(row["pending"]), int(row["in_flight"]), int(row["dead"]), row["oldest"], circuits
        )

    # -- terugmeldingen (transaction bodies in _terugmeldingen.py) ----------------------------

    async def create_terugmelding(
        self,
        record: TerugmeldingRecord,
        request: DmksRequest,
        idempotency: IdempotencyKey | None = None,
    ) -> CreatedTerugmelding:
        async with self._db.transaction() as c:
            return await _tm.create(c, record, request, idempotency)

    async def get_terugmelding(self, terugmelding_id: str) -> TerugmeldingRecord | None:
        async with self._db.transaction() as c:
            return await _tm.get(c, terugmelding_id)

    async def list_terugmeldingen(
        self,
        *,
        owner: str | None = None,
        transport_status: TransportStatus | None = None,
        dmks_status: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TerugmeldingRecord]:
        async with self._db.transaction() as c:
            return await _tm.listing(
                c,
                owner=owner,
                transport_status=transport_status,
                dmks_status=dmks_status,
                after=after,
                limit=limit,
            )

    async def terugmelding_history(self, terugmelding_id: str) -> list[HistoryEntry]:
        async with self._db.transaction() as c:
            return await _tm.history(c, terugmelding_id)

    async def queue_intrekking(
        self, request: DmksRequest, *, end_states: Collection[str]
    ) -> TerugmeldingRecord | None:
        async with self._db.transaction() as c:
            return await _tm.queue_intrekking(c, request, tuple(end_states))

    async def claim_dmks_requests(
        self, *, now: datetime, limit: int, lease_until: datetime, owner: str
    ) -> list[DmksRequest]:
        async with self._db.transaction(durable=False) as c:
            return await _tm.claim(c, now, limit, lease_until, owner)

    async def complete_dmks_request(
        self,
        request: DmksRequest,
        outcome: DmksOutcome,
        notice: TransportNotice,
        matcher: SubscriptionMatcher,
    ) -> bool:
        async with self._db.transaction() as c:
            return await _tm.complete(
                c,
                request=request,
                outcome=outcome,
                notice=notice,
                matcher=matcher,
                now=self._clock.now(),
            )

    async def next_dmks_due_at(self) -> datetime | None:
        async with self._db.transaction() as c:
            return await _tm.next_due(c)

    async def release_dmks_leases(self, owner: str | None = None) -> int:
        async with self._db.transaction() as c:
            return await _tm.release(c, owner)

    async def open_terugmeldingen(self, *, end_states: Collection[str]) -> list[OpenTerugmelding]:
        async with self._db.transaction() as c:
            return await _tm.open_ones(c, tuple(end_states))

    async def record_dmks_status(
        self, change: DmksStatusChange, matcher: SubscriptionMatcher
    ) -> bool:
        async with self._db.transaction() as c:
            return await _tm.record_status(c, change, matcher, self._clock.now())


#: The retention clean-up's turn: a transaction-scoped advisory lock, taken without waiting.
PURGE_LOCK_KEY = "hashtext(current_schema() || ':purge')"
_PURGE_TURN = f"SELECT pg_try_advisory_xact_lock({PURGE_LOCK_KEY}) AS mine"

#: The listing filter: one owner, one exact sink, every one of the types (jsonb containment).
_LISTED = (
    "(%(owner)s::text IS NULL OR owner = %(owner)s)"
    " AND (%(sink)s::text IS NULL OR sink = %(sink)s)"
    " AND types @> %(types)s"
)


def _listing(owner: str | None, sink: str | None, types: Sequence[str]) -> dict[str, object]:
    return {"owner": owner, "sink": sink, "types": Jsonb(list(dict.fromkeys(types)))}

"""The delivery queue on PostgreSQL: claims, outcomes, circuits, shared by every instance.

Several instances claim from one table, so what one process kept in its head on SQLite is taken
in the database here:

- rows are leased with `SELECT … FOR UPDATE SKIP LOCKED` (two claimers never wait for or take
  the same row) and a lease time (a killed instance's claims return to the queue when it ends);
- an endpoint's concurrency limit, open circuit (one probe) and its subscriptions' rate limits
  are decided under a transaction-scoped advisory lock per endpoint. A claim *tries* the locks
  (`pg_try_advisory_xact_lock`: an endpoint another instance is claiming for right now is left
  to it for this turn) and then counts running leases and reads the circuit afresh, so two
  claimers can never both see room for the last slot;
- recording an outcome takes its endpoint's lock (blocking, in sorted order, before any write),
  so circuit counts are never lost to a concurrent update and no two transactions wait on each
  other in a cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg.rows import DictRow

from digibridge.store._circuit import failing_too_long, new_circuit, record
from digibridge.store.postgres import _rows
from digibridge.store.postgres._connection import Connection, opt_ts, ts
from digibridge.store.postgres._ingest import ingest
from digibridge.store.types import (
    Attempt,
    CircuitState,
    Completion,
    DeliveryJob,
    DeliveryStatus,
    EndpointHealth,
    InboundMessage,
    NewEvent,
    Outcome,
    OutcomeKind,
    StoreError,
    SubscriptionMatcher,
)

#: Tables joined by the claim queries: the delivery `d`, its subscription `s`, event `e`, and the
#: circuit `c` of the subscription's endpoint.
QUEUE_JOINS = (
    " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
    " JOIN events e ON e.id = d.event_id LEFT JOIN circuits c ON c.endpoint = s.endpoint"
)
#: For an ordered subscription: no earlier pending delivery of the same subject.
IN_ORDER = (
    "(NOT s.ordered OR e.subject IS NULL OR NOT EXISTS ("
    " SELECT 1 FROM deliveries p JOIN events pe ON pe.id = p.event_id"
    " WHERE p.subscription_id = d.subscription_id AND p.status = 'pending'"
    " AND pe.subject = e.subject AND pe.position < e.position))"
)
#: The circuit `c` of the endpoint lets a request through: closed, or open/half-open with its
#: wait over (the probe).
_CIRCUIT_LETS_THROUGH = (
    "(c.state IS NULL OR c.state = 'closed' OR (c.state = 'open' AND c.retry_at <= %(now)s)"
    " OR (c.state = 'half_open' AND c.probe_until <= %(now)s))"
)
#: A pending delivery claimable at %(now)s once due (as SQLite's `_CLAIMABLE`).
CLAIMABLE = (
    " d.status = 'pending' AND s.status = 'active'"
    " AND (d.lease_until IS NULL OR d.lease_until <= %(now)s)"
    f" AND {_CIRCUIT_LETS_THROUGH} AND {IN_ORDER}"
)
#: A rate-limited subscription `s` may send its next request.
_RATE_LETS_THROUGH = "(s.rate_limit IS NULL OR s.rate_next_at IS NULL OR s.rate_next_at <= %(now)s)"
_DUE = (
    f"SELECT d.id, d.next_attempt_at, d.seq, s.endpoint, s.id AS sub, s.rate_limit{QUEUE_JOINS}"
    f" WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s AND {CLAIMABLE}"
    f" AND {_RATE_LETS_THROUGH} ORDER BY d.next_attempt_at, d.seq LIMIT %(scan)s"
)
#: The earliest %(each)s claimable deliveries of every active subscription whose endpoint is
#: not in %(full)s, from an index range each (`deliveries_subscription_due`). Read instead of
#: the walk above when some endpoint is at its limit: a hanging endpoint's backlog is the
#: oldest part of the queue, and the walk would go through all of it. Read after the walk
#: when it stopped at its limit: the rows it read may all belong to an endpoint that fills up
#: within the claim, with the other endpoints' deliveries behind them (as SQLite's
#: `_DUE_BESIDE_FULL`).
_DUE_PER_SUBSCRIPTION = (
    "SELECT d.id, d.next_attempt_at, d.seq, s.endpoint, s.id AS sub, s.rate_limit"  # noqa: S608
    " FROM subscriptions s LEFT JOIN circuits c ON c.endpoint = s.endpoint"
    " CROSS JOIN LATERAL (SELECT d.id, d.next_attempt_at, d.seq FROM deliveries d"
    " JOIN events e ON e.id = d.event_id"
    " WHERE d.subscription_id = s.id AND d.status = 'pending'"
    " AND d.next_attempt_at <= %(now)s AND (d.lease_until IS NULL OR d.lease_until <= %(now)s)"
    f" AND {IN_ORDER} ORDER BY d.next_attempt_at, d.seq LIMIT %(each)s) d"
    f" WHERE s.status = 'active' AND {_CIRCUIT_LETS_THROUGH} AND {_RATE_LETS_THROUGH}"
    " AND NOT (s.endpoint = ANY(%(full)s::text[]))"
    " ORDER BY d.next_attempt_at, d.seq LIMIT %(scan)s"
)
#: Endpoints with at least %(cap)s leases running (a hint read without their locks: the
#: claim's locked re-read still decides).
_FULL = (
    "SELECT s.endpoint FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
    " WHERE d.lease_until > %(now)s AND d.status = 'pending'"
    " GROUP BY s.endpoint HAVING count(*) >= %(cap)s"
)
#: How many of the earliest pending deliveries `NEXT_DUE` weighs one by one.
_NEXT_DUE_WINDOW = 256
#: When the earliest pending delivery becomes claimable (lease, circuit wait, rate and order
#: included), weighed over the `_NEXT_DUE_WINDOW` earliest by `next_attempt_at` (an index range)
#: plus the window's edge: a delivery past it is due no earlier than the edge. So the answer is
#: never later than the true one (at worst a look too early), at the same cost however long the
#: queue (as the SQLite store does).
NEXT_DUE = (
    "SELECT MIN(due) AS due FROM ("  # noqa: S608 - constants only, no input
    " SELECT GREATEST(d.next_attempt_at, d.lease_until,"
    " CASE WHEN c.state = 'open' THEN c.retry_at WHEN c.state = 'half_open' THEN c.probe_until"
    " END, CASE WHEN s.rate_limit IS NOT NULL THEN s.rate_next_at END) AS due"
    " FROM (SELECT * FROM deliveries WHERE status = 'pending'"
    f" ORDER BY next_attempt_at, seq LIMIT {_NEXT_DUE_WINDOW}) d"
    " JOIN subscriptions s ON s.id = d.subscription_id JOIN events e ON e.id = d.event_id"
    " LEFT JOIN circuits c ON c.endpoint = s.endpoint"
    f" WHERE s.status = 'active' AND {IN_ORDER}"
    " UNION ALL SELECT edge.next_attempt_at FROM (SELECT next_attempt_at FROM deliveries"
    " WHERE status = 'pending' ORDER BY next_attempt_at, seq"
    f" LIMIT 1 OFFSET {_NEXT_DUE_WINDOW - 1}) edge) weighed"
)
#: The advisory lock key of an endpoint, per schema (schemas sharing a database do not collide).
_ENDPOINT_KEY = "hashtext(current_schema() || ':endpoint:' || {})"
#: A claim looks at most this many due deliveries (per delivery it may take).
_SCAN_PER_CLAIM = 64


async def lock_endpoints(c: Connection, endpoints: Sequence[str]) -> None:
    """Wait for the advisory locks of `endpoints`, in sorted order (no cycles between waiters)."""
    ordered = sorted(set(endpoints))
    if ordered:
        await c.execute(
            f"SELECT pg_advisory_xact_lock({_ENDPOINT_KEY.format('e')})"  # noqa: S608
            " FROM unnest(%s::text[]) AS e ORDER BY e",
            (ordered,),
        )


async def _try_endpoints(c: Connection, endpoints: Sequence[str]) -> set[str]:
    """The endpoints whose advisory lock this transaction holds now (taken without waiting)."""
    if not endpoints:
        return set()
    rows = await (
        await c.execute(
            f"SELECT e, pg_try_advisory_xact_lock({_ENDPOINT_KEY.format('e')}) AS got"  # noqa: S608
            " FROM unnest(%s::text[]) AS e",
            (sorted(set(endpoints)),),
        )
    ).fetchall()
    return {row["e"] for row in rows if row["got"]}


@dataclass
class _Room:
    """What the endpoints this claim holds allow, read after their locks were taken."""

    #: Endpoints whose advisory lock this transaction holds.
    locked: set[str]
    #: Leases running per endpoint.
    busy: dict[str, int]
    #: Circuit rows (state, retry_at, probe_until) per endpoint.
    circuits: dict[str, DictRow]
    #: Rate-limited subscriptions whose next request may start now.
    rate_free: set[str]


@dataclass
class _Choice:
    taken: list[str] = field(default_factory=list)
    #: delivery id -> endpoint, for the deliveries taken as an open circuit's probe.
    probes: dict[str, str] = field(default_factory=dict)
    #: delivery id -> (subscription, rate), for each rate-limited subscription's one request.
    paced: dict[str, tuple[str, int]] = field(default_factory=dict)


async def claim(
    c: Connection,
    *,
    now: datetime,
    limit: int,
    lease_until: datetime,
    owner: str,
    per_endpoint: int | None,
) -> list[DeliveryJob]:
    at, until = ts(now), ts(lease_until)
    scan = max(limit, 1) * _SCAN_PER_CLAIM
    full: list[str] = []
    if per_endpoint is not None:
        rows = await (await c.execute(_FULL, {"now": at, "cap": per_endpoint})).fetchall()
        full = [row["endpoint"] for row in rows]
    parameters = {"now": at, "scan": scan, "full": full, "each": min(limit, per_endpoint or limit)}
    if full:
        # A full endpoint's backlog would be walked through inside the database.
        candidates = await (await c.execute(_DUE_PER_SUBSCRIPTION, parameters)).fetchall()
    else:
        candidates = await (await c.execute(_DUE, parameters)).fetchall()
        if len(candidates) == scan:
            # The walk stopped at its limit: add each subscription's earliest, oldest first.
            seen = {row["id"] for row in candidates}
            beside = await (await c.execute(_DUE_PER_SUBSCRIPTION, parameters)).fetchall()
            candidates += [row for row in beside if row["id"] not in seen]
            candidates.sort(key=lambda row: (row["next_attempt_at"], row["seq"]))
    if not candidates:
        return []
    room = await _room(c, candidates, at)
    if not room.locked:
        return []
    choice = _choose(candidates, room, at=at, limit=limit, cap=per_endpoint or 2**31)
    leased = await _lease(c, choice.taken, owner, at, until)
    for sub, rate in sorted({choice.paced[i] for i in leased if i in choice.paced}):
        # One request per 60/rate seconds: a batch claimed with it rides along.
        await c.execute(
            "UPDATE subscriptions SET rate_next_at = %s WHERE id = %s",
            (at + timedelta(seconds=60 / rate), sub),
        )
    probes = sorted({choice.probes[i] for i in leased if i in choice.probes})
    if probes:
        # The open circuit's pause is over: the delivery just taken is its probe.
        await c.execute(
            "UPDATE circuits SET state = 'half_open', probe_until = %s, updated_at = %s"
            " WHERE endpoint = ANY(%s)",
            (until, at, probes),
        )
    return await jobs(c, [i for i in choice.taken if i in leased], owner, until)


async def _room(c: Connection, candidates: list[DictRow], at: datetime) -> _Room:
    """Take the candidates' endpoint locks that are free, then read their state afresh."""
    locked = await _try_endpoints(c, [row["endpoint"] for row in candidates])
    if not locked:
        return _Room(set(), {}, {}, set())
    ours = sorted(locked)
    busy = await (
        await c.execute(
            "SELECT s.endpoint, count(*) AS n FROM deliveries d"
            " JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.lease_until > %s AND d.status = 'pending' AND s.endpoint = ANY(%s)"
            " GROUP BY s.endpoint",
            (at, ours),
        )
    ).fetchall()
    circuits = await (
        await c.execute(
            "SELECT endpoint, state, retry_at, probe_until FROM circuits WHERE endpoint = ANY(%s)",
            (ours,),
        )
    ).fetchall()
    paced = sorted({row["sub"] for row in candidates if row["rate_limit"]})
    # Locked before any delivery row is leased: the order every writer of both keeps.
    rates = await (
        await c.execute(
            "SELECT id, rate_next_at FROM subscriptions WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (paced,),
        )
    ).fetchall()
    return _Room(
        locked=locked,
        busy={row["endpoint"]: row["n"] for row in busy},
        circuits={row["endpoint"]: row for row in circuits},
        rate_free={
            row["id"] for row in rates if row["rate_next_at"] is None or row["rate_next_at"] <= at
        },
    )


def _choose(
    candidates: list[DictRow], room: _Room, *, at: datetime, limit: int, cap: int
) -> _Choice:
    """The candidates to lease, oldest first, within what `room` allows (as SQLite's claim)."""
    choice = _Choice()
    busy = dict(room.busy)
    for row in candidates:
        if len(choice.taken) >= limit:
            break
        endpoint = row["endpoint"]
        if endpoint not in room.locked:
            continue  # another instance is claiming for it right now
        circuit = room.circuits.get(endpoint)
        waiting = circuit is not None and (
            (circuit["state"] == CircuitState.OPEN and circuit["retry_at"] > at)
            or (circuit["state"] == CircuitState.HALF_OPEN and circuit["probe_until"] > at)
        )
        probing = circuit is not None and circuit["state"] != CircuitState.CLOSED
        if waiting or busy.get(endpoint, 0) >= (1 if probing else cap):
            continue
        if row["rate_limit"]:
            given = any(sub == row["sub"] for sub, _ in choice.paced.values())
            if given or row["sub"] not in room.rate_free:
                continue
            choice.paced[row["id"]] = (row["sub"], row["rate_limit"])
        busy[endpoint] = busy.get(endpoint, 0) + 1
        choice.taken.append(row["id"])
        if probing:
            choice.probes[row["id"]] = endpoint
    return choice


async def _lease(
    c: Connection, ids: list[str], owner: str, now: datetime, until: datetime
) -> set[str]:
    """Lease those of `ids` still claimable that no other transaction holds; their ids."""
    if not ids:
        return set()
    rows = await (
        await c.execute(
            "WITH free AS (SELECT id FROM deliveries WHERE id = ANY(%(ids)s)"
            " AND status = 'pending' AND (lease_until IS NULL OR lease_until <= %(now)s)"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE deliveries d SET lease_owner = %(owner)s, lease_until = %(until)s"
            " FROM free WHERE d.id = free.id RETURNING d.id",
            {"ids": ids, "now": now, "owner": owner, "until": until},
        )
    ).fetchall()
    return {row["id"] for row in rows}


async def jobs(c: Connection, ids: list[str], owner: str, until: datetime) -> list[DeliveryJob]:
    """The claimed deliveries `ids` (in that order) with their subscriptions and events."""
    if not ids:
        return []
    deliveries = {
        row["id"]: _rows.delivery(row)
        for row in await (
            await c.execute(
                f"SELECT {_rows.DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608 - constant
                " WHERE d.id = ANY(%s)",
                (ids,),
            )
        ).fetchall()
    }
    events = {
        row["id"]: _rows.event(row)
        for row in await (
            await c.execute(
                "SELECT * FROM events WHERE id = ANY(%s)",
                ([d.event_id for d in deliveries.values()],),
            )
        ).fetchall()
    }
    subscriptions = {
        row["id"]: _rows.subscription(row)
        for row in await (
            await c.execute(
                f"{_rows.SUBSCRIPTION} WHERE id = ANY(%s)",
                ([d.subscription_id for d in deliveries.values()],),
            )
        ).fetchall()
    }
    return [
        DeliveryJob(
            delivery=deliveries[i],
            subscription=subscriptions[deliveries[i].subscription_id],
            event=events[deliveries[i].event_id],
            lease_until=until,
            lease_owner=owner,
        )
        for i in ids
    ]


async def claim_batch(
    c: Connection, job: DeliveryJob, *, now: datetime, limit: int, lease_until: datetime
) -> list[DeliveryJob]:
    at, until = ts(now), ts(lease_until)
    rows = await (
        await c.execute(
            f"SELECT d.id{QUEUE_JOINS} WHERE d.subscription_id = %(sub)s"
            f" AND d.next_attempt_at <= %(now)s AND {CLAIMABLE}"
            " ORDER BY d.next_attempt_at, d.seq LIMIT %(limit)s",
            {"sub": job.subscription.id, "now": at, "limit": limit},
        )
    ).fetchall()
    ids = [row["id"] for row in rows]
    leased = await _lease(c, ids, job.lease_owner, at, until)
    return await jobs(c, [i for i in ids if i in leased], job.lease_owner, until)


async def complete_all(c: Connection, completions: Sequence[Completion], now: datetime) -> None:
    """Record `completions` in order, after taking their endpoints' locks."""
    if not completions:
        return
    await lock_endpoints(c, [done.job.subscription.endpoint for done in completions])
    for done in completions:
        await _complete(c, done, now)


async def _complete(c: Connection, done: Completion, now: datetime) -> None:
    job, attempt, outcome, health = done.job, done.attempt, done.outcome, done.health
    status, next_at, error = _apply(outcome, attempt)
    held = await (
        await c.execute(
            "UPDATE deliveries SET status = %s, attempts = attempts + 1, next_attempt_at = %s,"
            " lease_owner = NULL, lease_until = NULL, updated_at = %s, last_error = %s,"
            " last_status_code = %s WHERE id = %s AND status = 'pending'"
            " AND lease_owner = %s AND lease_until = %s RETURNING id",
            (
                status,
                next_at,
                ts(now),
                error,
                attempt.status_code,
                job.delivery.id,
                job.lease_owner,
                ts(job.lease_until),
            ),
        )
    ).fetchone()
    if held is None:
        return  # the lease expired and someone else took the delivery over
    await c.execute(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code,"
        " error, response_excerpt) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            job.delivery.id,
            attempt.number,
            ts(attempt.started_at),
            attempt.duration_ms,
            attempt.status_code,
            attempt.error,
            attempt.response_excerpt,
        ),
    )
    to_disable: list[tuple[str, str]] = []
    if outcome.disable_subscription is not None:
        to_disable.append((job.subscription.id, outcome.disable_subscription))
    if health is not None and outcome.endpoint_failed is not None:
        to_disable += await _record_health(c, job.subscription.endpoint, outcome, health, now)
    for subscription_id, reason in to_disable:
        await _disable(c, subscription_id, reason=reason, now=now, health=health)


def _apply(outcome: Outcome, attempt: Attempt) -> tuple[str, datetime | None, str | None]:
    """The delivery's new (status, next_attempt_at, last_error) for an outcome."""
    if outcome.kind is OutcomeKind.SUCCEEDED:
        return DeliveryStatus.SUCCEEDED.value, None, None
    if outcome.kind is OutcomeKind.RETRY:
        if outcome.retry_at is None:
            raise StoreError("a RETRY outcome needs retry_at")
        return DeliveryStatus.PENDING.value, ts(outcome.retry_at), attempt.error
    return DeliveryStatus.DEAD.value, None, outcome.reason or attempt.error


async def _record_health(
    c: Connection, endpoint: str, outcome: Outcome, health: EndpointHealth, now: datetime
) -> list[tuple[str, str]]:
    """Count the outcome in the endpoint's circuit; the subscriptions to disable for it."""
    row = await (
        await c.execute("SELECT * FROM circuits WHERE endpoint = %s", (endpoint,))
    ).fetchone()
    before = new_circuit(endpoint, now) if row is None else _rows.circuit(row)
    after = record(before, failed=bool(outcome.endpoint_failed), now=now, policy=health.policy)
    await c.execute(
        "INSERT INTO circuits (endpoint, state, window_start, successes, failures, retry_at,"
        " probe_until, failing_since, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (endpoint) DO UPDATE SET state = excluded.state,"
        " window_start = excluded.window_start, successes = excluded.successes,"
        " failures = excluded.failures, retry_at = excluded.retry_at,"
        " probe_until = excluded.probe_until, failing_since = excluded.failing_since,"
        " updated_at = excluded.updated_at",
        (
            endpoint,
            after.state.value,
            ts(after.window_start),
            after.successes,
            after.failures,
            opt_ts(after.retry_at),
            opt_ts(after.probe_until),
            opt_ts(after.failing_since),
            ts(now),
        ),
    )
    if not failing_too_long(after, now, health.policy) or after.failing_since is None:
        return []
    since = after.failing_since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    reason = f"endpoint {endpoint} failing since {since}"
    rows = await (
        await c.execute(
            "SELECT id FROM subscriptions WHERE endpoint = %s AND status = 'active' ORDER BY id",
            (endpoint,),
        )
    ).fetchall()
    return [(r["id"], reason) for r in rows]


async def _disable(
    c: Connection,
    subscription_id: str,
    *,
    reason: str,
    now: datetime,
    health: EndpointHealth | None,
) -> None:
    """Disable an active subscription and, with `health`, announce it as an event."""
    row = await (
        await c.execute(
            "UPDATE subscriptions SET status = 'disabled', status_reason = %s, disabled_at = %s"
            " WHERE id = %s AND status = 'active' RETURNING *, options::text AS options_text",
            (reason, ts(now), subscription_id),
        )
    ).fetchone()
    if row is None or health is None:
        return
    notice = health.notice(_rows.subscription(row), reason, now)
    await store_notice(c, notice_message(notice.id, notice.type, now), notice, health.matcher, now)


def notice_message(event_id: str, event_type: str, at: datetime) -> InboundMessage:
    """The synthetic message a notice event is stored under: digibridge itself, keyed by the
    event's id, so storing the same notice again is recognised as a duplicate."""
    message_id = f"urn:digibridge:notice:{event_id}"
    return InboundMessage(
        message_id=message_id,
        kenmerk=message_id,
        basisregistratie="digibridge",
        gebeurtenissoort=event_type,
        received_at=at,
    )


async def store_notice(
    c: Connection,
    message: InboundMessage,
    event: NewEvent,
    matcher: SubscriptionMatcher,
    now: datetime,
) -> None:
    await ingest(c, message, (event,), matcher, now)


async def new_deliveries(
    c: Connection, subscription_id: str, event_ids: Sequence[str], now: datetime
) -> None:
    """Pending deliveries of `event_ids` to one subscription, due `now`."""
    at = ts(now)
    async with c.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO deliveries (id, subscription_id, event_id, status, attempts,"
            " next_attempt_at, created_at, updated_at)"
            " VALUES (%s, %s, %s, 'pending', 0, %s, %s, %s)",
            [(str(uuid.uuid4()), subscription_id, event_id, at, at, at) for event_id in event_ids],
        )

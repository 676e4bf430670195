"""The terugmeldingen part of the PostgreSQL store: each function runs in one open transaction.

As on SQLite, status-change events are stored through the ingest with a synthetic message keyed
by the event id, so an event can never be stored twice. What SQLite got from having one writer
is taken explicitly here: the Idempotency-Key is claimed with `ON CONFLICT DO NOTHING` before
anything else is written, outbox requests are leased with `FOR UPDATE SKIP LOCKED`, and history
lines are numbered under the terugmelding's row lock.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from digibridge.store._outbox import FOLLOWS_FAILED_MELDING, outbox_step
from digibridge.store.postgres._connection import Connection, opt_ts, ts
from digibridge.store.postgres._listener import notify_wake
from digibridge.store.postgres._queue import notice_message, store_notice
from digibridge.store.types import (
    CreatedTerugmelding,
    DmksOutcome,
    DmksRequest,
    DmksStatusChange,
    HistoryEntry,
    HistoryKind,
    IdempotencyConflict,
    IdempotencyKey,
    NewEvent,
    OpenTerugmelding,
    RequestKind,
    StoreConflict,
    SubscriptionMatcher,
    TerugmeldingRecord,
    TransportNotice,
    TransportStatus,
)

# -- create and read ---------------------------------------------------------------------------


async def create(
    c: Connection,
    record: TerugmeldingRecord,
    request: DmksRequest,
    idempotency: IdempotencyKey | None,
) -> CreatedTerugmelding:
    r = record
    if idempotency is not None:
        claimed = await (
            await c.execute(
                "INSERT INTO terugmelding_keys (owner, key, body_digest, terugmelding_id,"
                " created_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING key",
                (
                    idempotency.owner,
                    idempotency.key,
                    idempotency.body_digest,
                    r.id,
                    ts(r.created_at),
                ),
            )
        ).fetchone()
        if claimed is None:
            return await _replayed(c, idempotency)
    await c.execute(
        "INSERT INTO terugmeldingen (id, owner, registratie, oin_basisregistratie, oin_melder,"
        " document, root_uuid, transport_status, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            r.id,
            r.owner,
            r.registratie,
            r.oin_basisregistratie,
            r.oin_melder,
            Jsonb(dict(r.document)),
            r.root_uuid,
            r.transport_status.value,
            ts(r.created_at),
            ts(r.updated_at),
        ),
    )
    await _insert_request(c, request)
    await _history(
        c,
        r.id,
        HistoryEntry(
            kind=HistoryKind.TRANSPORT,
            at=r.created_at,
            status=TransportStatus.ONTVANGEN.value,
            request_kind=RequestKind.MELDING,
        ),
    )
    await notify_wake(c)
    return CreatedTerugmelding(record=record, replayed=False)


async def _replayed(c: Connection, idempotency: IdempotencyKey) -> CreatedTerugmelding:
    row = await (
        await c.execute(
            "SELECT body_digest, terugmelding_id FROM terugmelding_keys"
            " WHERE owner = %s AND key = %s",
            (idempotency.owner, idempotency.key),
        )
    ).fetchone()
    if row is None:
        raise StoreConflict(f"Idempotency-Key {idempotency.key!r} is being released; try again")
    if row["body_digest"] != idempotency.body_digest:
        raise IdempotencyConflict(f"Idempotency-Key {idempotency.key!r} was used with another body")
    first = await get(c, row["terugmelding_id"])
    if first is None:  # pragma: no cover - the key's row cascades with its terugmelding
        raise StoreConflict(f"Idempotency-Key {idempotency.key!r} lost its terugmelding")
    return CreatedTerugmelding(record=first, replayed=True)


async def _insert_request(c: Connection, request: DmksRequest) -> None:
    q = request
    created = ts(q.created_at)
    await c.execute(
        "INSERT INTO dmks_outbox (id, terugmelding_id, kind, registratie, oin_basisregistratie,"
        " annotatieboom, root_uuid, uuids, status, attempts, next_attempt_at, created_at,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'pending', 0, %s, %s, %s)",
        (
            q.id,
            q.terugmelding_id,
            q.kind.value,
            q.registratie,
            q.oin_basisregistratie,
            q.annotatieboom,
            q.root_uuid,
            Jsonb(list(q.uuids)),
            ts(q.next_attempt_at or q.created_at),
            created,
            created,
        ),
    )


async def _history(c: Connection, terugmelding_id: str, entry: HistoryEntry) -> None:
    # The terugmelding's row lock numbers its history lines one writer at a time.
    await c.execute("SELECT 1 FROM terugmeldingen WHERE id = %s FOR UPDATE", (terugmelding_id,))
    await c.execute(
        "INSERT INTO terugmelding_history (terugmelding_id, seq, kind, at, status, previous,"
        " request_kind, code, text, retried, unexpected, registry_time)"
        " VALUES (%(id)s, (SELECT COALESCE(MAX(seq), 0) + 1 FROM terugmelding_history"
        "  WHERE terugmelding_id = %(id)s), %(kind)s, %(at)s, %(status)s, %(previous)s,"
        " %(request_kind)s, %(code)s, %(text)s, %(retried)s, %(unexpected)s, %(registry_time)s)",
        {
            "id": terugmelding_id,
            "kind": entry.kind.value,
            "at": ts(entry.at),
            "status": entry.status,
            "previous": entry.previous,
            "request_kind": None if entry.request_kind is None else entry.request_kind.value,
            "code": entry.code,
            "text": entry.text,
            "retried": entry.retried,
            "unexpected": entry.unexpected,
            "registry_time": opt_ts(entry.registry_time),
        },
    )


async def get(c: Connection, terugmelding_id: str) -> TerugmeldingRecord | None:
    row = await (
        await c.execute("SELECT * FROM terugmeldingen WHERE id = %s", (terugmelding_id,))
    ).fetchone()
    return None if row is None else _record(row)


async def listing(
    c: Connection,
    *,
    owner: str | None,
    transport_status: TransportStatus | None,
    dmks_status: str | None,
    after: tuple[datetime, str] | None,
    limit: int | None,
) -> list[TerugmeldingRecord]:
    rows = await (
        await c.execute(
            "SELECT * FROM terugmeldingen WHERE (%(owner)s::text IS NULL OR owner = %(owner)s)"
            " AND (%(transport)s::text IS NULL OR transport_status = %(transport)s)"
            " AND (%(dmks)s::text IS NULL OR dmks_status = %(dmks)s)"
            " AND (%(after_at)s::timestamptz IS NULL"
            "  OR (created_at, id) > (%(after_at)s, %(after_id)s::text))"
            " ORDER BY created_at, id LIMIT %(limit)s",
            {
                "owner": owner,
                "transport": None if transport_status is None else transport_status.value,
                "dmks": dmks_status,
                "after_at": None if after is None else ts(after[0]),
                "after_id": None if after is None else after[1],
                "limit": limit,
            },
        )
    ).fetchall()
    return [_record(row) for row in rows]


async def history(c: Connection, terugmelding_id: str) -> list[HistoryEntry]:
    rows = await (
        await c.execute(
            "SELECT * FROM terugmelding_history WHERE terugmelding_id = %s ORDER BY seq",
            (terugmelding_id,),
        )
    ).fetchall()
    return [
        HistoryEntry(
            kind=HistoryKind(row["kind"]),
            at=row["at"],
            status=row["status"],
            previous=row["previous"],
            request_kind=None if row["request_kind"] is None else RequestKind(row["request_kind"]),
            code=row["code"],
            text=row["text"],
            retried=row["retried"],
            unexpected=bool(row["unexpected"]),
            registry_time=row["registry_time"],
        )
        for row in rows
    ]


def _record(row: DictRow) -> TerugmeldingRecord:
    intrekking = row["intrekking_status"]
    return TerugmeldingRecord(
        id=row["id"],
        owner=row["owner"],
        registratie=row["registratie"],
        oin_basisregistratie=row["oin_basisregistratie"],
        oin_melder=row["oin_melder"],
        document=row["document"],
        root_uuid=row["root_uuid"],
        transport_status=TransportStatus(row["transport_status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        dmks_status=row["dmks_status"],
        dmks_status_at=row["dmks_status_at"],
        annotatie_uuid=row["annotatie_uuid"],
        verzonden_at=row["verzonden_at"],
        intrekking_status=None if intrekking is None else TransportStatus(intrekking),
    )


# -- intrekken ---------------------------------------------------------------------------------


async def queue_intrekking(
    c: Connection, request: DmksRequest, end_states: Collection[str]
) -> TerugmeldingRecord | None:
    row = await (
        await c.execute(
            "SELECT * FROM terugmeldingen WHERE id = %s FOR UPDATE", (request.terugmelding_id,)
        )
    ).fetchone()
    if row is None:
        return None
    record = _record(row)
    if record.transport_status is TransportStatus.MISLUKT:
        raise StoreConflict("the terugmelding was never delivered to DigiMelding (mislukt)")
    if record.intrekking_status is not None:
        raise StoreConflict(f"a withdrawal was already asked ({record.intrekking_status.value})")
    if record.dmks_status in end_states:
        raise StoreConflict(f"the terugmelding is closed: DMKS status {record.dmks_status!r}")
    await _insert_request(c, request)
    await c.execute(
        "UPDATE terugmeldingen SET intrekking_status = 'ontvangen', updated_at = %s WHERE id = %s",
        (ts(request.created_at), record.id),
    )
    await _history(
        c,
        record.id,
        HistoryEntry(
            kind=HistoryKind.TRANSPORT,
            at=request.created_at,
            status=TransportStatus.ONTVANGEN.value,
            request_kind=RequestKind.INTREKKING,
        ),
    )
    await notify_wake(c)
    return await get(c, record.id)


# -- the outbox --------------------------------------------------------------------------------

#: Due, unleased, and first in line for its terugmelding.
_CLAIMABLE = (
    "o.status = 'pending' AND o.next_attempt_at <= %(now)s"
    " AND (o.lease_until IS NULL OR o.lease_until <= %(now)s)"
    " AND NOT EXISTS (SELECT 1 FROM dmks_outbox p WHERE p.terugmelding_id = o.terugmelding_id"
    "  AND p.status = 'pending' AND (p.created_at, p.seq) < (o.created_at, o.seq))"
)


async def claim(
    c: Connection, now: datetime, limit: int, lease_until: datetime, owner: str
) -> list[DmksRequest]:
    rows = await (
        await c.execute(
            "WITH free AS (SELECT o.id, o.next_attempt_at, o.seq FROM dmks_outbox o"  # noqa: S608
            f" WHERE {_CLAIMABLE} ORDER BY o.next_attempt_at, o.seq LIMIT %(limit)s"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE dmks_outbox d SET lease_owner = %(owner)s, lease_until = %(until)s"
            " FROM free WHERE d.id = free.id RETURNING d.*, free.next_attempt_at AS due,"
            " free.seq AS ord",
            {"now": ts(now), "limit": limit, "owner": owner, "until": ts(lease_until)},
        )
    ).fetchall()
    rows.sort(key=lambda row: (row["due"], row["ord"]))
    return [_request(row) for row in rows]


async def next_due(c: Connection) -> datetime | None:
    row = await (
        await c.execute(
            "SELECT MIN(GREATEST(next_attempt_at, lease_until)) AS due"
            " FROM dmks_outbox WHERE status = 'pending'"
        )
    ).fetchone()
    return None if row is None else row["due"]


async def release(c: Connection, owner: str | None) -> int:
    cursor = await c.execute(
        "UPDATE dmks_outbox SET lease_owner = NULL, lease_until = NULL"
        " WHERE lease_owner IS NOT NULL AND (%(owner)s::text IS NULL OR lease_owner = %(owner)s)",
        {"owner": owner},
    )
    return cursor.rowcount


def _request(row: DictRow) -> DmksRequest:
    return DmksRequest(
        id=row["id"],
        terugmelding_id=row["terugmelding_id"],
        kind=RequestKind(row["kind"]),
        registratie=row["registratie"],
        oin_basisregistratie=row["oin_basisregistratie"],
        annotatieboom=bytes(row["annotatieboom"]),
        root_uuid=row["root_uuid"],
        uuids=tuple(row["uuids"]),
        created_at=row["created_at"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
    )


async def complete(
    c: Connection,
    *,
    request: DmksRequest,
    outcome: DmksOutcome,
    notice: TransportNotice,
    matcher: SubscriptionMatcher,
    now: datetime,
) -> bool:
    step = outbox_step(request, outcome)
    at = ts(outcome.at)
    changed = await c.execute(
        "UPDATE dmks_outbox SET status = %s, attempts = attempts + 1, next_attempt_at = %s,"
        " last_error = %s, lease_owner = NULL, lease_until = NULL, updated_at = %s"
        " WHERE id = %s AND status = 'pending' AND lease_owner = %s AND lease_until = %s",
        (
            step.status,
            None if step.retry_at is None else ts(step.retry_at),
            step.error,
            at,
            request.id,
            request.lease_owner,
            ts(step.lease_until),
        ),
    )
    if not changed.rowcount:
        return False
    if step.fault is not None:
        await _history(c, request.terugmelding_id, step.fault)
    new = step.transport
    if new is None:
        return True
    await _transport_change(
        c, request, new, outcome=outcome, notice=notice, matcher=matcher, now=now
    )
    if new is TransportStatus.MISLUKT and request.kind is RequestKind.MELDING:
        # Nothing can be withdrawn that never arrived: what waited behind the melding fails too.
        behind = await (
            await c.execute(
                "UPDATE dmks_outbox SET status = 'failed', last_error = %s, updated_at = %s"
                " WHERE terugmelding_id = %s AND status = 'pending' RETURNING *",
                (FOLLOWS_FAILED_MELDING, at, request.terugmelding_id),
            )
        ).fetchall()
        for row in sorted(behind, key=lambda row: (row["created_at"], row["seq"])):
            await _transport_change(
                c, _request(row), new, outcome=outcome, notice=notice, matcher=matcher, now=now
            )
    return True


async def _transport_change(
    c: Connection,
    request: DmksRequest,
    new: TransportStatus,
    *,
    outcome: DmksOutcome,
    notice: TransportNotice,
    matcher: SubscriptionMatcher,
    now: datetime,
) -> None:
    at = ts(outcome.at)
    if request.kind is RequestKind.MELDING:
        await c.execute(
            "UPDATE terugmeldingen SET transport_status = %s, updated_at = %s,"
            " annotatie_uuid = COALESCE(%s, annotatie_uuid),"
            " verzonden_at = COALESCE(%s, verzonden_at) WHERE id = %s",
            (
                new.value,
                at,
                outcome.annotatie_uuid,
                opt_ts(outcome.tijdstempel),
                request.terugmelding_id,
            ),
        )
    else:
        await c.execute(
            "UPDATE terugmeldingen SET intrekking_status = %s, updated_at = %s WHERE id = %s",
            (new.value, at, request.terugmelding_id),
        )
    sent = new is TransportStatus.VERZONDEN
    await _history(
        c,
        request.terugmelding_id,
        HistoryEntry(
            kind=HistoryKind.TRANSPORT,
            at=outcome.at,
            status=new.value,
            previous=TransportStatus.ONTVANGEN.value,
            request_kind=request.kind,
            registry_time=outcome.tijdstempel if sent else None,
            text=outcome.annotatie_uuid if sent else None,
        ),
    )
    record = await get(c, request.terugmelding_id)
    if record is not None:
        await _store_event(c, notice(record, request.kind, new, outcome.at), matcher, now)


async def _store_event(
    c: Connection, event: NewEvent, matcher: SubscriptionMatcher, now: datetime
) -> None:
    """Store the event like every event, under a synthetic message keyed by its id."""
    await store_notice(
        c, notice_message(event.id, event.type, event.time or now), event, matcher, now
    )


# -- DMKS status -------------------------------------------------------------------------------


async def open_ones(c: Connection, end_states: Collection[str]) -> list[OpenTerugmelding]:
    rows = await (
        await c.execute(
            "SELECT id, registratie, oin_basisregistratie, oin_melder, root_uuid, dmks_status"
            " FROM terugmeldingen WHERE transport_status = 'verzonden' AND (dmks_status IS NULL"
            " OR NOT dmks_status = ANY(%s::text[])) ORDER BY created_at, id",
            (sorted(end_states),),
        )
    ).fetchall()
    return [
        OpenTerugmelding(
            id=row["id"],
            registratie=row["registratie"],
            oin_basisregistratie=row["oin_basisregistratie"],
            oin_melder=row["oin_melder"],
            root_uuid=row["root_uuid"],
            dmks_status=row["dmks_status"],
        )
        for row in rows
    ]


async def record_status(
    c: Connection, change: DmksStatusChange, matcher: SubscriptionMatcher, now: datetime
) -> bool:
    changed = await c.execute(
        "UPDATE terugmeldingen SET dmks_status = %s, dmks_status_at = %s, updated_at = %s"
        " WHERE id = %s AND dmks_status IS NOT DISTINCT FROM %s",
        (change.status, ts(change.at), ts(now), change.terugmelding_id, change.previous),
    )
    if not changed.rowcount:
        return False
    await _history(
        c,
        change.terugmelding_id,
        HistoryEntry(
            kind=HistoryKind.DMKS,
            at=now,
            status=change.status,
            previous=change.previous,
            unexpected=change.unexpected,
            registry_time=change.at,
        ),
    )
    await _store_event(c, change.event, matcher, now)
    return True

"""The terugmeldingen part of the SQLite store: each function is the body of one transaction.

`SqliteStore` runs these on its connection thread; they take the open transaction's connection.
Status-change events go through the store's `_ingest` with a synthetic message keyed by the
event id (as `subscription.disabled` notices do), so an event can never be stored twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from functools import partial

from digibridge.store._outbox import FOLLOWS_FAILED_MELDING, outbox_step
from digibridge.store.types import (
    CreatedTerugmelding,
    DmksOutcome,
    DmksRequest,
    DmksStatusChange,
    HistoryEntry,
    HistoryKind,
    IdempotencyConflict,
    IdempotencyKey,
    InboundMessage,
    IngestResult,
    NewEvent,
    OpenTerugmelding,
    RequestKind,
    StoreConflict,
    SubscriptionMatcher,
    TerugmeldingRecord,
    TransportNotice,
    TransportStatus,
)

#: `SqliteStore._ingest`: store events (and their deliveries) for a message, in the transaction.
Ingest = Callable[
    [InboundMessage, tuple[NewEvent, ...], SubscriptionMatcher, sqlite3.Connection], IngestResult
]


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime given to the store: {value!r}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _opt_ts(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def _must_dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# -- create and read ---------------------------------------------------------------------------


def create(
    record: TerugmeldingRecord,
    request: DmksRequest,
    idempotency: IdempotencyKey | None,
    c: sqlite3.Connection,
) -> CreatedTerugmelding:
    if idempotency is not None:
        row = c.execute(
            "SELECT body_digest, terugmelding_id FROM terugmelding_keys"
            " WHERE owner = ? AND key = ?",
            (idempotency.owner, idempotency.key),
        ).fetchone()
        if row is not None:
            if row["body_digest"] != idempotency.body_digest:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency.key!r} was used with another body"
                )
            first = get(row["terugmelding_id"], c)
            if first is None:  # pragma: no cover - the key's row cascades with its terugmelding
                raise StoreConflict(f"Idempotency-Key {idempotency.key!r} lost its terugmelding")
            return CreatedTerugmelding(record=first, replayed=True)
    r = record
    c.execute(
        "INSERT INTO terugmeldingen (id, owner, registratie, oin_basisregistratie, oin_melder,"
        " document, root_uuid, transport_status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            r.id,
            r.owner,
            r.registratie,
            r.oin_basisregistratie,
            r.oin_melder,
            json.dumps(dict(r.document), ensure_ascii=False),
            r.root_uuid,
            r.transport_status.value,
            _ts(r.created_at),
            _ts(r.updated_at),
        ),
    )
    if idempotency is not None:
        c.execute(
            "INSERT INTO terugmelding_keys (owner, key, body_digest, terugmelding_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (idempotency.owner, idempotency.key, idempotency.body_digest, r.id, _ts(r.created_at)),
        )
    _insert_request(request, c)
    _history(
        c,
        r.id,
        HistoryEntry(
            kind=HistoryKind.TRANSPORT,
            at=r.created_at,
            status=TransportStatus.ONTVANGEN.value,
            request_kind=RequestKind.MELDING,
        ),
    )
    return CreatedTerugmelding(record=record, replayed=False)


def _insert_request(request: DmksRequest, c: sqlite3.Connection) -> None:
    q = request
    created = _ts(q.created_at)
    c.execute(
        "INSERT INTO dmks_outbox (id, terugmelding_id, kind, registratie, oin_basisregistratie,"
        " annotatieboom, root_uuid, uuids, status, attempts, next_attempt_at, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        (
            q.id,
            q.terugmelding_id,
            q.kind.value,
            q.registratie,
            q.oin_basisregistratie,
            q.annotatieboom,
            q.root_uuid,
            json.dumps(list(q.uuids)),
            _ts(q.next_attempt_at or q.created_at),
            created,
            created,
        ),
    )


def _history(c: sqlite3.Connection, terugmelding_id: str, entry: HistoryEntry) -> None:
    c.execute(
        "INSERT INTO terugmelding_history (terugmelding_id, seq, kind, at, status, previous,"
        " request_kind, code, text, retried, unexpected, registry_time)"
        " VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM terugmelding_history"
        "  WHERE terugmelding_id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            terugmelding_id,
            terugmelding_id,
            entry.kind.value,
            _ts(entry.at),
            entry.status,
            entry.previous,
            None if entry.request_kind is None else entry.request_kind.value,
            entry.code,
            entry.text,
            None if entry.retried is None else int(entry.retried),
            int(entry.unexpected),
            _opt_ts(entry.registry_time),
        ),
    )


def get(terugmelding_id: str, c: sqlite3.Connection) -> TerugmeldingRecord | None:
    row = c.execute("SELECT * FROM terugmeldingen WHERE id = ?", (terugmelding_id,)).fetchone()
    return None if row is None else _record(row)


def listing(
    c: sqlite3.Connection,
    *,
    owner: str | None,
    transport_status: TransportStatus | None,
    dmks_status: str | None,
    after: tuple[datetime, str] | None,
    limit: int | None,
) -> list[TerugmeldingRecord]:
    rows = c.execute(
        "SELECT * FROM terugmeldingen WHERE (:owner IS NULL OR owner = :owner)"
        " AND (:transport IS NULL OR transport_status = :transport)"
        " AND (:dmks IS NULL OR dmks_status = :dmks)"
        " AND (:after_at IS NULL OR created_at > :after_at"
        "  OR (created_at = :after_at AND id > :after_id))"
        " ORDER BY created_at, id LIMIT :limit",
        {
            "owner": owner,
            "transport": None if transport_status is None else transport_status.value,
            "dmks": dmks_status,
            "after_at": None if after is None else _ts(after[0]),
            "after_id": None if after is None else after[1],
            "limit": -1 if limit is None else limit,
        },
    ).fetchall()
    return [_record(row) for row in rows]


def history(terugmelding_id: str, c: sqlite3.Connection) -> list[HistoryEntry]:
    rows = c.execute(
        "SELECT * FROM terugmelding_history WHERE terugmelding_id = ? ORDER BY seq",
        (terugmelding_id,),
    ).fetchall()
    return [
        HistoryEntry(
            kind=HistoryKind(row["kind"]),
            at=_must_dt(row["at"]),
            status=row["status"],
            previous=row["previous"],
            request_kind=None if row["request_kind"] is None else RequestKind(row["request_kind"]),
            code=row["code"],
            text=row["text"],
            retried=None if row["retried"] is None else bool(row["retried"]),
            unexpected=bool(row["unexpected"]),
            registry_time=_dt(row["registry_time"]),
        )
        for row in rows
    ]


def _record(row: sqlite3.Row) -> TerugmeldingRecord:
    intrekking = row["intrekking_status"]
    return TerugmeldingRecord(
        id=row["id"],
        owner=row["owner"],
        registratie=row["registratie"],
        oin_basisregistratie=row["oin_basisregistratie"],
        oin_melder=row["oin_melder"],
        document=json.loads(row["document"]),
        root_uuid=row["root_uuid"],
        transport_status=TransportStatus(row["transport_status"]),
        created_at=_must_dt(row["created_at"]),
        updated_at=_must_dt(row["updated_at"]),
        dmks_status=row["dmks_status"],
        dmks_status_at=_dt(row["dmks_status_at"]),
        annotatie_uuid=row["annotatie_uuid"],
        verzonden_at=_dt(row["verzonden_at"]),
        intrekking_status=None if intrekking is None else TransportStatus(intrekking),
    )


# -- intrekken ---------------------------------------------------------------------------------


def queue_intrekking(
    request: DmksRequest, end_states: Collection[str], c: sqlite3.Connection
) -> TerugmeldingRecord | None:
    record = get(request.terugmelding_id, c)
    if record is None:
        return None
    if record.transport_status is TransportStatus.MISLUKT:
        raise StoreConflict("the terugmelding was never delivered to DigiMelding (mislukt)")
    if record.intrekking_status is not None:
        raise StoreConflict(f"a withdrawal was already asked ({record.intrekking_status.value})")
    if record.dmks_status in end_states:
        raise StoreConflict(f"the terugmelding is closed: DMKS status {record.dmks_status!r}")
    _insert_request(request, c)
    now = _ts(request.created_at)
    c.execute(
        "UPDATE terugmeldingen SET intrekking_status = 'ontvangen', updated_at = ? WHERE id = ?",
        (now, record.id),
    )
    _history(
        c,
        record.id,
        HistoryEntry(
            kind=HistoryKind.TRANSPORT,
            at=request.created_at,
            status=TransportStatus.ONTVANGEN.value,
            request_kind=RequestKind.INTREKKING,
        ),
    )
    return get(record.id, c)


# -- the outbox --------------------------------------------------------------------------------

#: Due, unleased, and first in line for its terugmelding.
_CLAIMABLE = (
    "o.status = 'pending' AND o.next_attempt_at <= :now"
    " AND (o.lease_until IS NULL OR o.lease_until <= :now)"
    " AND NOT EXISTS (SELECT 1 FROM dmks_outbox p WHERE p.terugmelding_id = o.terugmelding_id"
    "  AND p.status = 'pending' AND (p.created_at < o.created_at"
    "  OR (p.created_at = o.created_at AND p.rowid < o.rowid)))"
)


def claim(
    now: datetime, limit: int, lease_until: datetime, owner: str, c: sqlite3.Connection
) -> list[DmksRequest]:
    rows = c.execute(
        f"SELECT o.id FROM dmks_outbox o WHERE {_CLAIMABLE}"  # noqa: S608 - constant SQL
        " ORDER BY o.next_attempt_at, o.rowid LIMIT :limit",
        {"now": _ts(now), "limit": limit},
    ).fetchall()
    claimed: list[DmksRequest] = []
    for row in rows:
        c.execute(
            "UPDATE dmks_outbox SET lease_owner = ?, lease_until = ? WHERE id = ?",
            (owner, _ts(lease_until), row["id"]),
        )
        found = c.execute("SELECT * FROM dmks_outbox WHERE id = ?", (row["id"],)).fetchone()
        claimed.append(_request(found))
    return claimed


def next_due(c: sqlite3.Connection) -> datetime | None:
    row = c.execute(
        "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, next_attempt_at)))"
        " FROM dmks_outbox WHERE status = 'pending'"
    ).fetchone()
    return _dt(row[0])


def release(owner: str | None, c: sqlite3.Connection) -> int:
    cursor = c.execute(
        "UPDATE dmks_outbox SET lease_owner = NULL, lease_until = NULL"
        " WHERE lease_owner IS NOT NULL AND (:owner IS NULL OR lease_owner = :owner)",
        {"owner": owner},
    )
    return cursor.rowcount


def _request(row: sqlite3.Row) -> DmksRequest:
    return DmksRequest(
        id=row["id"],
        terugmelding_id=row["terugmelding_id"],
        kind=RequestKind(row["kind"]),
        registratie=row["registratie"],
        oin_basisregistratie=row["oin_basisregistratie"],
        annotatieboom=bytes(row["annotatieboom"]),
        root_uuid=row["root_uuid"],
        uuids=tuple(json.loads(row["uuids"])),
        created_at=_must_dt(row["created_at"]),
        attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]),
        last_error=row["last_error"],
        lease_owner=row["lease_owner"],
        lease_until=_dt(row["lease_until"]),
    )


def complete(
    c: sqlite3.Connection,
    *,
    request: DmksRequest,
    outcome: DmksOutcome,
    notice: TransportNotice,
    matcher: SubscriptionMatcher,
    ingest: Ingest,
) -> bool:
    step = outbox_step(request, outcome)
    at = _ts(outcome.at)
    changed = c.execute(
        "UPDATE dmks_outbox SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
        " last_error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?"
        " WHERE id = ? AND status = 'pending' AND lease_owner = ? AND lease_until = ?",
        (
            step.status,
            None if step.retry_at is None else _ts(step.retry_at),
            step.error,
            at,
            request.id,
            request.lease_owner,
            _ts(step.lease_until),
        ),
    ).rowcount
    if not changed:
        return False
    if step.fault is not None:
        _history(c, request.terugmelding_id, step.fault)
    new = step.transport
    if new is None:
        return True
    announce = partial(_announce, c, notice=notice, matcher=matcher, ingest=ingest)
    _transport_change(c, request, new, outcome, announce)
    if new is TransportStatus.MISLUKT and request.kind is RequestKind.MELDING:
        # Nothing can be withdrawn that never arrived: what waited behind the melding fails too.
        for row in c.execute(
            "SELECT * FROM dmks_outbox WHERE terugmelding_id = ? AND status = 'pending'",
            (request.terugmelding_id,),
        ).fetchall():
            c.execute(
                "UPDATE dmks_outbox SET status = 'failed', last_error = ?, updated_at = ?"
                " WHERE id = ?",
                (FOLLOWS_FAILED_MELDING, at, row["id"]),
            )
            _transport_change(c, _request(row), new, outcome, announce)
    return True


def _transport_change(
    c: sqlite3.Connection,
    request: DmksRequest,
    new: TransportStatus,
    outcome: DmksOutcome,
    announce: Callable[[TerugmeldingRecord, RequestKind, TransportStatus, datetime], None],
) -> None:
    at = _ts(outcome.at)
    if request.kind is RequestKind.MELDING:
        c.execute(
            "UPDATE terugmeldingen SET transport_status = ?, updated_at = ?,"
            " annotatie_uuid = COALESCE(?, annotatie_uuid),"
            " verzonden_at = COALESCE(?, verzonden_at) WHERE id = ?",
            (
                new.value,
                at,
                outcome.annotatie_uuid,
                _opt_ts(outcome.tijdstempel),
                request.terugmelding_id,
            ),
        )
    else:
        c.execute(
            "UPDATE terugmeldingen SET intrekking_status = ?, updated_at = ? WHERE id = ?",
            (new.value, at, request.terugmelding_id),
        )
    _history(
        c,
        request.terugmelding_id,
        HistoryEntry(
            kind=HistoryKind.TRANSPORT,
            at=outcome.at,
            status=new.value,
            previous=TransportStatus.ONTVANGEN.value,
            request_kind=request.kind,
            registry_time=outcome.tijdstempel if new is TransportStatus.VERZONDEN else None,
            text=outcome.annotatie_uuid if new is TransportStatus.VERZONDEN else None,
        ),
    )
    record = get(request.terugmelding_id, c)
    if record is not None:
        announce(record, request.kind, new, outcome.at)


def _announce(
    c: sqlite3.Connection,
    record: TerugmeldingRecord,
    kind: RequestKind,
    status: TransportStatus,
    at: datetime,
    *,
    notice: TransportNotice,
    matcher: SubscriptionMatcher,
    ingest: Ingest,
) -> None:
    _store_event(c, notice(record, kind, status, at), matcher, ingest)


def _store_event(
    c: sqlite3.Connection, event: NewEvent, matcher: SubscriptionMatcher, ingest: Ingest
) -> None:
    """Store the event like every event: a synthetic message keyed by its id, so storing the
    same change again is recognised as a duplicate and yields no second event."""
    message_id = f"urn:digibridge:notice:{event.id}"
    message = InboundMessage(
        message_id=message_id,
        kenmerk=message_id,
        basisregistratie="digibridge",
        gebeurtenissoort=event.type,
        received_at=event.time or datetime.now(UTC),
    )
    ingest(message, (event,), matcher, c)


# -- DMKS status -------------------------------------------------------------------------------


def open_ones(end_states: Collection[str], c: sqlite3.Connection) -> list[OpenTerugmelding]:
    rows = c.execute(
        "SELECT id, registratie, oin_basisregistratie, oin_melder, root_uuid, dmks_status"
        " FROM terugmeldingen WHERE transport_status = 'verzonden' AND (dmks_status IS NULL"
        " OR dmks_status NOT IN (SELECT value FROM json_each(?))) ORDER BY created_at, id",
        (json.dumps(sorted(end_states)),),
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


def record_status(
    change: DmksStatusChange,
    matcher: SubscriptionMatcher,
    ingest: Ingest,
    now: datetime,
    c: sqlite3.Connection,
) -> bool:
    changed = c.execute(
        "UPDATE terugmeldingen SET dmks_status = ?, dmks_status_at = ?, updated_at = ?"
        " WHERE id = ? AND dmks_status IS ?",
        (change.status, _ts(change.at), _ts(now), change.terugmelding_id, change.previous),
    ).rowcount
    if not changed:
        return False
    _history(
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
    _store_event(c, change.event, matcher, ingest)
    return True

"""The ingest transaction on PostgreSQL: dedupe by unique constraints, number, fan out.

Dedupe never reads before it writes: the message row is inserted with `ON CONFLICT DO NOTHING`
(both `message_id` and `kenmerk` are unique), so of two instances storing the same message at once
one inserts and the other waits for its commit, inserts nothing, and reads the original.

Feed positions come from the one-row `feed_position` counter, taken last (after the matcher ran)
and held until commit: positions are given in commit order, so a reader resuming after position
p never misses an event that commits later. The price is that ingests serialise on that row from
the moment they take it until they commit (docs/performance.md measures it).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

from digibridge.store._sequence import format_sequence, with_sequence
from digibridge.store.postgres import _rows
from digibridge.store.postgres._connection import Connection, ts
from digibridge.store.postgres._listener import notify_wake
from digibridge.store.types import (
    InboundMessage,
    IngestResult,
    NewEvent,
    StoreError,
    SubscriptionMatcher,
)


async def ingest(
    c: Connection,
    message: InboundMessage,
    events: Sequence[NewEvent],
    matcher: SubscriptionMatcher,
    now: datetime,
) -> IngestResult:
    """Store a message, its events and their deliveries in the open transaction of `c`."""
    inserted = await c.execute(
        "INSERT INTO messages (message_id, kenmerk, basisregistratie, gebeurtenissoort,"
        " sender_oin, received_at, raw) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING message_id",
        (
            message.message_id,
            message.kenmerk,
            message.basisregistratie,
            message.gebeurtenissoort,
            message.sender_oin,
            ts(message.received_at),
            message.raw,
        ),
    )
    if await inserted.fetchone() is None:
        return await _duplicate(c, message)
    subscriptions = [
        _rows.subscription(row)
        for row in await (
            await c.execute(f"{_rows.SUBSCRIPTION} WHERE status = 'active'")
        ).fetchall()
    ]
    numbered: list[tuple[NewEvent, str]] = []
    deliveries: list[tuple[str, str, str, datetime, datetime, datetime]] = []
    at = ts(now)
    numbers = await _sequence_numbers(c, events)
    for unnumbered, number in zip(events, numbers, strict=True):
        event, sequence = _sequenced(unnumbered, number)
        numbered.append((event, sequence))
        deliveries += [
            (str(uuid.uuid4()), subscription.id, event.id, at, at, at)
            for subscription in subscriptions
            if matcher(subscription, event)
        ]
    if numbered:
        # Delivered at commit; sent before the position is taken, to hold that lock less long.
        await notify_wake(c)
        row = await (
            await c.execute(
                "UPDATE feed_position SET value = value + %s RETURNING value", (len(numbered),)
            )
        ).fetchone()
        if row is None:
            raise StoreError("the feed_position row is missing")
        first = int(row["value"]) - len(numbered) + 1
        async with c.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO events (position, id, message_id, type, source, subject, time,"
                " attributes, body, created_at, informatiearm_body, sequence)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        first + index,
                        event.id,
                        message.message_id,
                        event.type,
                        event.source,
                        event.subject,
                        None if event.time is None else ts(event.time),
                        Jsonb(dict(event.attributes), dumps=_dumps),
                        event.body,
                        at,
                        event.informatiearm_body,
                        sequence,
                    )
                    for index, (event, sequence) in enumerate(numbered)
                ],
            )
            if deliveries:
                await cursor.executemany(
                    "INSERT INTO deliveries (id, subscription_id, event_id, status, attempts,"
                    " next_attempt_at, created_at, updated_at)"
                    " VALUES (%s, %s, %s, 'pending', 0, %s, %s, %s)",
                    deliveries,
                )
    return IngestResult(
        duplicate=False,
        event_ids=tuple(event.id for event in events),
        original_message_id=message.message_id,
        deliveries_created=len(deliveries),
    )


async def _duplicate(c: Connection, message: InboundMessage) -> IngestResult:
    first = await (
        await c.execute(
            "SELECT message_id FROM messages WHERE message_id = %s OR kenmerk = %s"
            " ORDER BY message_id = %s DESC LIMIT 1",
            (message.message_id, message.kenmerk, message.message_id),
        )
    ).fetchone()
    if first is None:
        # The conflicting row was purged between our insert and this read: let the sender retry.
        raise StoreError(f"message {message.message_id} conflicted with one that is gone")
    ids = await (
        await c.execute(
            "SELECT id FROM events WHERE message_id = %s ORDER BY position", (first["message_id"],)
        )
    ).fetchall()
    return IngestResult(
        duplicate=True,
        event_ids=tuple(row["id"] for row in ids),
        original_message_id=first["message_id"],
        deliveries_created=0,
    )


async def _sequence_numbers(c: Connection, events: Sequence[NewEvent]) -> list[int]:
    """The next `sequence` number of each event's source, in event order. Each source's counter
    row is taken once, in source order (two ingests never wait for each other in a cycle), and
    stays locked until the transaction ends: gap-free, and a rolled-back ingest gives none away."""
    counts = Counter(event.source for event in events)
    following: dict[str, int] = {}
    for source in sorted(counts):
        row = await (
            await c.execute(
                "INSERT INTO source_sequences (source, last) VALUES (%s, %s) ON CONFLICT (source)"
                " DO UPDATE SET last = source_sequences.last + excluded.last RETURNING last",
                (source, counts[source]),
            )
        ).fetchone()
        if row is None:
            raise StoreError(f"no sequence for source {source}")
        following[source] = int(row["last"]) - counts[source] + 1
    numbers: list[int] = []
    for event in events:
        numbers.append(following[event.source])
        following[event.source] += 1
    return numbers


def _sequenced(event: NewEvent, number: int) -> tuple[NewEvent, str]:
    """The event with its `sequence` in its bodies and routing attributes."""
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


def _dumps(value: object) -> str:
    return json.dumps(value, default=str)

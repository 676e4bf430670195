"""The feed part of the `Store` contract: `sequence` per source, `list_events`, `feed_head`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digibridge.store._migrations import load_migrations
from digibridge.store._sequence import SEQUENCE_WIDTH, with_sequence
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    DeliverySettings,
    InboundMessage,
    NewEvent,
    Store,
    Subscription,
)

pytestmark = pytest.mark.anyio

BRP = "urn:nld:oin:00000001823288444000:systeem:BRP"
NHR = "urn:nld:oin:00000001003214345000:systeem:NHR"
SUBSCRIPTION = Subscription(
    id="s",
    sink="http://127.0.0.1:9/s",
    delivery=DeliverySettings(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    created_at=datetime(2026, 3, 1, tzinfo=UTC),
)


def message(n: int) -> InboundMessage:
    return InboundMessage(
        message_id=f"uuid:m-{n}",
        kenmerk=f"K-{n}",
        basisregistratie="BRP",
        gebeurtenissoort="Gv01",
        received_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )


def event(
    event_id: str, source: str = BRP, event_type: str = "nl.brp.persoon-verhuisd"
) -> NewEvent:
    document = {"specversion": "1.0", "id": event_id, "source": source, "type": event_type}
    return NewEvent(
        id=event_id,
        type=event_type,
        source=source,
        subject=None,
        time=None,
        attributes=dict(document),
        body=json.dumps({**document, "data": {"plaats": "Zwolle"}}).encode(),
        informatiearm_body=json.dumps({**document, "dataref": f"/v1/events/{event_id}"}).encode(),
    )


def nobody(_sub: Subscription, _event: NewEvent) -> bool:
    return False


def seq(n: int) -> str:
    return str(n).zfill(SEQUENCE_WIDTH)


async def test_each_source_is_numbered_from_one_without_gaps(store: Store) -> None:
    await store.ingest(message(1), [event("a1"), event("n1", NHR), event("a2")], nobody)
    await store.ingest(message(2), [event("n2", NHR), event("a3")], nobody)

    events = await store.list_events(limit=10)

    assert [(e.id, e.sequence) for e in events] == [
        ("a1", seq(1)),
        ("n1", seq(1)),
        ("a2", seq(2)),
        ("n2", seq(2)),
        ("a3", seq(3)),
    ]
    for stored in events:
        # The same value in both bodies, the rest of each body as given.
        assert stored.sequence is not None
        assert len(stored.sequence) == SEQUENCE_WIDTH
        original = event(stored.id, stored.source)
        assert json.loads(stored.body) == {
            **json.loads(original.body),
            "sequence": stored.sequence,
        }
        assert stored.informatiearm_body is not None
        assert original.informatiearm_body is not None
        assert json.loads(stored.informatiearm_body) == {
            **json.loads(original.informatiearm_body),
            "sequence": stored.sequence,
        }


async def test_the_matcher_sees_the_sequence(store: Store) -> None:
    seen: list[object] = []

    def record(_sub: Subscription, new: NewEvent) -> bool:
        seen.append(new.attributes.get("sequence"))
        return False

    await store.create_subscription(SUBSCRIPTION)
    await store.ingest(message(1), [event("a1"), event("a2")], record)

    assert seen == [seq(1), seq(2)]


async def test_a_duplicate_or_a_failed_ingest_uses_up_no_numbers(store: Store) -> None:
    await store.ingest(message(1), [event("a1")], nobody)
    duplicate = await store.ingest(message(1), [event("a9")], nobody)

    def broken(_sub: Subscription, _event: NewEvent) -> bool:
        raise RuntimeError("matcher broke")

    await store.create_subscription(SUBSCRIPTION)
    with pytest.raises(RuntimeError, match="matcher broke"):
        await store.ingest(message(2), [event("a2")], broken)
    await store.delete_subscription("s")
    await store.ingest(message(3), [event("a3")], nobody)

    assert duplicate.duplicate
    events = await store.list_events(limit=10)
    assert [(e.id, e.sequence) for e in events] == [("a1", seq(1)), ("a3", seq(2))]


async def test_list_events_pages_by_position_and_filters(store: Store) -> None:
    await store.ingest(
        message(1),
        [
            event("a1"),
            event("n1", NHR, "nl.nhr.inschrijving"),
            event("a2", event_type="nl.brp.persoon-overleden"),
            event("a3"),
        ],
        nobody,
    )
    everything = await store.list_events(limit=100)
    positions = [e.position for e in everything]
    assert positions == sorted(positions)
    assert len(set(positions)) == 4

    first = await store.list_events(limit=2)
    rest = await store.list_events(after=first[-1].position, limit=100)
    assert [e.id for e in first + rest] == ["a1", "n1", "a2", "a3"]
    assert await store.list_events(after=everything[-1].position, limit=100) == []

    by_type = await store.list_events(types=["nl.brp.persoon-verhuisd"], limit=100)
    assert [e.id for e in by_type] == ["a1", "a3"]
    two_types = await store.list_events(
        types=["nl.nhr.inschrijving", "nl.brp.persoon-overleden"], limit=100
    )
    assert [e.id for e in two_types] == ["n1", "a2"]
    by_source = await store.list_events(source=NHR, limit=100)
    assert [e.id for e in by_source] == ["n1"]
    both = await store.list_events(types=["nl.brp.persoon-verhuisd"], source=NHR, limit=100)
    assert both == []
    after_filtered = await store.list_events(
        after=everything[0].position, types=["nl.brp.persoon-verhuisd"], limit=1
    )
    assert [e.id for e in after_filtered] == ["a3"]


async def test_feed_head_is_the_highest_position_ever_given(store: Store) -> None:
    assert await store.feed_head() == 0
    await store.ingest(message(1), [event("a1"), event("a2")], nobody)
    events = await store.list_events(limit=10)

    assert await store.feed_head() == events[-1].position
    stored = await store.get_event("a2")
    assert stored is not None
    assert stored.position == events[-1].position
    assert stored.sequence == seq(2)


async def test_numbering_survives_a_reopen(make_store: Callable[[], Store]) -> None:
    first = make_store()
    await first.open()
    await first.ingest(message(1), [event("a1")], nobody)
    await first.close()
    again = make_store()
    await again.open()
    try:
        await again.ingest(message(2), [event("a2")], nobody)
        assert [e.sequence for e in await again.list_events(limit=10)] == [seq(1), seq(2)]
    finally:
        await again.close()


def test_a_body_that_already_names_sequence_gets_the_stores_value_once() -> None:
    mapped = b'{"id":"x","sequence":"7","data":{"sequence":1}}'
    assert json.loads(with_sequence(mapped, seq(3))) == {
        "id": "x",
        "sequence": seq(3),
        "data": {"sequence": 1},
    }
    assert (
        with_sequence(b'{"id":"x"}', seq(1)) == b'{"id":"x","sequence":"' + seq(1).encode() + b'"}'
    )
    assert with_sequence(b" { } ", seq(1)) == b'{"sequence":"' + seq(1).encode() + b'"}'
    # A key spelt with an escape is still the same key.
    escaped = with_sequence(b'{"id":"x","sequ\\u0065nce":"7"}', seq(4))
    assert json.loads(escaped) == {"id": "x", "sequence": seq(4)}
    with pytest.raises(ValueError, match="not a JSON object"):
        with_sequence(b'["sequence"]', seq(1))


async def test_events_stored_before_the_migration_are_numbered(tmp_path: Path) -> None:
    """Upgrading a store made by an older version: old events get sequences in store order,
    in bodies and attributes too, and new events continue the count."""
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    for migration in load_migrations("sqlite"):
        if migration.version < 6:  # the schema before the sequence migration
            connection.executescript(migration.sql)
    connection.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)"
    )
    for migration in load_migrations("sqlite"):
        if migration.version < 6:  # the schema before the sequence migration
            connection.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (migration.version, migration.name, "2026-01-01T00:00:00+00:00"),
            )
    connection.execute(
        "INSERT INTO messages VALUES ('m1', 'k1', 'BRP', 'Gv01', NULL, '2026-01-01', x'00')"
    )
    for event_id, source in (("a1", BRP), ("n1", NHR), ("a2", BRP)):
        old = event(event_id, source)
        connection.execute(
            "INSERT INTO events (id, message_id, type, source, attributes, body, created_at,"
            " informatiearm_body) VALUES (?, 'm1', ?, ?, ?, ?, '2026-01-01', ?)",
            (
                old.id,
                old.type,
                old.source,
                json.dumps(dict(old.attributes)),
                old.body,
                old.informatiearm_body,
            ),
        )
    connection.close()

    store = SqliteStore(path)
    await store.open()
    try:
        await store.ingest(message(5), [event("a3"), event("n2", NHR)], nobody)
        events = await store.list_events(limit=10)
    finally:
        await store.close()

    assert [(e.id, e.sequence) for e in events] == [
        ("a1", seq(1)),
        ("n1", seq(1)),
        ("a2", seq(2)),
        ("a3", seq(3)),
        ("n2", seq(2)),
    ]
    for stored in events:
        assert json.loads(stored.body)["sequence"] == stored.sequence
        assert stored.informatiearm_body is not None
        assert json.loads(stored.informatiearm_body)["sequence"] == stored.sequence

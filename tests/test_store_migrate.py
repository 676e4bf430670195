"""`digibridge store migrate|verify`: a SQLite installation moved onto PostgreSQL keeps every
row, and the gateway carries on from it as if nothing had happened.

The source is filled the way a user fills it (a real gateway on SQLite: subscriptions over the
API, SOAP messages, deliveries that succeed, wait and die) plus a terugmelding through the store
API; the command runs as a process; the copy is then read through the `Store` API of both
backends and used by a gateway on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from digibridge.cli import main
from digibridge.delivery.signing import generate_secret
from digibridge.store.postgres import PostgresStore
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    DeliveryStatus,
    DmksRequest,
    IdempotencyKey,
    RequestKind,
    Store,
    TerugmeldingRecord,
    TransportStatus,
)
from tests.support.events import ack_duplicate, ack_event_ids
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.postgres import fresh_schema, require_postgres
from tests.support.sinks import Reply, ScriptedSink
from tests.support.soap import envelope, headers_for, sample, with_kenmerk

pytestmark = pytest.mark.e2e

ALICE = "alice:alice-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef0123"
API_KEYS = {"DIGIBRIDGE_API_KEYS": f"{ALICE},{ADMIN}"}
TEMPLATE = sample("brp-verhuizing.xml")
MESSAGES = 3
TABLES = {
    "messages",
    "events",
    "source_sequences",
    "subscriptions",
    "deliveries",
    "attempts",
    "circuits",
    "terugmeldingen",
    "terugmelding_history",
    "terugmelding_keys",
    "dmks_outbox",
    "feed_position",
}


@dataclass(frozen=True)
class Source:
    """A filled SQLite store and what the tests need to know about it."""

    path: Path
    url: str
    #: A delivery waiting for its second attempt (in an hour) when the copy was made.
    waiting: str
    #: The kenmerk of the first message sent.
    kenmerk: str
    #: The events feed as a consumer last read it from the SQLite gateway, and its cursor.
    events: list[dict[str, Any]]
    cursor: str
    #: Where the subscriptions' sinks listened (the receiver comes back there).
    sink_port: int


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digibridge", "store", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report(output: str) -> dict[str, tuple[int, int, str]]:
    """The report's lines: table -> (source rows, target rows, verdict)."""
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] in TABLES:
            rows[parts[0]] = (int(parts[1]), int(parts[2]), parts[5])
    return rows


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key.rpartition(':')[2]}"}


def post_message(gateway: GatewayProcess, document: bytes) -> httpx.Response:
    return httpx.post(
        gateway.wus_url,
        content=envelope(document, to=gateway.wus_url),
        headers=headers_for(document),
        timeout=30,
    )


def subscribe(gateway: GatewayProcess, path: str, sink: ScriptedSink, **fields: Any) -> str:
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": sink.url(path), "delivery": {"secret": generate_secret()}, **fields},
        headers=auth(ALICE),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def deliveries(gateway: GatewayProcess, subscription: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{gateway.url}/v1/deliveries",
        params={"subscription": subscription},
        headers=auth(ADMIN),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["deliveries"]
    return items


def read_feed(gateway: GatewayProcess, after: str | None = None) -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.url}/v1/events",
        params={} if after is None else {"after": after},
        headers=auth(ADMIN),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def add_terugmelding(path: Path) -> None:
    """A terugmelding with an Idempotency-Key, its history and its outbox request, leased to a
    sender (the lease must not survive the copy)."""
    now = datetime.now(UTC)
    store = SqliteStore(path)
    await store.open()
    try:
        record = TerugmeldingRecord(
            id="tm-1",
            owner="alice",
            registratie="BRP",
            oin_basisregistratie="00000001823288444000",
            oin_melder="00000001001234567000",
            document={"registratie": "BRP", "referentiekenmerk": "REF-1", "toelichting": "é"},
            root_uuid="root-tm-1",
            transport_status=TransportStatus.ONTVANGEN,
            created_at=now,
            updated_at=now,
        )
        request = DmksRequest(
            id="req-tm-1",
            terugmelding_id="tm-1",
            kind=RequestKind.MELDING,
            registratie="BRP",
            oin_basisregistratie="00000001823288444000",
            annotatieboom=b"<AnnotatieBoom>\x00\xff</AnnotatieBoom>",
            root_uuid="root-tm-1",
            uuids=("root-tm-1", "child-1"),
            created_at=now,
        )
        await store.create_terugmelding(record, request, IdempotencyKey("alice", "k-1", "d1"))
        claimed = await store.claim_dmks_requests(
            now=now, limit=1, lease_until=now + timedelta(hours=1), owner="dead-sender"
        )
        assert [r.id for r in claimed] == ["req-tm-1"]
    finally:
        await store.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    require_postgres()
    folder = tmp_path_factory.mktemp("sqlite-store")
    sink = ScriptedSink()
    sink.start()
    sink.script("/waiting", *[Reply(503)] * MESSAGES)
    sink.script("/dead", *[Reply(400)] * MESSAGES)
    # A second attempt an hour after the first: the 503 leaves its delivery waiting.
    gateway = GatewayProcess(folder, env={**API_KEYS, "DIGIBRIDGE_RETRY_SCHEDULE": "0,3600"})
    gateway.start()
    try:
        subscribe(
            gateway,
            "/live",
            sink,
            types=["nl.brp.persoon-verhuisd"],
            filters=[{"prefix": {"type": "nl.brp."}}],
            delivery={"secret": generate_secret(), "ordered": True},
        )
        waiting = subscribe(gateway, "/waiting", sink)
        dead = subscribe(gateway, "/dead", sink)
        kenmerk = "first-kenmerk@digilevering.nl"
        for number in range(MESSAGES):
            document = with_kenmerk(TEMPLATE, kenmerk if number == 0 else None)
            assert post_message(gateway, document).status_code == 200
        wait_until(
            lambda: (
                len(sink.posts("/live")) == MESSAGES
                and all(d["status"] == "dead" for d in deliveries(gateway, dead))
                and all(d["attemptCount"] == 1 for d in deliveries(gateway, waiting))
            ),
            timeout=20,
            what="deliveries settled: succeeded, dead, waiting",
        )
        waiting_id = str(deliveries(gateway, waiting)[0]["id"])
        feed = read_feed(gateway)
    finally:
        gateway.stop()
        sink.stop()
    path = folder / "digibridge.db"
    asyncio.run(add_terugmelding(path))
    return Source(
        path,
        f"sqlite:///{path}",
        waiting_id,
        kenmerk,
        feed["events"],
        feed["nextCursor"],
        sink.port,
    )


@pytest.fixture
def target() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def migrated(source: Source, target: str) -> str:
    finished = cli("migrate", "--from", source.url, "--to", target)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = report(finished.stdout)
    assert set(rows) == TABLES, finished.stdout
    # Every kind of row was there to copy, and every table matches.
    assert all(
        count > 0 and count == copied and verdict == "ok"
        for count, copied, verdict in rows.values()
    ), rows
    assert "copying deliveries:" in finished.stderr
    return target


async def everything(store: Store) -> dict[str, Any]:
    """What a store holds, read through the Store API only."""
    await store.open()
    try:
        subscriptions = await store.list_subscriptions()
        delivered = await store.list_deliveries()
        return {
            "subscriptions": subscriptions,
            "deliveries": delivered,
            "attempts": [await store.list_attempts(d.id) for d in delivered],
            "events": await store.list_events(limit=1000),
            "feed_head": await store.feed_head(),
            "circuits": [await store.get_circuit(s.endpoint) for s in subscriptions],
            "terugmeldingen": await store.list_terugmeldingen(),
            "history": await store.terugmelding_history("tm-1"),
        }
    finally:
        await store.close()


def test_the_copy_holds_everything_the_source_held(source: Source, migrated: str) -> None:
    before = asyncio.run(everything(SqliteStore(source.path)))
    after = asyncio.run(everything(PostgresStore(migrated)))
    assert after == before
    assert {s.owner for s in after["subscriptions"]} == {"alice"}
    assert {d.status for d in after["deliveries"]} == {
        DeliveryStatus.SUCCEEDED,
        DeliveryStatus.PENDING,
        DeliveryStatus.DEAD,
    }
    assert [e.position for e in after["events"]] == list(range(1, MESSAGES + 1))
    assert all(circuit is not None for circuit in after["circuits"])


def test_leases_are_not_copied(source: Source, migrated: str) -> None:
    """The outbox request leased in SQLite (for an hour) is free at once in PostgreSQL."""

    async def claim(store: Store) -> list[str]:
        await store.open()
        try:
            now = datetime.now(UTC)
            claimed = await store.claim_dmks_requests(
                now=now, limit=5, lease_until=now + timedelta(seconds=30), owner="new-sender"
            )
            return [request.id for request in claimed]
        finally:
            await store.close()

    assert asyncio.run(claim(PostgresStore(migrated))) == ["req-tm-1"]


def test_a_gateway_carries_on_from_the_copy(source: Source, migrated: str, tmp_path: Path) -> None:
    sink = ScriptedSink(port=source.sink_port)
    sink.start()
    gateway = GatewayProcess(
        tmp_path / "gateway", env={**API_KEYS, "DIGIBRIDGE_STORE_URL": migrated}
    ).start()
    try:
        assert read_feed(gateway)["events"] == source.events
        assert len(source.events) == MESSAGES

        # The delivery that was waiting goes out when asked, to its sink, signed as before.
        retried = httpx.post(
            f"{gateway.url}/v1/deliveries/{source.waiting}/retry", headers=auth(ADMIN), timeout=30
        )
        assert retried.status_code == 202, retried.text
        (arrived,) = sink.wait_for_posts(1)
        assert arrived.path == "/waiting"

        # A re-sent message is still a duplicate: the dedupe keys came along.
        again = post_message(gateway, with_kenmerk(TEMPLATE, source.kenmerk))
        assert again.status_code == 200
        assert ack_duplicate(again.content)
        assert ack_event_ids(again.content) == [source.events[0]["id"]]

        # A new message continues the feed where the consumer's old cursor left off, and the
        # source's sequence, without a gap.
        fresh = post_message(gateway, with_kenmerk(TEMPLATE))
        assert fresh.status_code == 200
        assert not ack_duplicate(fresh.content)
        (new,) = read_feed(gateway, after=source.cursor)["events"]
        assert [new["id"]] == ack_event_ids(fresh.content)
        assert int(new["sequence"]) == int(source.events[-1]["sequence"]) + 1 == MESSAGES + 1
    finally:
        gateway.stop()
        sink.stop()


def test_a_target_holding_data_is_refused(source: Source, migrated: str) -> None:
    finished = cli("migrate", "--from", source.url, "--to", migrated)
    assert finished.returncode == 2
    assert "already holds data" in finished.stderr
    assert "messages" in finished.stderr


def test_a_copy_that_differs_is_not_committed(source: Source, target: str) -> None:
    """A trigger changes one value on its way in: the check finds it, nothing is committed."""
    asyncio.run(_open_and_close(PostgresStore(target)))
    with psycopg.connect(target, autocommit=True) as connection:
        connection.execute(
            "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN NEW.error := coalesce(NEW.error, '') || '!'; RETURN NEW; END $$;"
            " CREATE TRIGGER tamper BEFORE INSERT ON attempts"
            " FOR EACH ROW EXECUTE FUNCTION tamper()"
        )
    finished = cli("migrate", "--from", source.url, "--to", target)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    rows = report(finished.stdout)
    assert {table for table, (_, _, verdict) in rows.items() if verdict != "ok"} == {"attempts"}
    assert "nothing was committed" in finished.stderr
    with psycopg.connect(target) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_verify_finds_a_row_changed_after_the_copy(source: Source, migrated: str) -> None:
    same = cli("verify", "--from", source.url, "--to", migrated)
    assert same.returncode == 0, same.stdout + same.stderr
    with psycopg.connect(migrated, autocommit=True) as connection:
        connection.execute(
            "UPDATE subscriptions SET secret = 'whsec_changed' WHERE id = ("
            "SELECT id FROM subscriptions ORDER BY id LIMIT 1)"
        )
    differs = cli("verify", "--from", source.url, "--to", migrated)
    assert differs.returncode == 1
    verdicts = {table: verdict for table, (_, _, verdict) in report(differs.stdout).items()}
    assert verdicts["subscriptions"] == "MISMATCH"
    assert {t for t, v in verdicts.items() if v != "ok"} == {"subscriptions"}


async def _open_and_close(store: Store) -> None:
    await store.open()
    await store.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--from", "postgresql://x/y", "--to", "postgresql://x/y"], "--from must be sqlite:///"),
        (["--from", "sqlite:///{tmp}/absent.db", "--to", "{target}"], "no SQLite store at"),
        (["--from", "sqlite:///{tmp}/notes.txt", "--to", "{target}"], "not a SQLite database"),
        (["--from", "sqlite:///{tmp}/other.db", "--to", "{target}"], "not a digibridge store"),
        (["--from", "{source}", "--to", "mysql://x/y"], "--to must be postgresql://"),
        (
            ["--from", "{source}", "--to", "postgresql://postgres@127.0.0.1:1/test"],
            "cannot connect",
        ),
    ],
)
def test_unusable_arguments_are_refused_naming_the_problem(
    arguments: list[str], message: str, source: Source, target: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a database, just text long enough" * 100)
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as db:
        db.execute("CREATE TABLE things (x)")
    filled = [a.format(tmp=tmp_path, target=target, source=source.url) for a in arguments]
    finished = CliRunner().invoke(main, ["store", "migrate", *filled])
    assert finished.exit_code == 2, finished.output
    assert message in finished.stderr
    assert finished.exception is None or isinstance(finished.exception, SystemExit)


def test_a_store_in_use_by_a_gateway_is_refused(tmp_path: Path, target: str) -> None:
    gateway = GatewayProcess(tmp_path / "running").start()
    try:
        finished = cli(
            "migrate", "--from", f"sqlite:///{gateway.data_dir / 'digibridge.db'}", "--to", target
        )
    finally:
        gateway.stop()
    assert finished.returncode == 2
    assert "in use by another digibridge process" in finished.stderr
    with psycopg.connect(target) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchone()
    assert tables == (0,)  # not even migrated: the source was refused first


def test_a_target_of_another_schema_version_is_refused_naming_the_column(
    source: Source, target: str
) -> None:
    asyncio.run(_open_and_close(PostgresStore(target)))
    with psycopg.connect(target, autocommit=True) as connection:
        connection.execute("ALTER TABLE subscriptions DROP COLUMN owner")
    finished = CliRunner().invoke(main, ["store", "migrate", "--from", source.url, "--to", target])
    assert finished.exit_code == 2, finished.output
    assert "no column subscriptions.owner" in finished.stderr
    with psycopg.connect(target) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone() == (0,)

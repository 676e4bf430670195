"""PostgreSQL only: what must hold when several instances share one database.

Each test opens two (or more) `PostgresStore`s on one fresh schema, as separate digibridge
processes would, and makes them race for the same rows.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from pydantic import ValidationError

from digibridge.app import open_store
from digibridge.clock import SystemClock
from digibridge.config import Settings
from digibridge.store._migrations import load_migrations
from digibridge.store.postgres import PostgresStore
from digibridge.store.postgres.store import PURGE_LOCK_KEY
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    Completion,
    DeliveryJob,
    DeliveryStatus,
    IdempotencyKey,
    NewEvent,
    Outcome,
    OutcomeKind,
    PurgeResult,
    StoreError,
)
from tests.store.test_delivery_queue import health
from tests.store.test_store_contract import (
    LEASE,
    attempt_for,
    event,
    match_all,
    message,
    subscription,
)
from tests.store.test_terugmeldingen_store import record, request

if TYPE_CHECKING:
    from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio

Stores = Callable[[int], Awaitable[list[PostgresStore]]]


@pytest.fixture
async def stores(postgres_url: str, clock: FakeClock) -> AsyncIterator[Stores]:
    """Opens `n` stores on the one schema (as `n` instances would), closing them afterwards."""
    opened: list[PostgresStore] = []

    async def open_many(count: int) -> list[PostgresStore]:
        batch = [PostgresStore(postgres_url, clock=clock, pool_size=4) for _ in range(count)]
        await asyncio.gather(*(store.open() for store in batch))
        opened.extend(batch)
        return batch

    try:
        yield open_many
    finally:
        for store in opened:
            await store.close()


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A plain connection to the schema, for what no store method does (holding a lock)."""
    connection = await psycopg.AsyncConnection.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


async def wait_until_blocked_by(url: str, holder: int) -> None:
    """Until some backend waits for a lock held by backend `holder`, with a deadline."""
    async with raw(url) as connection:
        await connection.set_autocommit(True)
        for _ in range(500):
            cursor = await connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (holder,),
            )
            row = await cursor.fetchone()
            if row is not None and row[0] != 0:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"no backend ever waited for backend {holder}")


# -- start-up ------------------------------------------------------------------------------------


async def test_two_instances_migrating_a_fresh_schema_at_once_apply_each_version_once(
    stores: Stores,
) -> None:
    first, second = await stores(2)

    expected = [m.version for m in load_migrations("postgres")]
    assert await first.applied_migrations() == expected
    assert await second.applied_migrations() == expected
    assert await first.ping()
    assert await second.ping()


async def test_an_unreachable_server_is_a_store_error_naming_it_without_password() -> None:
    store = PostgresStore(
        "postgresql://postgres:s3cret@127.0.0.1:1/test", pool_size=1, connect_timeout=1
    )
    with pytest.raises(
        StoreError, match=re.escape("cannot connect to postgresql://postgres@127.0.0.1:1/test")
    ) as error:
        await store.open()
    assert "s3cret" not in str(error.value)
    assert not await store.ping()
    with pytest.raises(StoreError, match="not open"):
        await store.get_event("ev-1")


def test_a_postgresql_url_selects_the_postgres_store(tmp_path: Path) -> None:
    settings = Settings(store_url="postgresql://postgres@127.0.0.1:5432/test", store_pool_size=3)
    assert isinstance(open_store(settings, SystemClock()), PostgresStore)
    sqlite = Settings(store_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(open_store(sqlite, SystemClock()), SqliteStore)


# -- inbound dedupe --------------------------------------------------------------------------


async def test_the_same_message_at_two_instances_at_once_is_stored_once(stores: Stores) -> None:
    first, second = await stores(2)
    await first.create_subscription(subscription())

    for n in range(8):
        events = [event(f"ev-{n}-a"), event(f"ev-{n}-b")]
        # The same kenmerk under two MessageIDs, as a sender retrying at another instance.
        results = await asyncio.gather(
            first.ingest(message(f"uuid:{n}-x", f"K-{n}"), events, match_all),
            second.ingest(message(f"uuid:{n}-y", f"K-{n}"), events, match_all),
        )
        stored = [r for r in results if not r.duplicate]
        duplicates = [r for r in results if r.duplicate]
        assert len(stored) == 1
        assert len(duplicates) == 1
        assert duplicates[0].event_ids == stored[0].event_ids == (f"ev-{n}-a", f"ev-{n}-b")
        assert duplicates[0].original_message_id == stored[0].original_message_id
        assert duplicates[0].deliveries_created == 0

    deliveries = await first.list_deliveries()
    assert len(deliveries) == 16
    assert len({d.event_id for d in deliveries}) == 16
    feed = await first.list_events(limit=100)
    assert [e.position for e in feed] == list(range(1, 17))
    assert [e.sequence for e in feed] == [f"{n:020d}" for n in range(1, 17)]


async def test_ingests_numbering_two_sources_in_opposite_orders_do_not_deadlock(
    stores: Stores,
) -> None:
    first, second = await stores(2)

    def pair(n: int, sources: tuple[str, str]) -> list[NewEvent]:
        return [replace(event(f"ev-{n}-{s}"), source=s) for s in sources]

    for n in range(10):
        await asyncio.gather(
            first.ingest(message(f"uuid:{n}-1", f"K-{n}-1"), pair(n * 2, ("a", "b")), match_all),
            second.ingest(
                message(f"uuid:{n}-2", f"K-{n}-2"), pair(n * 2 + 1, ("b", "a")), match_all
            ),
        )

    feed = await first.list_events(limit=100)
    for source in ("a", "b"):
        numbers = sorted(int(e.sequence or 0) for e in feed if e.source == source)
        assert numbers == list(range(1, 21))


async def test_the_same_idempotency_key_at_two_instances_stores_one_terugmelding(
    stores: Stores,
) -> None:
    first, second = await stores(2)
    key = IdempotencyKey(owner="alice", key="key-1", body_digest="sha256:abc")

    results = await asyncio.gather(
        first.create_terugmelding(record("tm-a"), request("tm-a"), key),
        second.create_terugmelding(record("tm-b"), request("tm-b"), key),
    )

    assert sorted(r.replayed for r in results) == [False, True]
    assert results[0].record.id == results[1].record.id
    assert len(await first.list_terugmeldingen()) == 1


# -- claims ----------------------------------------------------------------------------------


async def test_claims_racing_from_two_instances_never_share_a_delivery(
    stores: Stores, clock: FakeClock
) -> None:
    first, second = await stores(2)
    for index in range(4):
        await first.create_subscription(subscription(f"sub-{index}", sink=f"http://h{index}.test/"))
    for n in range(10):
        await first.ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all)
    now = clock.now()

    claimed: list[str] = []
    for _ in range(20):
        rounds = await asyncio.gather(
            first.claim_due(now=now, limit=3, lease_until=now + LEASE, owner="a"),
            second.claim_due(now=now, limit=3, lease_until=now + LEASE, owner="b"),
        )
        claimed += [job.delivery.id for jobs in rounds for job in jobs]
        if len(claimed) >= 40:
            break

    assert len(claimed) == 40
    assert len(set(claimed)) == 40


async def test_per_endpoint_limit_holds_across_instances(stores: Stores, clock: FakeClock) -> None:
    instances = await stores(3)
    # Two subscriptions on one endpoint, twelve deliveries to it in all.
    await instances[0].create_subscription(subscription("sub-a", sink="http://one.test/a"))
    await instances[0].create_subscription(subscription("sub-b", sink="http://one.test/b"))
    for n in range(6):
        await instances[0].ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all)
    now = clock.now()

    for _ in range(10):
        await asyncio.gather(
            *(
                store.claim_due(
                    now=now, limit=10, lease_until=now + LEASE, owner=f"w{i}", per_endpoint=3
                )
                for i, store in enumerate(instances)
            )
        )
        stats = await instances[0].queue_stats(now=now)
        assert (stats.pending, stats.in_flight) == (12, 3)
        await instances[0].release_leases()


async def test_an_endpoint_being_claimed_elsewhere_is_left_to_that_instance(
    stores: Stores, clock: FakeClock, postgres_url: str
) -> None:
    (store,) = await stores(1)
    await store.create_subscription(subscription("sub-busy", sink="http://busy.test/"))
    await store.create_subscription(subscription("sub-free", sink="http://free.test/"))
    await store.ingest(message(), [event("ev-1")], match_all)
    now = clock.now()

    async with raw(postgres_url) as other, other.transaction():
        # What another instance's claim for that endpoint holds until it commits.
        await other.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':endpoint:' || %s))",
            ("http://busy.test",),
        )
        jobs = await store.claim_due(now=now, limit=10, lease_until=now + LEASE, owner="w1")
        assert [job.subscription.id for job in jobs] == ["sub-free"]

    jobs = await store.claim_due(now=now, limit=10, lease_until=now + LEASE, owner="w1")
    assert [job.subscription.id for job in jobs] == ["sub-busy"]


async def test_a_rate_limit_allows_one_request_across_instances(
    stores: Stores, clock: FakeClock
) -> None:
    first, second = await stores(2)
    limited = subscription("sub-rate")
    limited = replace(limited, delivery=replace(limited.delivery, rate=6))
    await first.create_subscription(limited)
    for n in range(4):
        await first.ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all)
    now = clock.now()

    rounds = await asyncio.gather(
        first.claim_due(now=now, limit=10, lease_until=now + LEASE, owner="a"),
        second.claim_due(now=now, limit=10, lease_until=now + LEASE, owner="b"),
    )
    assert sum(len(jobs) for jobs in rounds) == 1
    later = now + timedelta(seconds=10)
    assert (
        len(await second.claim_due(now=later, limit=10, lease_until=later + LEASE, owner="b")) == 1
    )


async def test_a_lease_that_ran_out_is_taken_over_by_another_instance(
    stores: Stores, clock: FakeClock
) -> None:
    first, second = await stores(2)
    await first.create_subscription(subscription())
    await first.ingest(message(), [event("ev-1")], match_all)
    now = clock.now()
    (job,) = await first.claim_due(now=now, limit=1, lease_until=now + LEASE, owner="dead")
    assert await second.claim_due(now=now, limit=1, lease_until=now + LEASE, owner="b") == []

    later = now + LEASE
    (taken,) = await second.claim_due(now=later, limit=1, lease_until=later + LEASE, owner="b")
    assert taken.delivery.id == job.delivery.id
    await first.complete(job, attempt_for(job, 200), Outcome(OutcomeKind.SUCCEEDED))

    (delivery,) = await second.list_deliveries()
    assert delivery.attempts == 0  # the late owner's outcome was not recorded
    await second.complete(taken, attempt_for(taken, 200), Outcome(OutcomeKind.SUCCEEDED))
    assert [a.status_code for a in await first.list_attempts(job.delivery.id)] == [200]


async def test_circuit_outcomes_recorded_at_once_by_two_instances_are_all_counted(
    stores: Stores, clock: FakeClock
) -> None:
    first, second = await stores(2)
    await first.create_subscription(subscription(sink="http://flaky.test/hook"))
    for n in range(8):
        await first.ingest(message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all)
    now = clock.now()
    jobs = await first.claim_due(now=now, limit=8, lease_until=now + LEASE, owner="w1")
    assert len(jobs) == 8
    policy = health(min_requests=100)
    ok = Outcome(OutcomeKind.SUCCEEDED, endpoint_failed=False)

    def done(index: int) -> Completion:
        return Completion(jobs[index], attempt_for(jobs[index], 200), ok, policy)

    await asyncio.gather(
        *(
            (first if index % 2 else second).claim_due(
                now=now, limit=0, lease_until=now + LEASE, owner="w1", completed=[done(index)]
            )
            for index in range(8)
        )
    )

    circuit = await second.get_circuit("http://flaky.test")
    assert circuit is not None
    assert circuit.successes == 8


# -- feed ------------------------------------------------------------------------------------


async def test_the_feed_never_shows_a_later_position_before_an_earlier_one_commits(
    stores: Stores, postgres_url: str
) -> None:
    (store,) = await stores(1)
    await store.ingest(message("uuid:0", "K-0"), [event("ev-0")], match_all)
    head = await store.feed_head()

    async with raw(postgres_url) as slow:
        # A writer that took the next position and has not committed yet (as an ingest that
        # took its position and is still writing its deliveries).
        async with slow.transaction():
            cursor = await slow.execute(
                "UPDATE feed_position SET value = value + 1 RETURNING value"
            )
            row = await cursor.fetchone()
            assert row is not None
            assert row[0] == head + 1
            await slow.execute(
                "INSERT INTO messages (message_id, kenmerk, basisregistratie, gebeurtenissoort,"
                " received_at, raw) VALUES ('uuid:slow', 'K-slow', 'BRP', 'x', now(), '')"
            )
            await slow.execute(
                "INSERT INTO events (position, id, message_id, type, source, attributes, body,"
                " created_at) VALUES (%s, 'ev-slow', 'uuid:slow', 't', 's', '{}', '{}', now())",
                (head + 1,),
            )
            fast = asyncio.create_task(
                store.ingest(message("uuid:fast", "K-fast"), [event("ev-fast")], match_all)
            )
            await wait_until_blocked_by(postgres_url, slow.info.backend_pid)
            # The later ingest cannot take a position, let alone commit, before the slow one.
            assert not fast.done()
            assert await store.list_events(after=head, limit=10) == []
            assert await store.feed_head() == head
        await fast

    feed = await store.list_events(after=head, limit=10)
    assert [(e.id, e.position) for e in feed] == [("ev-slow", head + 1), ("ev-fast", head + 2)]
    assert await store.feed_head() == head + 2


# -- LISTEN/NOTIFY ---------------------------------------------------------------------------


async def test_work_committed_by_one_instance_wakes_the_others(stores: Stores) -> None:
    first, second = await stores(2)
    woken = asyncio.Event()
    second.on_wake(woken.set)
    await first.create_subscription(subscription())
    assert not woken.is_set()

    await first.ingest(message(), [event("ev-1")], match_all)

    await asyncio.wait_for(woken.wait(), timeout=5)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("store_pool_size", 0),
        ("store_pool_size", 1001),
        ("store_pool_size", "many"),
        ("store_connect_timeout", 0),
        ("store_connect_timeout", -1),
    ],
)
def test_bad_pool_settings_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValidationError, match=key):
        Settings(**{key: value})  # type: ignore[arg-type]


async def test_a_malformed_url_is_a_store_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:5432/test?sslmode=nonsense")
    with pytest.raises(StoreError, match="sslmode"):
        await store.open()


async def test_retention_runs_at_one_instance_at_a_time(
    stores: Stores, clock: FakeClock, postgres_url: str
) -> None:
    (store,) = await stores(1)
    await store.create_subscription(subscription())
    await store.ingest(message(), [event("ev-1")], match_all)
    now = clock.now()
    (job,) = await store.claim_due(now=now, limit=1, lease_until=now + LEASE, owner="w1")
    await store.complete(job, attempt_for(job, 200), Outcome(OutcomeKind.SUCCEEDED))
    later = now + timedelta(days=1)

    async with raw(postgres_url) as other, other.transaction():
        # Another instance's janitor, purging right now.
        await other.execute(f"SELECT pg_advisory_xact_lock({PURGE_LOCK_KEY})")
        assert await store.purge(delivered_before=later) == PurgeResult(0, 0, 0)
        assert await store.get_event("ev-1") is not None

    assert await store.purge(delivered_before=later) == PurgeResult(1, 1, 1)


# -- a database restart ----------------------------------------------------------------------


async def test_connections_cut_by_the_server_are_replaced_and_listening_resumes(
    postgres_url: str, clock: FakeClock
) -> None:
    name = f"digibridge-test-{secrets.token_hex(4)}"
    store = PostgresStore(f"{postgres_url}&application_name={name}", clock=clock, pool_size=2)
    other = PostgresStore(postgres_url, clock=clock, pool_size=2)
    await store.open()
    await other.open()
    try:
        woken = asyncio.Event()
        store.on_wake(woken.set)
        await store.create_subscription(subscription())

        async with raw(postgres_url) as admin:
            await admin.set_autocommit(True)
            # What a server restart does to every connection of this instance.
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )
            row = await cursor.fetchone()
            assert row is not None
            assert row[0] >= 2  # a pooled connection and the listening one

        result = await store.ingest(message(), [event("ev-1")], match_all)
        assert not result.duplicate
        assert await store.ping()
        # The listener reconnects with a back-off, and wakes once when it listens again.
        await asyncio.wait_for(woken.wait(), timeout=10)
        woken.clear()
        await other.ingest(message("uuid:2", "K-2"), [event("ev-2")], match_all)
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        await store.close()
        await other.close()


async def test_three_instances_claiming_and_recording_alongside_ingests_deliver_everything(
    stores: Stores, clock: FakeClock
) -> None:
    """A dispatcher's loop at three instances at once (outcomes recorded in the next claim, some
    retried, circuits counted) while messages keep arriving: no transaction fails, every
    delivery ends succeeded, and no delivery is ever held by two instances at once."""
    instances = await stores(3)
    for index in range(3):
        await instances[0].create_subscription(
            subscription(f"sub-{index}", sink=f"http://h{index % 2}.test/{index}")
        )
    now = clock.now()
    policy = health(min_requests=1000)
    holders: dict[str, str] = {}
    overlaps: list[str] = []

    async def dispatcher(name: str, store: PostgresStore) -> None:
        held: list[DeliveryJob] = []
        for turn in range(40):
            completed = [
                Completion(
                    job,
                    attempt_for(job, 200 if turn % 3 else 503),
                    Outcome(OutcomeKind.SUCCEEDED, endpoint_failed=False)
                    if turn % 3
                    else Outcome(OutcomeKind.RETRY, retry_at=now, endpoint_failed=True),
                    policy,
                )
                for job in held
            ]
            for job in held:
                holders.pop(job.delivery.id, None)
            held = await store.claim_due(
                now=now,
                limit=4,
                lease_until=now + LEASE,
                owner=name,
                per_endpoint=3,
                completed=completed,
            )
            for job in held:
                if job.delivery.id in holders:
                    overlaps.append(job.delivery.id)
                holders[job.delivery.id] = name
        for job in held:
            await store.complete(job, attempt_for(job, 200), Outcome(OutcomeKind.SUCCEEDED))
            holders.pop(job.delivery.id, None)

    async def sender() -> None:
        for n in range(20):
            await instances[n % 3].ingest(
                message(f"uuid:{n}", f"K-{n}"), [event(f"ev-{n}")], match_all
            )

    await asyncio.gather(
        sender(), *(dispatcher(f"w{i}", store) for i, store in enumerate(instances))
    )
    while jobs := await instances[0].claim_due(
        now=now, limit=100, lease_until=now + LEASE, owner="last"
    ):
        for job in jobs:
            await instances[0].complete(job, attempt_for(job, 200), Outcome(OutcomeKind.SUCCEEDED))

    assert overlaps == []
    deliveries = await instances[0].list_deliveries()
    assert len(deliveries) == 60
    assert {d.status for d in deliveries} == {DeliveryStatus.SUCCEEDED}

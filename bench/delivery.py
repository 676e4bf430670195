"""Delivery throughput: `python -m bench.delivery [--quick]`.

1. digibridge (SQLite store + dispatcher) against a raw httpx async loop posting the same bodies
   to the same local receiver with the same concurrency, in the same run (target ratio ≥ 0.7).
   Beside it, a raw aiohttp loop (the client digibridge sends with): what the engine's store,
   signing and bookkeeping cost over its bare client.
2. Ten endpoints, one of them dead (accepts connections, never answers): the healthy endpoints'
   throughput against a run where all ten are healthy (target ratio ≥ 0.9).
3. Fan-out: one stream of events to 100 subscriptions.

The receiver runs in its own process so it does not share an event loop with the sender.

Method (see docs/performance.md): both sides first run a short unmeasured warm-up against the
same receiver (connections, imports, the receiver's own first requests); then `ROUNDS` rounds in
alternating order (A B, B A, A B) with the full event count each, and the figures are medians
over rounds (the ratio: the median of each round's ratio, the two sides of a round having run
back to back). A busy shared machine then slows both sides alike instead of whichever ran
second, and one disturbed round does not decide the verdict.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx

from bench._common import Figure, alternate, free_port, receiver, run_one, scaled
from digibridge.delivery.dispatcher import Dispatcher
from digibridge.delivery.guard import SinkGuard
from digibridge.delivery.retry import RetryPolicy
from digibridge.delivery.signing import generate_secret
from digibridge.events.filters import subscription_matches
from digibridge.events.records import to_new_event
from digibridge.events.types import CloudEvent
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    DeliverySettings,
    DeliveryStatus,
    InboundMessage,
    NewEvent,
    Subscription,
)

#: Requests in flight, for digibridge and the baseline alike.
CONCURRENCY = 8
#: Per-endpoint limit with ten endpoints (the gateway's default is half its concurrency).
ENDPOINT_LIMIT = 4
SECRET = generate_secret()
#: Measured rounds per comparison (alternating which side goes first).
#: Events per side in the unmeasured warm-up.
WARM_UP = 100


@contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections (into the backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def events(count: int) -> list[NewEvent]:
    return [
        to_new_event(
            CloudEvent(
                id=f"bench-{n}",
                source="urn:nld:oin:00000001823288444000:systeem:BRP",
                type="nl.brp.persoon-verhuisd",
                time=datetime.now(UTC),
                subject=f"obj-{n % 97}",
                data={"plaats": "Zwolle", "volgnummer": n, "straat": "Grote Markt " * 8},
            )
        )
        for n in range(count)
    ]


def subscription(number: int, sink: str) -> Subscription:
    return Subscription(
        id=f"sub-{number}",
        sink=sink,
        delivery=DeliverySettings(secret=SECRET, timeout=2.0),
        created_at=datetime.now(UTC),
    )


async def filled_store(folder: Path, sinks: list[str], count: int) -> SqliteStore:
    store = SqliteStore(folder / "bench.db")
    await store.open()
    for number, sink in enumerate(sinks):
        await store.create_subscription(subscription(number, sink))
    batch = 50
    all_events = events(count)
    for start in range(0, count, batch):
        message = InboundMessage(
            message_id=f"uuid:bench-{start}",
            kenmerk=f"K-{start}",
            basisregistratie="BRP",
            gebeurtenissoort="verhuizing",
            received_at=datetime.now(UTC),
        )
        await store.ingest(message, all_events[start : start + batch], subscription_matches)
    return store


async def drain(
    store: SqliteStore, subscriptions: list[str], per_endpoint: int = CONCURRENCY
) -> float:
    """Run a dispatcher until every delivery to `subscriptions` succeeded; the seconds it
    took."""
    dispatcher = Dispatcher(
        store,
        policy=RetryPolicy(),
        concurrency=CONCURRENCY,
        per_endpoint=per_endpoint,
        request_timeout=2.0,
        guard=SinkGuard(["127.0.0.0/8"]),
    )
    started = time.perf_counter()
    task = asyncio.create_task(dispatcher.run())
    try:
        while True:
            # Cheap checks (one row at most each), so watching costs the store little.
            for subscription_id in subscriptions:
                left = await store.list_deliveries(
                    subscription_id=subscription_id, status=DeliveryStatus.PENDING, limit=1
                )
                if left:
                    break
            else:
                return time.perf_counter() - started
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.stop(timeout=0.5)
        await task


async def raw_httpx(url: str, bodies: list[bytes]) -> float:
    """The baseline: the same bodies, same receiver, same concurrency, nothing else."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    headers = {"content-type": "application/cloudevents+json; charset=utf-8"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:

        async def post(body: bytes) -> None:
            async with semaphore:
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post(body) for body in bodies))
        return time.perf_counter() - started


async def raw_aiohttp(url: str, bodies: list[bytes]) -> float:
    """A second raw loop, on the client digibridge sends with: what the engine's bookkeeping
    costs over the bare client (reported beside the figure, not as its baseline)."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    headers = {"content-type": "application/cloudevents+json; charset=utf-8"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def post(body: bytes) -> None:
            async with semaphore, session.post(url, data=body, headers=headers) as response:
                await response.read()
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post(body) for body in bodies))
        return time.perf_counter() - started


async def digibridge_run(url: str, count: int) -> float:
    """Seconds a dispatcher takes to deliver `count` events (store filled beforehand)."""
    with tempfile.TemporaryDirectory() as folder:
        store = await filled_store(Path(folder), [url], count)
        try:
            return await drain(store, ["sub-0"])
        finally:
            await store.close()


async def versus_raw(count: int) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    bodies = [event.body for event in events(count)]
    with receiver([port]):
        await digibridge_run(url, WARM_UP)
        await raw_httpx(url, bodies[:WARM_UP])
        rounds = await alternate(lambda: digibridge_run(url, count), lambda: raw_httpx(url, bodies))
        await raw_aiohttp(url, bodies[:WARM_UP])
        bare_client = [await raw_aiohttp(url, bodies) for _ in range(len(rounds))]
    ours = statistics.median(count / ours for ours, _ in rounds)
    return {
        "deliveries": count,
        "rounds": len(rounds),
        "digibridge_per_s": statistics.median(count / ours for ours, _ in rounds),
        "raw_httpx_per_s": statistics.median(count / raw for _, raw in rounds),
        "ratio_min": min(raw / ours for ours, raw in rounds),
        "raw_aiohttp_per_s": count / statistics.median(bare_client),
        "ratio_to_raw_aiohttp": ours * statistics.median(bare_client) / count,
    }


async def ten_endpoints(urls: list[str], subscriptions: list[str], count: int) -> float:
    """Seconds until every delivery to `subscriptions` (of ten endpoints) succeeded."""
    with tempfile.TemporaryDirectory() as folder:
        store = await filled_store(Path(folder), urls, count)
        try:
            return await drain(store, subscriptions, ENDPOINT_LIMIT)
        finally:
            await store.close()


async def dead_endpoint(count: int) -> dict[str, float]:
    """Deliveries per second the healthy endpoints get while one of ten is dead, against the
    deliveries per second of all ten when all are healthy: a dead endpoint must not take the
    gateway's capacity away from the others."""
    ports = [free_port() for _ in range(10)]
    urls = [f"http://127.0.0.1:{port}/hook" for port in ports]
    everyone = [f"sub-{n}" for n in range(10)]
    with receiver(ports), black_hole() as dead_port:
        dead_urls = [*urls[:9], f"http://127.0.0.1:{dead_port}/hook"]
        await ten_endpoints(urls, everyone, WARM_UP // 10)
        rounds = await alternate(
            lambda: ten_endpoints(urls, everyone, count),
            lambda: ten_endpoints(dead_urls, everyone[:9], count),
        )
    healthy = [(10 * count / all_up, 9 * count / one_down) for all_up, one_down in rounds]
    return {
        "deliveries_per_endpoint": count,
        "rounds": len(rounds),
        "all_healthy_per_s": statistics.median(all_up for all_up, _ in healthy),
        "healthy_with_one_dead_per_s": statistics.median(down for _, down in healthy),
        "ratio_min": min(down / all_up for all_up, down in healthy),
    }


async def fan_out(count: int) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    with receiver([port]), tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        store = await filled_store(Path(folder), [url] * 100, count)
        ingest = time.perf_counter() - started
        try:
            seconds = await drain(store, [f"sub-{n}" for n in range(100)])
        finally:
            await store.close()
    return {
        "events": count,
        "deliveries": 100 * count,
        "ingest_s": ingest,
        "deliveries_per_s": 100 * count / seconds,
    }


async def run(quick: bool, *, count: int | None = None) -> list[Figure]:
    count = count or scaled(300 if quick else 2000, 20)
    raw = await versus_raw(count)
    dead = await dead_endpoint(max(10, count // 5))
    fan = await fan_out(max(2, count // 50))
    return [
        Figure(
            name="delivery",
            unit="webhooks/s",
            value=raw["digibridge_per_s"],
            baseline=raw["raw_httpx_per_s"],
            baseline_name="raw httpx async loop, same bodies and concurrency",
            target=0.7,
            details=raw,
        ),
        Figure(
            name="isolation_one_of_ten_dead",
            unit="webhooks/s to healthy endpoints",
            value=dead["healthy_with_one_dead_per_s"],
            baseline=dead["all_healthy_per_s"],
            baseline_name="the same with all ten healthy",
            target=0.9,
            details=dead,
        ),
        Figure(name="fan_out_100", unit="deliveries/s", value=fan["deliveries_per_s"], details=fan),
    ]


if __name__ == "__main__":
    sys.exit(run_one(run, __doc__, logging=True))

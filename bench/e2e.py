"""End to end: events per second from SOAP in to webhook received, and latency at a fixed load.

`digibridge serve` (its own process, SQLite) with one subscription to a recording receiver
(`bench/_receiver.py --record`, its own process).

1. Throughput: `count` BRP moves sent as fast as `CONCURRENCY` allows; events/s from the first
   request to the last webhook received, for one gateway process and for
   `serve --workers WORKERS`. Baseline, in alternating rounds: a bare bridge
   (`bench/_bare.py bridge`: lxml parse, POST a minimal event on to the same receiver with
   aiohttp, the client digibridge sends with, answer 204 - no validation, mapping, store or
   retries). Target: >= 2,000 events/s (absolute).
2. Latency: an open-loop load of `RATE` messages/s for `seconds`; per event, the time from the
   start of its SOAP request to its arrival at the receiver: p50, p95, p99. Target p99 <= 50 ms.

    python -m bench.e2e [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tests.support.gateway import GatewayProcess, start_all

from bench._common import (
    SCALE,
    Figure,
    alternate,
    free_port,
    helper_process,
    median,
    percentile,
    receiver,
    run_one,
    scaled,
)
from bench._load import TIME_LIMIT, paced, post_all, requests
from bench.ingest import WORKERS

CONCURRENCY = 16
RATE = 200.0
THROUGHPUT_TARGET = 2000.0
P99_TARGET_MS = 50.0


async def arrivals(stats_url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(stats_url)
        response.raise_for_status()
        document: dict[str, dict[str, float]] = response.json()
        return document["arrivals"]


async def arrived_count(client: httpx.AsyncClient, stats_url: str) -> int:
    response = await client.get(f"{stats_url}?count")
    response.raise_for_status()
    count: int = response.json()["count"]
    return count


async def wait_for(stats_url: str, ids: set[str]) -> dict[str, float]:
    """The arrival times of `ids`, once all have arrived (bounded in time). Polls the count
    (cheap) until enough have arrived, then reads the arrivals, so that watching costs the
    receiver and this process next to nothing while the load runs."""
    deadline = time.monotonic() + TIME_LIMIT
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            if await arrived_count(client, stats_url) >= len(ids):
                seen = await arrivals(stats_url)
                if ids <= seen.keys():
                    return {event_id: seen[event_id] for event_id in ids}
            if time.monotonic() > deadline:
                seen = await arrivals(stats_url)
                missing = len(ids - seen.keys())
                raise RuntimeError(f"{missing} of {len(ids)} events never arrived")
            await asyncio.sleep(0.05)


def subscribe(gateway: GatewayProcess, sink: str) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": sink, "types": ["nl.brp.persoon-verhuisd"]},
        timeout=30,
    )
    if response.status_code != 201:
        raise RuntimeError(f"subscription refused: {response.status_code} {response.text}")


async def through(url: str, stats_url: str, count: int) -> float:
    """Events per second from the first request sent to the last webhook received."""
    batch = requests(count)
    started = time.time()
    await post_all(url, [r.body for r in batch], concurrency=CONCURRENCY, expect=None)
    arrived = await wait_for(stats_url, {r.event_id for r in batch})
    return count / (max(arrived.values()) - started)


async def run(
    quick: bool, *, count: int | None = None, seconds: float | None = None
) -> list[Figure]:
    count = count or scaled(300 if quick else 3000, 10)
    seconds = seconds or max(0.25, (2.0 if quick else 10.0) * SCALE["factor"])
    sink_port, bare_port = free_port(), free_port()
    sink = f"http://127.0.0.1:{sink_port}/hook"
    stats_url = f"http://127.0.0.1:{sink_port}/_stats"
    bare_url = f"http://127.0.0.1:{bare_port}/wus/digilevering"
    with (
        tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder,
        receiver([sink_port], record=True),
        helper_process(["bench._bare", "bridge", str(bare_port), sink], [bare_port]),
    ):
        gateway = GatewayProcess(Path(folder) / "one")
        workers = GatewayProcess(Path(folder) / "workers", workers=WORKERS)
        try:
            start_all([gateway, workers])
            for target in (gateway, workers):
                subscribe(target, sink)
                await through(target.wus_url, stats_url, max(20, count // 10))  # warm-up
            await through(bare_url, stats_url, max(20, count // 10))
            rounds = await alternate(
                lambda: through(gateway.wus_url, stats_url, count),
                lambda: through(workers.wus_url, stats_url, count),
                lambda: through(bare_url, stats_url, count),
            )
            batch = requests(int(RATE * seconds))
            sent = await paced(gateway.wus_url, batch, rate=RATE)
            arrived = await wait_for(stats_url, set(sent))
        finally:
            for target in (gateway, workers):
                if target.process is not None:
                    target.stop()
    latencies = [(arrived[event_id] - sent[event_id]) * 1000 for event_id in sent]
    return [
        Figure(
            name="e2e_throughput",
            unit="events/s",
            value=median([one for one, _, _ in rounds]),
            baseline=median([bare for _, _, bare in rounds]),
            baseline_name="bare bridge on aiohttp: lxml parse, POST on, 204 (no store)",
            target=THROUGHPUT_TARGET,
            target_of="value",
            details={"events_per_round": count, "concurrency": CONCURRENCY},
        ),
        Figure(
            name="e2e_workers_throughput",
            unit="events/s",
            value=median([many for _, many, _ in rounds]),
            baseline=median([bare for _, _, bare in rounds]),
            baseline_name="bare bridge on aiohttp: lxml parse, POST on, 204 (no store)",
            target=THROUGHPUT_TARGET,
            target_of="value",
            details={
                "workers": WORKERS,
                "events_per_round": count,
                "concurrency": CONCURRENCY,
                "against_one_process": median([many / one for one, many, _ in rounds]),
            },
        ),
        Figure(
            name="e2e_latency_p99",
            unit="ms",
            value=percentile(latencies, 0.99),
            target=P99_TARGET_MS,
            target_of="value_max",
            details={
                "offered_load_per_s": RATE,
                "seconds": seconds,
                "events": len(latencies),
                "p50_ms": percentile(latencies, 0.50),
                "p95_ms": percentile(latencies, 0.95),
                "max_ms": max(latencies),
            },
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_one(run, __doc__))

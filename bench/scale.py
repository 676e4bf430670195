"""Scale-out: end-to-end events per second with 1, 2 and 3 gateway instances on PostgreSQL,
against one instance on SQLite, in the same run.

Like `bench/e2e.py`: `digibridge serve` processes with one subscription to a recording receiver
(`bench/_receiver.py --record`, its own process); `count` BRP moves sent with `CONCURRENCY` in
flight in all, spread round-robin over the instances; events/s from the first request to the
last webhook received. Each PostgreSQL configuration gets a fresh schema (and so its own
subscription), dropped afterwards. The SQLite single instance is measured before and after the
PostgreSQL ones; the baseline is their mean, so drift of a busy machine shows in neither ratio
alone. No target: the figures say what a second and third instance buy on this machine (on one
machine they share its cores with the database and the load generator).

    python -m bench.scale [--quick]

PostgreSQL: as for the tests, `DIGIBRIDGE_TEST_POSTGRES_URL` (default
`postgresql://postgres@127.0.0.1:5432/test`). When it does not answer, the benchmark is skipped
with the reason recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway import GatewayProcess, start_all
from tests.support.postgres import fresh_schema, unreachable_reason

from bench._common import Figure, Skipped, free_port, receiver, scaled
from bench._load import post_all, requests
from bench.e2e import subscribe, wait_for

CONCURRENCY = 16
INSTANCES = (1, 2, 3)


async def through(urls: list[str], stats_url: str, count: int) -> float:
    """Events per second from the first request sent (round-robin over `urls`) to the last
    webhook received."""
    batch = requests(count)
    share = max(1, CONCURRENCY // len(urls))
    started = time.time()
    await asyncio.gather(
        *(
            post_all(url, [r.body for r in batch[n :: len(urls)]], concurrency=share, expect=None)
            for n, url in enumerate(urls)
        )
    )
    arrived = await wait_for(stats_url, {r.event_id for r in batch})
    return count / (max(arrived.values()) - started)


@dataclass(frozen=True)
class Load:
    """Where the webhooks go, where their arrivals are read, how many events per measurement."""

    sink: str
    stats_url: str
    count: int


async def measure(folder: Path, store_url: str | None, instances: int, load: Load) -> float:
    """Events/s of `instances` gateways on one store (None: a SQLite file of their own)."""
    env = {} if store_url is None else {"DIGIBRIDGE_STORE_URL": store_url}
    gateways = [GatewayProcess(folder / f"gateway-{n}", env=env) for n in range(instances)]
    try:
        start_all(gateways)
        subscribe(gateways[0], load.sink)
        urls = [gateway.wus_url for gateway in gateways]
        await through(urls, load.stats_url, max(10, load.count // 10))  # warm-up
        return await through(urls, load.stats_url, load.count)
    finally:
        for gateway in gateways:
            if gateway.process is not None:
                gateway.stop()


async def run(quick: bool, *, count: int | None = None) -> list[Figure]:
    why_not = unreachable_reason()
    if why_not is not None:
        raise Skipped(why_not)
    count = count or scaled(300 if quick else 2000, 10)
    sink_port = free_port()
    load = Load(f"http://127.0.0.1:{sink_port}/hook", f"http://127.0.0.1:{sink_port}/_stats", count)
    rates: dict[int, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as folder,
        receiver([sink_port], record=True),
    ):
        root = Path(folder)
        before = await measure(root / "sqlite-before", None, 1, load)
        for instances in INSTANCES:
            with fresh_schema() as store_url:
                rates[instances] = await measure(
                    root / f"postgres-{instances}", store_url, instances, load
                )
        after = await measure(root / "sqlite-after", None, 1, load)
    baseline = (before + after) / 2
    figures = [
        Figure(
            name="scale_sqlite_1",
            unit="events/s",
            value=baseline,
            details={"before": before, "after": after, "events": count},
        )
    ]
    figures += [
        Figure(
            name=f"scale_postgres_{instances}",
            unit="events/s",
            value=rates[instances],
            baseline=baseline,
            baseline_name="one instance on SQLite, same run",
            details={
                "instances": instances,
                "events": count,
                "concurrency": CONCURRENCY,
                "ratio_to_one_postgres_instance": rates[instances] / rates[1],
            },
        )
        for instances in INSTANCES
    ]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    arguments = parser.parse_args()
    try:
        figures = asyncio.run(run(arguments.quick))
    except Skipped as skipped:
        print(f"skipped: {skipped}", file=sys.stderr)
        return 0
    print(json.dumps([figure.as_json() for figure in figures], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

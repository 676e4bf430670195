"""Ingest: durable SOAP messages per second through `digibridge serve`.

The gateway (its own process: parse, validate, map, durable SQLite commit, acknowledge), once
as one process and once as `serve --workers WORKERS`, against a bare uvicorn app that only
parses the same body with lxml and answers 204 (`bench/_bare.py`), all loaded the same way
(`bench/_load.py`: distinct BRP move messages, `CONCURRENCY` in flight), in alternating rounds.
Target: ratio >= 0.5.

    python -m bench.ingest [--quick]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.support.gateway import GatewayProcess, start_all

from bench._common import Figure, alternate, free_port, helper_process, median, run_one, scaled
from bench._load import post_all, requests

CONCURRENCY = 16
TARGET = 0.5
#: `serve --workers`: one per core of the benchmark machine.
WORKERS = 2


async def run(quick: bool, *, count: int | None = None) -> list[Figure]:
    count = count or scaled(300 if quick else 2000, 10)
    bare_port = free_port()
    bare_url = f"http://127.0.0.1:{bare_port}/wus/digilevering"
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder,
        helper_process(["bench._bare", "ingest", str(bare_port)], [bare_port]),
    ):
        gateway = GatewayProcess(Path(folder) / "one")
        workers = GatewayProcess(Path(folder) / "workers", workers=WORKERS)
        try:
            start_all([gateway, workers])

            async def through(target: GatewayProcess) -> float:
                batch = [request.body for request in requests(count)]
                return count / await post_all(target.wus_url, batch, concurrency=CONCURRENCY)

            async def bare() -> float:
                batch = [request.body for request in requests(count)]
                return count / await post_all(bare_url, batch, concurrency=CONCURRENCY, expect=204)

            warm = max(20, count // 10)
            for target in (gateway, workers):
                await post_all(
                    target.wus_url, [r.body for r in requests(warm)], concurrency=CONCURRENCY
                )
            await post_all(
                bare_url, [r.body for r in requests(warm)], concurrency=CONCURRENCY, expect=204
            )
            rounds = await alternate(lambda: through(gateway), lambda: through(workers), bare)
        finally:
            for target in (gateway, workers):
                if target.process is not None:
                    target.stop()
    return [
        Figure(
            name="ingest",
            unit="messages/s",
            value=median([one for one, _, _ in rounds]),
            baseline=median([bare for _, _, bare in rounds]),
            baseline_name="bare uvicorn app: lxml parse, 204",
            target=TARGET,
            details={
                "messages_per_round": count,
                "concurrency": CONCURRENCY,
                "rounds": [{"digibridge": a, "bare": b} for a, _, b in rounds],
            },
        ),
        Figure(
            name="ingest_workers",
            unit="messages/s",
            value=median([many for _, many, _ in rounds]),
            baseline=median([bare for _, _, bare in rounds]),
            baseline_name="bare uvicorn app: lxml parse, 204",
            target=TARGET,
            details={
                "workers": WORKERS,
                "messages_per_round": count,
                "concurrency": CONCURRENCY,
                "against_one_process": median([many / one for one, many, _ in rounds]),
                "rounds": [{"digibridge": a, "bare": b} for _, a, b in rounds],
            },
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_one(run, __doc__))

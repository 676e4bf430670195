"""What the benchmarks share: free ports, helper processes, the machine, the result shape.

Every scenario reports a `Figure`: the measured value, the baseline measured in the same run
on the same machine, their ratio, and the target the ratio (or, for absolute targets, the
value) must meet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from digibridge.logs import configure_logging

#: Rounds of A/B measurements; the figures are medians over rounds.
ROUNDS = 3
#: Multiplies every count; `python -m bench --tiny` (the test suite's smoke run) lowers it.
SCALE = {"factor": 1.0}


def scaled(count: int, minimum: int = 2) -> int:
    """`count` times the run's scale factor, at least `minimum`."""
    return max(minimum, int(count * SCALE["factor"]))


class Skipped(Exception):
    """A benchmark that cannot run on this machine (a server it needs does not answer); the
    suite records the reason instead of figures."""


@dataclass
class Figure:
    """One scenario's result. `ratio` is value/baseline where a baseline exists; `target`
    applies to `ratio` (`target_of = "ratio"`) or to `value` (absolute targets)."""

    name: str
    unit: str
    value: float
    baseline: float | None = None
    baseline_name: str | None = None
    target: float | None = None
    #: "ratio" (>=), "value" (>=) or "value_max" (<=).
    target_of: str = "ratio"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.target_of == "ratio":
            return self.ratio is not None and self.ratio >= self.target
        if self.target_of == "value_max":
            return self.value <= self.target
        return self.value >= self.target

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["ratio"] = self.ratio
        document["met"] = self.met
        return document


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            memory = int(meminfo.readline().split()[1]) * 1024
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


@contextmanager
def helper_process(arguments: list[str], ports: list[int]) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m <arguments>` in its own process, until it listens on every port."""
    process = subprocess.Popen([sys.executable, "-m", *arguments])
    try:
        for port in ports:
            wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def receiver(ports: list[int], *, record: bool = False) -> Iterator[None]:
    """The benchmark webhook receiver (`bench/_receiver.py`) on `ports`."""
    arguments = ["bench._receiver", ",".join(map(str, ports))]
    with helper_process([*arguments, "--record"] if record else arguments, ports):
        yield


async def alternate(
    *measurements: Callable[[], Awaitable[float]], rounds: int = ROUNDS
) -> list[tuple[float, ...]]:
    """`rounds` rounds of every measurement, each round starting one further along, so a busy
    machine slows them alike instead of whichever ran last. Each round's results come in the
    order the measurements were given."""
    results: list[tuple[float, ...]] = []
    for number in range(rounds):
        start = number % len(measurements)
        measured: dict[int, float] = {}
        for index in [*range(start, len(measurements)), *range(start)]:
            measured[index] = await measurements[index]()
        results.append(tuple(measured[index] for index in range(len(measurements))))
    return results


def percentile(values: list[float], share: float) -> float:
    """The `share` (0-1) percentile, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_one(
    run: Callable[[bool], Coroutine[Any, Any, list[Figure]]],
    doc: str | None,
    *,
    logging: bool = False,
) -> int:
    """`python -m bench.<name> [--quick]`: run one benchmark, print its figures as JSON; exit 1
    when one misses its target."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    arguments = parser.parse_args()
    if logging:
        configure_logging("json", "error")
    figures = asyncio.run(run(arguments.quick))
    print(json.dumps([figure.as_json() for figure in figures], indent=2))
    return 0 if all(figure.met is not False for figure in figures) else 1

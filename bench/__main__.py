"""The benchmark suite: every figure against a baseline measured in the same run.

    python -m bench [--quick] [--only NAME[,NAME]] [--out FILE]

Runs mapping, ingest, delivery (with isolation), end to end, scaling and scale-out (several
instances on PostgreSQL; skipped, with the reason recorded, when PostgreSQL does not answer),
prints a summary table and writes every figure, the machine and the date as JSON (`--out`,
default `bench-results.json`). Exit 1 when a figure misses its target. `--quick` runs small counts
(under a minute); the full run stays under ten minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import delivery, e2e, ingest, mapping, scale, scaling
from bench._common import SCALE, Figure, Skipped, machine
from digibridge.logs import configure_logging


async def _mapping(quick: bool) -> list[Figure]:
    return mapping.run(quick)


SUITES: dict[str, Callable[[bool], Awaitable[list[Figure]]]] = {
    "mapping": _mapping,
    "ingest": ingest.run,
    "delivery": delivery.run,
    "e2e": e2e.run,
    "scaling": scaling.run,
    "scale": scale.run,
}


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if abs(value) < 100 else f"{value:,.0f}"


def summary(figures: list[Figure]) -> str:
    lines = [f"{'figure':28} {'value':>12} {'baseline':>12} {'ratio':>7} {'target':>10}  unit"]
    for figure in figures:
        if figure.target is None:
            target = ""
        else:
            sign = "<=" if figure.target_of == "value_max" else ">="
            scope = "" if figure.target_of == "ratio" else " v"
            verdict = {True: "ok", False: "MISSED", None: ""}[figure.met]
            target = f"{sign}{_number(figure.target)}{scope} {verdict}"
        lines.append(
            f"{figure.name:28} {_number(figure.value):>12} {_number(figure.baseline):>12} "
            f"{_number(figure.ratio):>7} {target:>10}  {figure.unit}"
        )
    return "\n".join(lines)


async def run_all(
    names: list[str], quick: bool
) -> tuple[list[Figure], dict[str, float], dict[str, str]]:
    """The figures, seconds per benchmark, and why any benchmark was skipped."""
    figures: list[Figure] = []
    durations: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name in names:
        started = time.perf_counter()
        try:
            figures += await SUITES[name](quick)
        except Skipped as reason:
            skipped[name] = str(reason)
            print(f"{name}: skipped: {reason}", file=sys.stderr)
        durations[name] = time.perf_counter() - started
        print(f"{name}: done in {durations[name]:.0f} s", file=sys.stderr)
    return figures, durations, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: under a minute")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SUITES)}")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke test
    arguments = parser.parse_args(argv)
    names = arguments.only.split(",") if arguments.only else list(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if arguments.tiny:
        SCALE["factor"] = 0.02
    configure_logging("json", "error")
    started = datetime.now(UTC)
    figures, durations, skipped = asyncio.run(run_all(names, arguments.quick))
    document = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": arguments.quick,
        "machine": machine(),
        "seconds": durations,
        "skipped": skipped,
        "figures": [figure.as_json() for figure in figures],
    }
    arguments.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(summary(figures))
    print(f"\nwritten to {arguments.out}")
    return 1 if any(figure.met is False for figure in figures) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the mapping engine on the BRP move against a hand-written lxml function.

Both turn the same parsed DigiLevering message (`samples/brp-verhuizing.xml`) into the same
CloudEvent JSON dict, in the same run; the hand-written one knows the message's shape and skips
everything generic (rule matching, XPath, conversions by name, the informatiearm form). The
figure is the ratio of their rates; the target is >= 0.5.

    python -m bench.mapping [--seconds S]

Prints both rates and the ratio; exit 1 when the ratio is below the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import SCALE, Figure
from digibridge.events.types import format_time
from digibridge.mapping._convert import AMSTERDAM
from digibridge.mapping.engine import EVENT_ID_NAMESPACE, MappingSet
from digibridge.mapping.types import Levering
from digibridge.wus.digilevering import read_levering

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "brp-verhuizing.xml"
BASE = "https://digibridge.example"
TARGET = 0.5
GBA = "{http://www.rvig.nl/schemas/lo-gba/3.10}"
RVIG_OIN = "00000001001172773000"


def hand_written(levering: Levering) -> dict[str, Any]:
    """The BRP move event, written out by hand for exactly this message shape."""
    categories: dict[str, dict[str, str]] = {}
    for category in levering.payload.iterchildren(f"{GBA}categorie"):
        categories[category.get("nummer", "")] = {
            element.get("nummer", ""): (element.text or "").strip()
            for element in category.iterchildren(f"{GBA}element")
        }
    new, old, person = categories["08"], categories["58"], categories["01"]

    def address(values: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = {"gemeenteCode": values["0910"]}
        for key, number in (("straat", "1110"), ("huisnummer", "1120"), ("huisletter", "1130")):
            if values.get(number):
                result[key] = int(values[number]) if key == "huisnummer" else values[number]
        for key, number in (("huisnummertoevoeging", "1140"), ("postcode", "1160")):
            if values.get(number):
                result[key] = values[number]
        if values.get("1170"):
            result["woonplaats"] = values["1170"]
        return result

    start = new["1030"]
    registered = levering.tijdstempel_verstrekker
    if registered.tzinfo is None:
        registered = registered.replace(tzinfo=AMSTERDAM)
    oin = levering.verstrekker_oin or RVIG_OIN
    kenmerk = levering.kenmerk
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{kenmerk}|persoon-verhuisd|0")),
        "source": f"urn:nld:oin:{oin}:systeem:BRP",
        "type": "nl.brp.persoon-verhuisd",
        "time": format_time(registered),
        "datacontenttype": "application/json",
        "dataschema": f"{BASE}/v1/event-types/nl.brp.persoon-verhuisd/schema",
        "data": {
            "bsn": person["0120"],
            "aNummer": levering.payload.get("aNummer"),
            "datumAanvangAdreshouding": f"{start[:4]}-{start[4:6]}-{start[6:]}",
            "binnengemeentelijk": new["0910"] == old["0910"],
            "nieuwAdres": address(new),
            "vorigAdres": address(old),
        },
    }


def rates(
    first: Callable[[], object], second: Callable[[], object], seconds: float
) -> tuple[float, float]:
    """Calls per second of each: the medians of rounds that alternate between the two, so
    that a busy machine slows both alike."""
    rounds = 10
    measured: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for function, results in ((first, measured[0]), (second, measured[1])):
            count = 0
            started = time.perf_counter()
            deadline = started + seconds / rounds / 2
            while (now := time.perf_counter()) < deadline:
                for _ in range(20):
                    function()
                count += 20
            results.append(count / (now - started))
    return statistics.median(measured[0]), statistics.median(measured[1])


def run(quick: bool, *, seconds: float | None = None) -> list[Figure]:
    """The engine's rate against the hand-written function's, in alternating rounds."""
    mappings = MappingSet.load(ROOT / "mappings", dataschema_base=BASE)
    levering = read_levering(SAMPLE.read_bytes())

    def engine() -> dict[str, Any]:
        (event,) = mappings.map(levering)
        return event.to_json_dict()

    if engine() != hand_written(levering):
        raise SystemExit("the engine and the hand-written function make different events")
    engine_rate, hand_rate = rates(
        engine,
        lambda: hand_written(levering),
        seconds or max(0.2, (2.0 if quick else 6.0) * SCALE["factor"]),
    )
    return [
        Figure(
            name="mapping",
            unit="events/s",
            value=engine_rate,
            baseline=hand_rate,
            baseline_name="hand-written lxml function for the BRP move",
            target=TARGET,
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="time for both together")
    args = parser.parse_args(argv)
    (figure,) = run(quick=False, seconds=args.seconds)
    assert figure.baseline is not None
    assert figure.ratio is not None
    print(f"engine (mappings/brp.yaml):  {figure.value:10.0f} events/s")
    print(f"hand-written lxml function:  {figure.baseline:10.0f} events/s")
    print(f"ratio engine/hand-written:   {figure.ratio:10.2f}  (target >= {TARGET})")
    return 0 if figure.met else 1


if __name__ == "__main__":
    sys.exit(main())

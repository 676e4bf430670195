"""Smoke test of the benchmark suite: `python -m bench --quick` with tiny counts runs every
benchmark end to end and writes figures of the documented shape. The numbers are not checked:
speed is measured by the suite, never asserted in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {
    "mapping",
    "ingest",
    "ingest_workers",
    "delivery",
    "isolation_one_of_ten_dead",
    "fan_out_100",
    "e2e_throughput",
    "e2e_workers_throughput",
    "e2e_latency_p99",
    "payload_1kb",
    "payload_10kb",
    "payload_100kb",
    "payload_1000kb",
    "subscriptions_1",
    "backlog_claim_time",
    "backlog_rss",
}
#: Scale-out figures: present unless PostgreSQL did not answer (then the skip is recorded).
SCALE_FIGURES = {"scale_sqlite_1", "scale_postgres_1", "scale_postgres_2", "scale_postgres_3"}


def test_the_quick_suite_runs_and_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode in (0, 1), finished.stderr[-3000:]
    document = json.loads(out.read_text())
    assert {"date", "command", "quick", "machine", "seconds", "figures"} <= document.keys()
    assert document["machine"]["cores"] >= 1
    assert set(document["seconds"]) == {"mapping", "ingest", "delivery", "e2e", "scaling", "scale"}
    names = {figure["name"] for figure in document["figures"]}
    assert names >= FIGURES, FIGURES - names
    assert set(document["skipped"]) <= {"scale"}
    if "scale" in document["skipped"]:
        assert "PostgreSQL" in document["skipped"]["scale"]
        assert not names & SCALE_FIGURES
    else:
        assert names >= SCALE_FIGURES, SCALE_FIGURES - names
    for figure in document["figures"]:
        assert figure["value"] > 0, figure
        assert isinstance(figure["unit"], str)
        if figure["baseline"] is not None:
            assert figure["ratio"] == figure["value"] / figure["baseline"]
        if figure["target"] is not None:
            assert isinstance(figure["met"], bool)
    # The summary names every figure; a missed target is reported, not hidden.
    for name in FIGURES:
        assert name in finished.stdout
    assert ("MISSED" in finished.stdout) == (finished.returncode == 1)

"""Reloading mappings in a running gateway (SIGHUP and `POST /v1/admin/reload`): a set that
passes `check` is swapped in; a broken one is refused, logged, and the loaded set stays."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.soap import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "mapping" / "fixtures" / "hostile"
AUTH = {"Authorization": "Bearer sesam"}


@pytest.fixture
def reloadable(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    """A gateway on a copy of the bundled mappings and samples (samples beside the mappings)."""
    mappings = tmp_path / "bundle" / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    shutil.copytree(SAMPLES, tmp_path / "bundle" / "samples")
    gateway = GatewayProcess(
        tmp_path / "gateway",
        env={"DIGIBRIDGE_MAPPINGS": str(mappings), "DIGIBRIDGE_API_KEYS": "sesam"},
    ).start()
    yield gateway, mappings
    gateway.stop()


def _types(gateway: GatewayProcess) -> set[str]:
    response = httpx.get(f"{gateway.url}/v1/event-types", headers=AUTH)
    assert response.status_code == 200
    return {entry["type"] for entry in response.json()}


def _log_events(gateway: GatewayProcess, name: str) -> list[dict[str, object]]:
    events = []
    for line in gateway.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name:
                events.append(entry)
    return events


def test_a_broken_set_is_refused_and_the_loaded_one_stays(
    reloadable: tuple[GatewayProcess, Path],
) -> None:
    gateway, mappings = reloadable
    before = _types(gateway)
    assert "nl.brk.eigendom-overgedragen" in before
    shutil.copy(HOSTILE / "php-function.yaml", mappings / "tst.yaml")

    # SIGHUP: refused, logged with the location, nothing changes.
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGHUP)
    (refused,) = wait_until(
        lambda: _log_events(gateway, "mappings_reload_refused"), what="reload refused"
    )
    assert refused["trigger"] == "SIGHUP"
    assert any("tst.yaml:17:15: XPath" in str(p) for p in refused["problems"])  # type: ignore[union-attr]
    assert gateway.alive()
    assert _types(gateway) == before

    # The admin route: the same refusal, as a problem with every location.
    response = httpx.post(f"{gateway.url}/v1/admin/reload", headers=AUTH)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    (param,) = response.json()["invalidParams"]
    assert param["name"].endswith("mappings/tst.yaml:17:15")
    assert "php:function() is not allowed" in param["reason"]
    assert _types(gateway) == before

    # A golden file that no longer matches is refused too: the set must pass all of check.
    (mappings / "tst.yaml").unlink()
    golden = mappings.parent / "samples" / "nhr-update.events.json"
    golden.write_text(golden.read_text().replace('"Proefboom Cloud"', '"Proefboom Wolk"'))
    response = httpx.post(f"{gateway.url}/v1/admin/reload", headers=AUTH)
    assert response.status_code == 409
    assert "nhr-update.events.json:" in response.json()["invalidParams"][0]["name"]


def test_a_good_set_is_swapped_in(reloadable: tuple[GatewayProcess, Path]) -> None:
    gateway, mappings = reloadable
    assert httpx.post(f"{gateway.url}/v1/admin/reload").status_code == 401  # API access needed
    (mappings / "brk.yaml").unlink()
    (mappings.parent / "samples" / "brk-eigendomsoverdracht.xml").unlink()
    (mappings.parent / "samples" / "brk-eigendomsoverdracht.events.json").unlink()

    response = httpx.post(f"{gateway.url}/v1/admin/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["files"] == ["bag.yaml", "brp.yaml", "nhr.yaml"]
    assert "nl.brk.eigendom-overgedragen" not in _types(gateway)

    shutil.copy(ROOT / "mappings" / "brk.yaml", mappings / "brk.yaml")
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "nl.brk.eigendom-overgedragen" in _types(gateway), what="BRK types back")
    reloaded = _log_events(gateway, "mappings_reloaded")
    assert [entry["trigger"] for entry in reloaded] == ["api", "SIGHUP"]
    assert (
        httpx.get(
            f"{gateway.url}/v1/events/00000000-0000-0000-0000-000000000000", headers=AUTH
        ).status_code
        == 404
    )

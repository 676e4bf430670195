"""The `digibridge` command as a user runs it, in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from digibridge.delivery.signing import generate_secret, webhook_headers
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port, wait_until
from tests.support.soap import SAMPLES

ROOT = Path(__file__).resolve().parents[1]


def digibridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digibridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "map", "check", "send", "receive"])
def test_every_command_has_help(command: str) -> None:
    result = digibridge(command, "--help")
    assert result.returncode == 0
    assert "Usage: " in result.stdout


def test_map_prints_the_cloudevents_of_a_sample() -> None:
    result = digibridge("map", str(SAMPLES / "brp-verhuizing.xml"))
    assert result.returncode == 0, result.stderr
    (event,) = json.loads(result.stdout)
    assert event["type"] == "nl.brp.persoon-verhuisd"
    assert event["specversion"] == "1.0"


def test_map_refuses_an_invalid_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes(
        (SAMPLES / "brp-verhuizing.xml")
        .read_bytes()
        .replace(b"<basisregistratie>BRP</basisregistratie>", b"")
    )
    result = digibridge("map", str(broken))
    assert result.returncode == 1
    assert "not a valid DigiLevering message" in result.stderr
    assert result.stdout == ""


def test_map_refuses_malformed_xml_and_dtds(tmp_path: Path) -> None:
    hostile = tmp_path / "xxe.xml"
    hostile.write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    result = digibridge("map", str(hostile))
    assert result.returncode == 1
    assert "DTD" in result.stderr


def test_map_says_why_a_message_is_unmapped(tmp_path: Path) -> None:
    unmapped = tmp_path / "unmapped.xml"
    unmapped.write_bytes(
        (SAMPLES / "brp-verhuizing.xml").read_bytes().replace(b"<naam>Gv01<", b"<naam>Zz99<")
    )
    result = digibridge("map", str(unmapped))
    assert result.returncode == 1
    assert "Zz99" in result.stderr


def test_map_with_a_broken_mappings_folder(tmp_path: Path) -> None:
    (tmp_path / "brp.yaml").write_text("registry: BRP\nrules: [\n")
    result = digibridge("map", str(SAMPLES / "brp-verhuizing.xml"), "--mappings", str(tmp_path))
    assert result.returncode == 1
    assert "brp.yaml" in result.stderr


def test_map_says_which_rule_matched_and_why_others_did_not() -> None:
    result = digibridge("map", str(SAMPLES / "bag-vbo-num-nieuw.xml"))
    assert result.returncode == 0, result.stderr
    assert [event["type"] for event in json.loads(result.stdout)] == [
        "nl.bag.verblijfsobject-toegevoegd",
        "nl.bag.nummeraanduiding-toegevoegd",
    ]
    lines = result.stderr.splitlines()
    assert any(
        line.startswith("matched  verblijfsobject-toegevoegd (") and "mappings/bag.yaml:" in line
        for line in lines
    )
    assert any(
        line.startswith("skipped  pand-toegevoegd (") and "selects nothing" in line
        for line in lines
    )
    assert not any("persoon-verhuisd" in line for line in lines)  # another basisregistratie


def test_map_prints_the_informatiearm_form() -> None:
    result = digibridge(
        "map", str(SAMPLES / "nhr-nieuwe-inschrijving.xml"), "--form", "informatiearm"
    )
    assert result.returncode == 0, result.stderr
    (event,) = json.loads(result.stdout)
    assert event["data"] == {
        "kvkNummer": "99012345",
        "vestiging": {"vestigingsnummer": "990000123456"},
    }
    assert event["dataref"] == "https://api.kvk.nl/api/v1/basisprofielen/99012345"
    assert event["dataschema"].endswith("/schema?form=informatiearm")


def test_check_passes_the_bundled_mappings_and_samples() -> None:
    result = digibridge("check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 4 mapping file(s)")


def test_check_reports_every_problem_with_its_location(tmp_path: Path) -> None:
    hostile = ROOT / "tests" / "mapping" / "fixtures" / "hostile"
    for name in ("xpath-syntax", "php-function", "missing-type"):
        (tmp_path / f"{name}.yaml").write_bytes((hostile / f"{name}.yaml").read_bytes())
    result = digibridge("check", "--mappings", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{tmp_path}/missing-type.yaml:14:7: event is missing 'type'"
    assert lines[1].startswith(f"{tmp_path}/php-function.yaml:17:15: XPath ")
    assert "extension function php:function() is not allowed" in lines[1]
    assert lines[2].startswith(f"{tmp_path}/xpath-syntax.yaml:16:15: XPath ")
    assert lines[3] == f"digibridge: 3 problem(s) in {tmp_path}"


def test_serve_refuses_a_mapping_folder_that_fails_check(tmp_path: Path) -> None:
    hostile = ROOT / "tests" / "mapping" / "fixtures" / "hostile" / "exslt-regexp.yaml"
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "tst.yaml").write_bytes(hostile.read_bytes())
    result = digibridge(
        "serve",
        "--port",
        str(free_port()),
        env={
            "DIGIBRIDGE_MAPPINGS": str(tmp_path / "mappings"),
            "DIGIBRIDGE_STORE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        },
    )
    assert result.returncode == 2
    assert "mappings do not pass check" in result.stderr
    assert "tst.yaml:13:13: XPath" in result.stderr
    assert "re:test() is not allowed" in result.stderr
    assert "Traceback" not in result.stderr


def test_send_to_nothing_fails_clearly() -> None:
    port = free_port()
    result = digibridge(
        "send", str(SAMPLES / "brp-verhuizing.xml"), "--to", f"http://127.0.0.1:{port}/wus"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("digibridge: ")


def test_serve_refuses_bad_configuration_with_exit_2() -> None:
    result = digibridge("serve", env={"DIGIBRIDGE_STORE_URL": "mysql://db"})
    assert result.returncode == 2
    assert "store_url" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "65", "two", "1.5", ""])
def test_serve_refuses_a_bad_number_of_workers(value: str, tmp_path: Path) -> None:
    flag = digibridge("serve", "--workers", value)
    assert flag.returncode == 2
    assert "--workers" in flag.stderr
    variable = digibridge(
        "serve",
        env={"DIGIBRIDGE_WORKERS": value, "DIGIBRIDGE_STORE_URL": f"sqlite:///{tmp_path}/d.db"},
    )
    assert variable.returncode == 2
    assert "workers (DIGIBRIDGE_WORKERS in the environment)" in variable.stderr


def test_serve_refuses_a_missing_config_file(tmp_path: Path) -> None:
    result = digibridge("serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


def test_serve_refuses_unknown_keys_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "digibridge.toml"
    config.write_text('store_urll = "sqlite:///x.db"\n')
    result = digibridge("serve", "--config", str(config))
    assert result.returncode == 2
    assert "store_urll" in result.stderr


def test_receive_verifies_and_prints_events(tmp_path: Path) -> None:
    secret = generate_secret()
    port = free_port()
    out = tmp_path / "receive.out"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "digibridge",
                "receive",
                "--port",
                str(port),
                "--secret",
                secret,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: _answers(url), timeout=20, what="receiver up")
        event = json.loads(
            subprocess.run(
                [sys.executable, "-m", "digibridge", "map", str(SAMPLES / "brp-verhuizing.xml")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )[0]
        body = json.dumps(event).encode()
        headers = {
            "content-type": "application/cloudevents+json; charset=utf-8",
            **webhook_headers(secret, event["id"], int(time.time()), body),
        }
        assert httpx.post(url, content=body, headers=headers).status_code == 204
        forged = {**headers, "webhook-signature": "v1,AAAA"}
        refused = httpx.post(url, content=body, headers=forged)
        assert refused.status_code == 401
        bad_json = httpx.post(
            url, content=b"{", headers=webhook_headers(secret, "x", int(time.time()), b"{")
        )
        assert bad_json.status_code == 400
        wait_until(lambda: event["id"] in out.read_text(), what="event printed")
        assert out.read_text().count(event["id"]) == 1
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        httpx.options(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_a_second_gateway_on_the_same_store_refuses_clearly(gateway: GatewayProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "digibridge", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=gateway.env,
        cwd=gateway.data_dir,
        check=False,
    )
    assert result.returncode == 2
    assert "in use by another digibridge process" in result.stderr
    assert "Traceback" not in result.stderr
    assert gateway.alive()

"""The container image, short of building it (no registry for base images here): the
Dockerfile passes hadolint, and its final stage's command, environment, health check and user
work as the image would run them: the CMD started in a fresh data folder with the image's
environment answers the HEALTHCHECK command, and SIGTERM stops it with exit code 0."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.net import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_PORT = "8000"


@dataclass
class FinalStage:
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str = ""
    workdir: str = ""
    volumes: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage() -> FinalStage:
    stage = FinalStage()
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stage = FinalStage()
        elif keyword == "ENV":
            stage.env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
        elif keyword == "CMD":
            stage.cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            stage.healthcheck = json.loads(rest[rest.index("CMD ") + 4 :])
        elif keyword == "USER":
            stage.user = rest
        elif keyword == "WORKDIR":
            stage.workdir = rest
        elif keyword == "VOLUME":
            stage.volumes = json.loads(rest)
        elif keyword == "EXPOSE":
            stage.expose = rest.split()
    return stage


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_a_non_root_user_with_its_data_on_a_volume() -> None:
    stage = final_stage()
    assert stage.user not in ("", "0", "root")
    assert stage.workdir in stage.volumes
    assert stage.env["DIGIBRIDGE_STORE_URL"] == f"sqlite:///{stage.workdir}/digibridge.db"
    assert stage.expose == [IMAGE_PORT]
    assert stage.cmd[:2] == ["digibridge", "serve"]
    assert "--port" in stage.cmd
    assert "--host" in stage.cmd
    assert stage.cmd[stage.cmd.index("--port") + 1] == IMAGE_PORT
    assert f":{IMAGE_PORT}/healthz" in " ".join(stage.healthcheck)
    assert "curl" not in " ".join(stage.healthcheck)


def test_the_entrypoint_answers_the_healthcheck_and_stops_cleanly(tmp_path: Path) -> None:
    """The CMD as the image runs it, in a temp folder standing in for the data volume, on a
    free port instead of 8000 (other gateways may run on this machine)."""
    stage = final_stage()
    port = str(free_port())
    data = tmp_path / "data"
    data.mkdir()
    image_env = {name: value.replace(stage.workdir, str(data)) for name, value in stage.env.items()}
    command = [port if part == IMAGE_PORT else part for part in stage.cmd]
    command[0] = str(Path(sys.executable).parent / command[0])
    outside = {k: v for k, v in os.environ.items() if not k.startswith("DIGIBRIDGE_")}
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=data,
            env={**outside, **image_env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=30, what="the container command ready")
        check = [
            sys.executable if part == "python" else part.replace(f":{IMAGE_PORT}/", f":{port}/")
            for part in stage.healthcheck
        ]
        assert subprocess.run(check, check=False, timeout=30).returncode == 0
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
    assert (data / "digibridge.db").is_file()
    events = [json.loads(line)["event"] for line in log.read_text().splitlines() if "{" in line[:1]]
    assert "gateway_started" in events
    assert events[-1] == "gateway_stopped"


def test_the_healthcheck_fails_when_nothing_answers() -> None:
    stage = final_stage()
    port = str(free_port())
    check = [
        sys.executable if part == "python" else part.replace(f":{IMAGE_PORT}/", f":{port}/")
        for part in stage.healthcheck
    ]
    result = subprocess.run(check, check=False, timeout=30, capture_output=True)
    assert result.returncode != 0

"""schemathesis against the live gateway and its own `/v1/openapi.json`: generated requests,
valid and invalid, never get a 5xx, and every answer is one the document describes (status
code, content type, `API-Version` and other declared headers, body schema)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayProcess

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


@pytest.fixture
def open_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """No rate limit: the run sends far more requests per second than a consumer may."""
    process = GatewayProcess(tmp_path / "gateway", env={"DIGIBRIDGE_RATE_LIMIT": "0"}).start()
    yield process
    process.stop()


def _subscription(gateway: GatewayProcess) -> str:
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={
            "sink": "http://127.0.0.1:9/hook",
            "types": ["nl.brp.persoon-verhuisd"],
            "delivery": {"handshake": "none"},
        },
    )
    assert response.status_code == 201, response.text
    identifier: str = response.json()["id"]
    return identifier


def test_the_live_api_keeps_to_its_document(open_gateway: GatewayProcess, tmp_path: Path) -> None:
    # Half of the generated subscription ids are real ones, so the runs reach past the 404:
    # one subscription for every operation, another that DELETE may remove.
    kept, doomed = _subscription(open_gateway), _subscription(open_gateway)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'[dictionaries.kept]\nvalues = ["{kept}"]\n'
        f'[dictionaries.doomed]\nvalues = ["{doomed}"]\n'
        "[parameters]\n"
        '"path.subscription_id" = { dictionary = "kept", probability = 0.5 }\n'
        "[[operations]]\n"
        'include-operation-id = "deleteSubscription"\n'
        'parameters = { "path.subscription_id" = { dictionary = "doomed", probability = 0.5 } }\n'
    )
    command = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "--config-file",
        str(config),
        "run",
        f"{open_gateway.url}/v1/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "10",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        # The event stream never ends by design: a generated request would only wait for the
        # timeout, and a body that is still being written cannot be checked against a schema.
        # tests/api/test_events.py tests it with real SSE clients.
        "--exclude-operation-id",
        "streamEvents",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    print(output)  # the run's summary, shown with -s or on failure
    assert result.returncode == 0, output
    assert " passed" in output, output
    assert open_gateway.alive()
    assert httpx.get(f"{open_gateway.url}/readyz").status_code == 200

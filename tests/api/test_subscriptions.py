"""`/v1/subscriptions` on a running gateway: the resource, and problem+json for every bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayProcess

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PROBLEM = "application/problem+json"


@pytest.fixture
def api(shared_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{shared_gateway.url}/v1", timeout=10) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, *mentions: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    for mention in mentions:
        assert mention in response.text
    return body


def test_create_read_list_delete(api: httpx.Client) -> None:
    created = api.post(
        "/subscriptions",
        json={
            "sink": "http://127.0.0.1:9/hook",
            "types": ["nl.brp.persoon-verhuisd"],
            "filters": [{"prefix": {"source": "urn:nld:oin:"}}],
            "protocolsettings": {"headers": {"X-Tenant": "gemeente-0599"}},
            "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": "t0ken"},
            # nothing listens there: an endpoint agreed out of band, not checked
            "delivery": {"secret": SECRET, "handshake": "none"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/v1/subscriptions/{body['id']}"
    assert created.headers["api-version"] == "1.0.0"
    assert "secret" not in body["delivery"]
    assert "sinkcredential" not in body
    assert body["types"] == ["nl.brp.persoon-verhuisd"]
    assert body["status"] == "active"

    read = api.get(f"/subscriptions/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body
    assert body["id"] in [item["id"] for item in api.get("/subscriptions").json()]

    assert api.delete(f"/subscriptions/{body['id']}").status_code == 204
    assert_problem(api.get(f"/subscriptions/{body['id']}"), 404, body["id"])
    assert_problem(api.delete(f"/subscriptions/{body['id']}"), 404)


def test_secret_is_generated_and_shown_once(api: httpx.Client) -> None:
    created = api.post(
        "/subscriptions",
        json={"sink": "https://9.9.9.9/hook", "delivery": {"handshake": "none"}},
    )
    assert created.status_code == 201
    secret = created.json()["delivery"]["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in api.get(f"/subscriptions/{created.json()['id']}").json()["delivery"]


def test_input_id_is_ignored(api: httpx.Client) -> None:
    created = api.post(
        "/subscriptions",
        json={"id": "mine", "sink": "https://9.9.9.9/h", "delivery": {"handshake": "none"}},
    )
    assert created.status_code == 201
    assert created.json()["id"] != "mine"


def test_bad_json(api: httpx.Client) -> None:
    response = api.post(
        "/subscriptions", content=b'{"sink": ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("body", "mention"),
    [
        ({}, "sink"),
        ({"sink": "https://9.9.9.9/h", "colour": "blue"}, "colour"),
        ({"sink": "ftp://9.9.9.9/h"}, "http"),
        ({"sink": "https://user:pw@9.9.9.9/h"}, "credentials"),
        ({"sink": "https://9.9.9.9/h", "protocol": "KAFKA"}, "protocol"),
        ({"sink": "https://9.9.9.9/h", "delivery": {"secret": "plain"}}, "whsec_"),
        ({"sink": "https://9.9.9.9/h", "delivery": {"secret": "whsec_!!"}}, "base64"),
        ({"sink": "https://9.9.9.9/h", "delivery": {"secret": "whsec_YWJj"}}, "24 to 64"),
        ({"sink": "https://9.9.9.9/h", "delivery": {"mode": "pigeon"}}, "mode"),
        ({"sink": "https://9.9.9.9/h", "delivery": {"extra": 1}}, "extra"),
        ({"sink": "https://9.9.9.9/h", "types": "nl.brp.x"}, "types"),
        (
            {"sink": "https://9.9.9.9/h", "protocolsettings": {"headers": {"webhook-id": "x"}}},
            "webhook-id",
        ),
        (
            {"sink": "https://9.9.9.9/h", "sinkcredential": {"credentialtype": "PLAIN"}},
            "sinkcredential",
        ),
        ([1, 2], "body"),
    ],
)
def test_invalid_bodies_name_the_field(api: httpx.Client, body: object, mention: str) -> None:
    problem = assert_problem(api.post("/subscriptions", json=body), 400, mention)
    assert problem["invalidParams"]


@pytest.mark.parametrize(
    ("filters", "pointer"),
    [
        ([{"sql": "type = "}], "/filters/0/sql"),
        ([{"exact": {"Type": "x"}}], "/filters/0/exact"),
        ([{"all": [{"prefix": {"type": "nl."}}, {"regex": {"type": "x"}}]}], "/filters/0/all/1"),
        ([{"exact": {"type": "x"}, "prefix": {"type": "y"}}], "/filters/0"),
        ([{"not": {"exact": {"type": 3}}}], "/filters/0/not/exact"),
    ],
)
def test_unsupported_or_invalid_filters_point_at_the_filter(
    api: httpx.Client, filters: list[object], pointer: str
) -> None:
    response = api.post("/subscriptions", json={"sink": "https://9.9.9.9/h", "filters": filters})
    problem = assert_problem(response, 400)
    assert problem["invalidParams"] == [{"name": pointer, "reason": problem["detail"]}]


def test_framework_errors_are_problems_too(shared_gateway: GatewayProcess) -> None:
    assert_problem(httpx.get(f"{shared_gateway.url}/v1/nowhere"), 404)
    assert_problem(httpx.put(f"{shared_gateway.url}/v1/subscriptions"), 405)
    assert httpx.get(f"{shared_gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{shared_gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"started": True, "store": True, "mappings": True}


def test_api_keys_are_required_when_configured(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, env={"DIGIBRIDGE_API_KEYS": "k3y-one,k3y-two"}).start()
    try:
        url = f"{gateway.url}/v1/subscriptions"
        missing = assert_problem(httpx.get(url), 401)
        assert missing["detail"] == "an API key is required: Authorization: Bearer <key>"
        assert httpx.get(url).headers["www-authenticate"].startswith("Bearer")
        assert_problem(httpx.get(url, headers={"Authorization": "Bearer nope"}), 401)
        assert httpx.get(url, headers={"Authorization": "Bearer k3y-two"}).status_code == 200
        # the SOAP endpoint and health are not part of the REST API's key scheme
        assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    finally:
        gateway.stop()

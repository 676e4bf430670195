"""Errors the framework itself gives (unknown route, wrong method, wrong media type, invalid
input, a crash) are RFC 9457 problem+json with `API-Version`, never FastAPI's `{"detail": …}`;
and the gateway keeps serving after each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from digibridge.app import create_app
from digibridge.config import Settings
from tests.support.gateway import GatewayProcess

PROBLEM = "application/problem+json"
SUBSCRIPTION = b'{"sink": "http://127.0.0.1:9/hook", "types": ["nl.brp.persoon-verhuisd"]}'


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["api-version"] == "1.0.0"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    return body


def test_an_unknown_route_is_a_404_problem(shared_gateway: GatewayProcess) -> None:
    body = _problem(httpx.get(f"{shared_gateway.url}/v1/nergens"), 404)
    assert body["title"] == "Not Found"
    assert body["detail"] == "there is no resource at /v1/nergens"
    _problem(httpx.delete(f"{shared_gateway.url}/v2/subscriptions"), 404)


def test_a_trailing_slash_is_a_404_not_a_redirect(shared_gateway: GatewayProcess) -> None:
    _problem(httpx.get(f"{shared_gateway.url}/v1/subscriptions/"), 404)
    _problem(httpx.get(f"{shared_gateway.url}/v1/event-types/"), 404)


def test_a_wrong_method_is_a_405_problem_that_names_every_allowed_method(
    shared_gateway: GatewayProcess,
) -> None:
    """`/v1/subscriptions` is served by two routes (list and create): Allow names both."""
    response = httpx.put(f"{shared_gateway.url}/v1/subscriptions", content=b"{}")
    body = _problem(response, 405)
    assert response.headers["allow"] == "GET, POST"
    assert body["detail"] == "PUT is not allowed here; allowed: GET, POST"
    response = httpx.post(f"{shared_gateway.url}/v1/openapi.json")
    _problem(response, 405)
    assert response.headers["allow"] == "GET"


def test_a_body_that_is_not_json_is_a_415_problem(shared_gateway: GatewayProcess) -> None:
    url = f"{shared_gateway.url}/v1/subscriptions"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = httpx.post(url, content=SUBSCRIPTION, headers={"Content-Type": content_type})
        body = _problem(response, 415)
        assert body["detail"] == (
            f"the request body must be application/json; got Content-Type {content_type!r}"
        )
    # No Content-Type at all, and a JSON look-alike (merge-patch is for PATCH only).
    response = httpx.post(url, content=SUBSCRIPTION, headers={"Content-Type": ""})
    assert _problem(response, 415)["detail"].endswith("got no Content-Type")
    response = httpx.post(
        url, content=SUBSCRIPTION, headers={"Content-Type": "application/merge-patch+json"}
    )
    _problem(response, 415)
    # PATCH: both JSON media types pass the check (then: no such subscription).
    item = f"{url}/00000000-0000-0000-0000-000000000000"
    response = httpx.patch(item, content=b"{}", headers={"Content-Type": "text/plain"})
    _problem(response, 415)
    assert response.headers["accept-patch"] == "application/json, application/merge-patch+json"
    for content_type in ("application/merge-patch+json", "application/json; charset=utf-8"):
        response = httpx.patch(item, content=b"{}", headers={"Content-Type": content_type})
        _problem(response, 404)


def test_a_post_without_a_body_needs_no_content_type(shared_gateway: GatewayProcess) -> None:
    """Action routes without a body (enable, retry) are not refused for a missing type."""
    response = httpx.post(
        f"{shared_gateway.url}/v1/subscriptions/00000000-0000-0000-0000-000000000000/enable"
    )
    _problem(response, 404)


def test_invalid_input_is_a_400_problem_that_points_at_the_member(
    shared_gateway: GatewayProcess,
) -> None:
    url = f"{shared_gateway.url}/v1/subscriptions"
    json_type = {"Content-Type": "application/json"}
    body = _problem(httpx.post(url, content=b'{"sink": ', headers=json_type), 400)
    assert body["invalidParams"][0]["reason"].startswith("JSON decode error")
    body = _problem(httpx.post(url, content=b"[1, 2]", headers=json_type), 400)
    assert body["invalidParams"][0]["name"] == "body"
    body = _problem(httpx.post(url, json={"sink": "http://127.0.0.1:9/", "colour": "blue"}), 400)
    assert [param["name"] for param in body["invalidParams"]] == ["colour"]
    body = _problem(httpx.post(url, json={"sink": "http://127.0.0.1:9/", "types": "x"}), 400)
    assert [param["name"] for param in body["invalidParams"]] == ["types"]
    # Found by schemathesis: values that end up in request headers must be ASCII (was a 500).
    credential = {"credentialtype": "ACCESSTOKEN", "accesstoken": "été"}
    body = _problem(
        httpx.post(url, json={"sink": "http://127.0.0.1:9/", "sinkcredential": credential}), 400
    )
    assert [param["name"] for param in body["invalidParams"]] == ["sinkcredential.accesstoken"]
    settings = {"headers": {"X-Team": "één"}}
    body = _problem(
        httpx.post(url, json={"sink": "http://127.0.0.1:9/", "protocolsettings": settings}), 400
    )
    assert [param["name"] for param in body["invalidParams"]] == ["protocolsettings.headers"]
    body = _problem(httpx.get(f"{shared_gateway.url}/v1/event-types/x/schema?form=vol"), 400)
    assert [param["name"] for param in body["invalidParams"]] == ["form"]


def test_the_gateway_keeps_serving_and_soap_keeps_its_faults(
    shared_gateway: GatewayProcess,
) -> None:
    """After every error above; the WUS endpoint still answers SOAP, not problem+json."""
    assert httpx.get(f"{shared_gateway.url}/readyz").status_code == 200
    fault = httpx.post(
        f"{shared_gateway.url}/wus/digilevering",
        content=b"<geen-soap/>",
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )
    assert fault.status_code == 500
    assert fault.headers["content-type"].startswith("text/xml")
    assert b"Fault" in fault.content


def test_an_unexpected_error_is_a_500_problem_with_api_version(tmp_path: Path) -> None:
    """A route that crashes, in the real app stack (no lifespan needed): the answer is a
    problem that gives nothing of the exception away."""
    app = create_app(Settings(store_url=f"sqlite:///{tmp_path / 'unused.db'}"))

    async def crash() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/v1/crash", crash, methods=["GET"])

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/v1/crash")

    response = asyncio.run(call())
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["api-version"] == "1.0.0"
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "an unexpected error occurred",
        "instance": "/v1/crash",
    }
    assert "secret" not in response.text

"""`GET /v1/openapi.json`: complete, shaped to the NL API Design Rules (Spectral with the ADR
ruleset finds nothing), and its `webhooks` describe exactly the events digibridge sends."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from digibridge.app import create_app
from digibridge.config import Settings
from digibridge.events.builtin import BUILTIN_EVENT_TYPES
from digibridge.events.notices import subscription_disabled, subscription_test
from digibridge.mapping.engine import MappingSet
from digibridge.store.types import DeliverySettings, Subscription
from digibridge.wus.digilevering import read_levering
from tests.support.gateway import GatewayProcess
from tests.support.npx import npx
from tests.support.soap import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
RULESET = ROOT / "tests" / "conformance" / "adr-ruleset.yaml"
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document(shared_gateway: GatewayProcess) -> dict[str, Any]:
    response = httpx.get(f"{shared_gateway.url}/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["api-version"] == "1.0.0"
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _resolve(document: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in value:
        node: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        value = node
    return value


def test_the_document_names_its_version_server_contact_and_security(
    document: dict[str, Any],
) -> None:
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["version"] == "1.0.0"
    assert set(document["info"]["contact"]) == {"name", "email", "url"}
    assert document["servers"] == [{"url": "/v1", "description": "this gateway, API v1"}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    assert schemes["oauth2"]["bearerFormat"] == "JWT"
    assert {"apiKey": []} in document["security"]
    assert {"oauth2": []} in document["security"]


def test_every_v1_route_is_in_the_document_and_nothing_else() -> None:
    """Compared with the app's own routes: a route another part adds is documented too."""
    app = create_app(Settings(store_url="sqlite:///unused.db"))
    routes = {
        (context.path_format, method.lower())
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and context.original_route.include_in_schema
        and context.path_format
        and context.path_format.startswith("/v1/")
        for method in context.original_route.methods
    }
    document = app.state.openapi.document(app.state.runtime.current_mappings())
    documented = {(f"/v1{path}", method) for path, method, _ in _operations(document)}
    assert documented == routes
    assert ("/v1/subscriptions", "post") in documented
    assert not any(path.startswith(("/wus", "/healthz")) for path in document["paths"])


def test_every_response_has_api_version_and_every_error_is_a_problem(
    document: dict[str, Any],
) -> None:
    operation_ids = []
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        operation_ids.append(operation["operationId"])
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation["operationId"]), where
        assert operation["tags"], where
        responses = operation["responses"]
        assert "422" not in responses, where  # validation errors are 400s
        for status, declared in responses.items():
            response = _resolve(document, declared)
            assert "API-Version" in response["headers"], f"{where} {status}"
            if status.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], where
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, where
        assert {"429", "500"} <= set(responses), where
        if path.startswith("/event-types"):  # the catalogue is public
            assert operation["security"] == [], where
            assert "401" not in responses, where
        else:
            # A key or a token, holding the scope of the route family (api/auth.py).
            assert operation["security"], where
            assert {"401", "403"} <= set(responses), where
        if method in ("post", "put", "patch") or operation.get("parameters"):
            assert "400" in responses, where
        if "requestBody" in operation:
            assert "415" in responses, where
        if "{" in path:
            assert "404" in responses, where
    assert len(operation_ids) == len(set(operation_ids))
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "invalidParams"} <= set(
        problem["properties"]
    )
    for name in document["components"]["schemas"]:
        assert re.fullmatch(r"([A-Z][a-z0-9]+)+", name), name


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("get", "/subscriptions", "subscriptions:read"),
        ("post", "/subscriptions", "subscriptions:write"),
        ("patch", "/subscriptions/{subscription_id}", "subscriptions:write"),
        ("get", "/events", "events:read"),
        ("get", "/events/stream", "events:read"),
        ("get", "/deliveries", "subscriptions:read"),
        ("post", "/admin/reload", "deliveries:admin"),
        ("post", "/terugmeldingen", "terugmeldingen:write"),
    ],
)
def test_each_operation_names_the_scope_it_needs(
    document: dict[str, Any], method: str, path: str, scope: str
) -> None:
    """What the routes' scope dependencies demand (api/auth.py), per security scheme."""
    operation = document["paths"][path][method]
    assert operation["security"] == [{"apiKey": [scope]}, {"oauth2": [scope]}]


def test_every_secured_operation_names_a_scope(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        security = operation.get("security")
        assert security is not None, f"{method} {path} falls back to the global requirement"
        assert all(len(scopes) == 1 for requirement in security for scopes in requirement.values())


def test_there_is_one_webhook_per_event_type(
    document: dict[str, Any], shared_gateway: GatewayProcess
) -> None:
    catalogue = httpx.get(f"{shared_gateway.url}/v1/event-types").json()
    expected = {entry["type"] for entry in catalogue} | {t.type for t in BUILTIN_EVENT_TYPES}
    assert set(document["webhooks"]) == expected
    move = document["webhooks"]["nl.brp.persoon-verhuisd"]["post"]
    headers = {_resolve(document, p)["name"] for p in move["parameters"]}
    assert headers == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "WebHook-Request-Origin",
    }
    assert set(move["responses"]) == {"2XX", "410", "429", "default"}
    assert "Retry-After" in move["responses"]["429"]["headers"]
    assert set(move["requestBody"]["content"]) == {
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    }
    # An LO GBA date may be partial: a format of its own, not `date` (design rules want one).
    born = document["components"]["schemas"]["NlBrpPersoonIngeschrevenData"]
    assert born["properties"]["geboorte"]["properties"]["datum"]["format"] == "partial-date"


def _validator(document: dict[str, Any], webhook: str) -> jsonschema.Draft202012Validator:
    """A validator for the structured-mode body of one webhook, its $refs resolved in the
    document."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:openapi", resource)
    body = document["webhooks"][webhook]["post"]["requestBody"]["content"]
    ref = body["application/cloudevents+json"]["schema"]["$ref"]
    return jsonschema.Draft202012Validator({"$ref": f"urn:openapi{ref}"}, registry=registry)


def test_the_events_of_every_sample_match_their_webhook(document: dict[str, Any]) -> None:
    """Both forms of every sample's events, and digibridge's own notices, as the webhook
    request schema describes them; a wrong type or missing data does not pass."""
    mappings = MappingSet.load(ROOT / "mappings", dataschema_base="https://gw.example")
    checked = set()
    for sample in sorted(SAMPLES.glob("*.xml")):
        for event in mappings.map(read_levering(sample.read_bytes())):
            assert event.informatiearm is not None
            validator = _validator(document, event.type)
            for form in (event, event.informatiearm):
                validator.validate(form.to_json_dict())
            checked.add(event.type)
            wrong = {**event.to_json_dict(), "type": "nl.brp.iets-anders"}
            assert not validator.is_valid(wrong)
            assert not validator.is_valid({**event.to_json_dict(), "data": {}})
    assert len(checked) >= 10
    subscription = Subscription(
        id="abc",
        sink="https://user:pw@sink.example/hook?token=x",
        delivery=DeliverySettings(secret="whsec_x"),
        created_at=datetime.now(UTC),
    )
    for notice in (
        subscription_disabled(subscription, "410 Gone from sink", datetime.now(UTC)),
        subscription_test(subscription, datetime.now(UTC)),
    ):
        _validator(document, notice.type).validate(notice.to_json_dict())


def test_swagger_ui_shows_the_document(shared_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{shared_gateway.url}/v1/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/v1/openapi.json" in response.text


def test_the_webhooks_follow_a_reload_and_the_document_needs_no_key(tmp_path: Path) -> None:
    mappings = tmp_path / "bundle" / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    shutil.copytree(SAMPLES, tmp_path / "bundle" / "samples")
    gateway = GatewayProcess(
        tmp_path / "gateway",
        env={"DIGIBRIDGE_MAPPINGS": str(mappings), "DIGIBRIDGE_API_KEYS": "sesam"},
    ).start()
    try:
        before = httpx.get(f"{gateway.url}/v1/openapi.json")
        assert before.status_code == 200
        assert "nl.brk.eigendom-overgedragen" in before.json()["webhooks"]
        (mappings / "brk.yaml").unlink()
        for leftover in (mappings.parent / "samples").glob("brk-*"):
            leftover.unlink()
        reload = httpx.post(
            f"{gateway.url}/v1/admin/reload", headers={"Authorization": "Bearer sesam"}
        )
        assert reload.status_code == 200, reload.text
        after = httpx.get(f"{gateway.url}/v1/openapi.json").json()
        assert "nl.brk.eigendom-overgedragen" not in after["webhooks"]
        assert set(before.json()["webhooks"]) - set(after["webhooks"]) == {
            "nl.brk.eigendom-overgedragen"
        }
        assert "NlBrkEigendomOvergedragenData" not in after["components"]["schemas"]
        assert after["paths"] == before.json()["paths"]
    finally:
        gateway.stop()


def test_spectral_with_the_adr_ruleset_finds_nothing(
    document: dict[str, Any], tmp_path: Path
) -> None:
    """Zero errors and zero warnings with the NL API Design Rules ruleset (Spectral 6)."""
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    output = tmp_path / "findings.json"
    result = npx(
        "@stoplight/spectral-cli@6",
        "lint",
        "-r",
        str(RULESET),
        str(path),
        "-f",
        "json",
        "-o",
        str(output),
        "--fail-severity",
        "warn",
    )
    assert output.exists(), result.stdout + result.stderr
    findings = json.loads(output.read_text())
    readable = [
        f"{('error', 'warn', 'info', 'hint')[f['severity']]} {f['code']} "
        f"{'.'.join(map(str, f['path']))}: {f['message']}"
        for f in findings
    ]
    assert readable == [], "\n".join(readable)
    assert result.returncode == 0, result.stdout + result.stderr

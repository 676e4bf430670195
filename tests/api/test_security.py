"""REST API access on a running gateway: API keys with names and scopes, OAuth 2.0 JWT access
tokens checked against a real JWKS served on loopback, scopes per route family, owner
isolation of subscriptions and deliveries, and the per-consumer rate limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from digibridge.delivery.signing import generate_secret
from tests.support.gateway import GatewayProcess
from tests.support.jwks import jwk, jwks
from tests.support.net import wait_until
from tests.support.sinks import ScriptedSink
from tests.support.soap import post_levering, sample, with_kenmerk

PROBLEM = "application/problem+json"
ISSUER = "https://idp.test.example/realms/digibridge"
AUDIENCE = "digibridge-test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROTATED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
KEYS_FILE = """
[[keys]]
name = "gemeente-a"
key = "key-of-gemeente-a-0001"
scopes = ["subscriptions:read", "subscriptions:write", "events:read"]

[[keys]]
name = "gemeente-b"
key = "key-of-gemeente-b-0002"
scopes = ["subscriptions:read", "subscriptions:write"]

[[keys]]
name = "beheer"
sha256 = "{beheer}"
scopes = ["deliveries:admin", "subscriptions:read", "subscriptions:write"]

[[keys]]
name = "lezer"
key = "key-of-lezer-only-0003"
scopes = ["subscriptions:read"]

[[keys]]
name = "traag"
key = "key-of-traag-slow-0004"
scopes = ["subscriptions:read"]
rate = 1
burst = 3
"""
BEHEER = "key-of-beheer-admin-0005"


FIRST_JWKS = jwks(
    jwk(RSA_KEY.public_key(), "rsa-1", "RS256"), jwk(EC_KEY.public_key(), "ec-1", "ES256")
)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "client_id": "portaal-rsa",
        "scope": "subscriptions:read subscriptions:write events:read",
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def token(key: Any = RSA_KEY, kid: str = "rsa-1", alg: str = "RS256", **changes: Any) -> str:
    return jwt.encode(claims(**changes), key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg: str, kid: str = "rsa-1") -> str:
    """A token whose header claims `alg`, with the signing input only (no signature yet)."""
    header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims()).encode())}"


def crafted(header: dict[str, Any], payload: bytes = b"{}") -> str:
    """A token with any header and payload, and a signature that means nothing."""
    return f"{b64(json.dumps(header).encode())}.{b64(payload)}.{b64(b'signature')}"


def hs256_with_the_public_key() -> str:
    """The classic confusion attack: HMAC keyed with the issuer's public key (PEM)."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned("HS256")
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture(scope="module")
def issuer() -> Iterator[ScriptedSink]:
    """The identity provider's JWKS endpoint, on loopback."""
    server = ScriptedSink(default=FIRST_JWKS)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    issuer: ScriptedSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("secured")
    keys = folder / "keys.toml"
    keys.write_text(KEYS_FILE.format(beheer=hashlib.sha256(BEHEER.encode()).hexdigest()))
    process = GatewayProcess(
        folder / "gateway",
        env={
            "DIGIBRIDGE_API_KEYS": "bare-operator-key,named:key-of-named-0006",
            "DIGIBRIDGE_API_KEYS_FILE": str(keys),
            "DIGIBRIDGE_OAUTH_ISSUER": ISSUER,
            "DIGIBRIDGE_OAUTH_AUDIENCE": AUDIENCE,
            "DIGIBRIDGE_OAUTH_JWKS_URL": issuer.url("/jwks"),
            "DIGIBRIDGE_OAUTH_JWKS_REFRESH_INTERVAL": "0.3",
            "DIGIBRIDGE_OAUTH_LEEWAY": "5",
        },
    ).start()
    yield process
    process.stop()


@pytest.fixture
def api(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{gateway.url}/v1", timeout=10) as client:
        yield client


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["api-version"]
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def subscribe(api: httpx.Client, credential: str, sink: str) -> str:
    body = {"sink": sink, "delivery": {"secret": generate_secret(), "handshake": "none"}}
    created = api.post("/subscriptions", json=body, headers=bearer(credential))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


# -- who the caller is ---------------------------------------------------------------------


def test_without_credentials_the_api_answers_401_with_a_bearer_challenge(
    api: httpx.Client,
) -> None:
    missing = api.get("/subscriptions")
    body = problem_of(missing, 401)
    assert body["detail"] == (
        "an API key or access token is required: Authorization: Bearer <key or token>"
    )
    # RFC 6750 §3.1: no error code when no credentials were given at all
    assert missing.headers["www-authenticate"] == 'Bearer realm="digibridge"'
    problem_of(api.get("/subscriptions", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401)


def test_credentials_are_checked_before_the_body_is_read(api: httpx.Client) -> None:
    """An unknown caller learns nothing from the validation of what it sent."""
    problem_of(api.post("/subscriptions", content=b"{not json", headers=bearer("nope")), 401)
    problem_of(api.post("/subscriptions", content=b"{not json"), 401)


def test_the_catalogue_and_the_documents_are_public(
    gateway: GatewayProcess, api: httpx.Client
) -> None:
    assert api.get("/event-types").status_code == 200
    assert api.get("/openapi.json").status_code == 200
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("key", "consumer_scopes_only"),
    [("key-of-gemeente-a-0001", True), ("key-of-named-0006", True), ("bare-operator-key", False)],
)
def test_api_keys_identify_their_consumer(
    api: httpx.Client, receiver: ScriptedSink, key: str, consumer_scopes_only: bool
) -> None:
    sub = subscribe(api, key, receiver.url("/by-key"))
    assert api.get(f"/subscriptions/{sub}", headers=bearer(key)).status_code == 200
    # only an operator (a bare key: every scope) may reload the mappings
    reload = api.post("/admin/reload", headers=bearer(key))
    assert reload.status_code == (403 if consumer_scopes_only else 200), reload.text


@pytest.mark.parametrize(
    ("credential", "description"),
    [
        ("not-a-key", "unknown API key"),
        (token(exp=int(time.time()) - 60), "the token has expired"),
        (token(iss="https://evil.example"), "the token is from another issuer"),
        (token(aud="someone-else"), "the token is meant for another audience"),
        (
            token(nbf=int(time.time()) + 600),
            "the token is not valid yet (nbf or iat in the future)",
        ),
        (token(exp=None), "the token has no exp claim"),
        (token(key=ROTATED_KEY), "the token's signature does not verify"),
        (token(key=EC_KEY, kid="rsa-1", alg="ES256"), "the token is signed with a key"),
        (unsigned("none") + ".", "tokens signed with none are not accepted"),
        (hs256_with_the_public_key(), "tokens signed with HS256 are not accepted"),
        (token(client_id=None, sub=None), "the token names no client"),
        ("a.b.c", "the token is not a JWT"),
        (crafted({"alg": ["RS256"], "kid": "rsa-1"}), "tokens signed with that algorithm"),
        (crafted({"alg": "RS256", "kid": "rsa-1"}, b"not json"), "the token's signature"),
        (token(exp="tomorrow"), "the token is not valid"),
        ("x" * 6000, "unknown API key"),
    ],
    ids=[
        "unknown-key",
        "expired",
        "wrong-issuer",
        "wrong-audience",
        "not-yet-valid",
        "no-exp",
        "bad-signature",
        "key-of-another-algorithm",
        "alg-none",
        "hs256-public-key",
        "no-client",
        "garbage",
        "alg-a-list",
        "payload-not-json",
        "exp-not-a-number",
        "oversize",
    ],
)
def test_invalid_credentials_get_401_invalid_token(
    api: httpx.Client, credential: str, description: str
) -> None:
    refused = api.get("/subscriptions", headers=bearer(credential))
    body = problem_of(refused, 401)
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="digibridge", error="invalid_token", ')
    assert f'error_description="{description}' in challenge
    if description == "unknown API key":
        assert body["detail"] == "the API key is not valid"
    else:
        assert body["detail"].startswith(f"the access token is not valid: {description}")


def test_valid_rs256_and_es256_tokens_identify_their_client(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    rsa_token = token()
    sub = subscribe(api, rsa_token, receiver.url("/by-token"))
    # azp stands in for client_id; scp (a list) for scope
    ec_token = token(
        key=EC_KEY,
        kid="ec-1",
        alg="ES256",
        client_id=None,
        azp="portaal-ec",
        scope=None,
        scp=["subscriptions:read"],
    )
    listed = api.get("/subscriptions", headers=bearer(ec_token))
    assert listed.status_code == 200, listed.text
    assert sub not in listed.text  # another client's subscription
    assert api.get(f"/subscriptions/{sub}", headers=bearer(rsa_token)).status_code == 200
    problem_of(api.get(f"/subscriptions/{sub}", headers=bearer(ec_token)), 404)


def test_a_rotated_signing_key_is_fetched_once_it_is_published(
    api: httpx.Client, issuer: ScriptedSink
) -> None:
    fresh = token(key=ROTATED_KEY, kid="rsa-2")
    before = len(issuer.received("/jwks"))
    problem_of(api.get("/subscriptions", headers=bearer(fresh)), 401)
    # a burst of tokens with unknown kids refreshes the JWKS at most once per interval
    for _ in range(5):
        problem_of(api.get("/subscriptions", headers=bearer(fresh)), 401)
    assert len(issuer.received("/jwks")) - before <= 2
    issuer.default = jwks(
        jwk(RSA_KEY.public_key(), "rsa-1", "RS256"),
        jwk(EC_KEY.public_key(), "ec-1", "ES256"),
        jwk(ROTATED_KEY.public_key(), "rsa-2", "RS256"),
    )
    started = time.monotonic()
    wait_until(
        lambda: api.get("/subscriptions", headers=bearer(fresh)).status_code == 200,
        interval=0.1,
        what="the rotated key accepted",
    )
    assert api.get("/subscriptions", headers=bearer(token())).status_code == 200
    fetched = len(issuer.received("/jwks")) - before
    assert fetched <= 3 + (time.monotonic() - started) / 0.3


def test_the_bearer_scheme_is_case_insensitive(api: httpx.Client) -> None:
    for header in ("bearer key-of-lezer-only-0003", "BEARER  key-of-lezer-only-0003"):
        assert api.get("/subscriptions", headers={"Authorization": header}).status_code == 200
    problem_of(api.get("/subscriptions", headers={"Authorization": "Bearer"}), 401)
    problem_of(api.get("/subscriptions", headers={"Authorization": "Bearer a b"}), 401)


# -- scopes per route family -------------------------------------------------------------


def test_a_caller_without_the_scope_gets_403_insufficient_scope(api: httpx.Client) -> None:
    reader = token(scope="subscriptions:read")
    refused = api.post(
        "/subscriptions", json={"sink": "http://127.0.0.1:9/x"}, headers=bearer(reader)
    )
    body = problem_of(refused, 403)
    assert body["detail"] == (
        "this needs the scope subscriptions:write, which portaal-rsa has not been granted"
    )
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="digibridge", error="insufficient_scope", '
        'error_description="the scope subscriptions:write is required", '
        'scope="subscriptions:write"'
    )
    assert api.get("/subscriptions", headers=bearer(reader)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/subscriptions", "subscriptions:write"),
        ("DELETE", "/subscriptions/x", "subscriptions:write"),
        ("POST", "/subscriptions/x/replay", "subscriptions:write"),
        ("POST", "/deliveries/x/retry", "subscriptions:write"),
        ("GET", "/events/x", "events:read"),
        ("POST", "/admin/reload", "deliveries:admin"),
    ],
)
def test_each_route_family_demands_its_scope(
    api: httpx.Client, method: str, path: str, scope: str
) -> None:
    refused = api.request(method, path, headers=bearer("key-of-lezer-only-0003"), json={})
    problem_of(refused, 403)
    assert refused.headers["www-authenticate"].endswith(f'scope="{scope}"')


def test_events_need_events_read(api: httpx.Client) -> None:
    problem_of(api.get("/events/unknown", headers=bearer("key-of-gemeente-a-0001")), 404)
    problem_of(api.get("/events/unknown", headers=bearer("key-of-gemeente-b-0002")), 403)


# -- owner isolation -----------------------------------------------------------------------


A = bearer("key-of-gemeente-a-0001")
B = bearer("key-of-gemeente-b-0002")
ADMIN = bearer(BEHEER)


def test_a_consumer_cannot_touch_another_consumers_subscription(
    api: httpx.Client, gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    theirs = subscribe(api, "key-of-gemeente-a-0001", receiver.url("/of-a"))
    mine = subscribe(api, "key-of-gemeente-b-0002", receiver.url("/of-b"))
    post_levering(gateway.wus_url, with_kenmerk(sample("brp-verhuizing.xml")))

    def deliveries(headers: dict[str, str], **query: str) -> list[dict[str, Any]]:
        page = api.get("/deliveries", params=query, headers=headers)
        assert page.status_code == 200, page.text
        found: list[dict[str, Any]] = page.json()["deliveries"]
        return found

    wait_until(lambda: deliveries(A, subscription=theirs), what="a delivery for A")
    [delivery] = deliveries(A, subscription=theirs)
    replace = {"sink": receiver.url("/stolen"), "delivery": {"handshake": "none"}}
    for refused in (
        api.get(f"/subscriptions/{theirs}", headers=B),
        api.put(f"/subscriptions/{theirs}", json=replace, headers=B),
        api.patch(
            f"/subscriptions/{theirs}",
            json={"types": ["x.y"]},
            headers={**B, "Content-Type": "application/merge-patch+json"},
        ),
        api.delete(f"/subscriptions/{theirs}", headers=B),
        api.post(f"/subscriptions/{theirs}/test", headers=B),
        api.post(f"/subscriptions/{theirs}/replay", json={}, headers=B),
        api.post(f"/subscriptions/{theirs}/enable", headers=B),
        api.post(f"/subscriptions/{theirs}/rotate-secret", json={}, headers=B),
        api.get(f"/deliveries/{delivery['id']}", headers=B),
        api.post(f"/deliveries/{delivery['id']}/retry", headers=B),
    ):
        body = problem_of(refused, 404)
        assert "does not exist" in body["detail"]
    # B's log holds only B's deliveries, even when it asks for A's subscription
    assert {d["subscriptionId"] for d in deliveries(B)} == {mine}
    assert deliveries(B, subscription=theirs) == []
    assert all(sub["id"] != theirs for sub in _subscriptions(api, B))
    # A's subscription is untouched, and A and the admin see it and its delivery
    assert api.get(f"/subscriptions/{theirs}", headers=A).json()["sink"] == receiver.url("/of-a")
    assert api.get(f"/deliveries/{delivery['id']}", headers=A).status_code == 200
    assert api.get(f"/deliveries/{delivery['id']}", headers=ADMIN).status_code == 200
    assert {theirs, mine} <= {d["subscriptionId"] for d in deliveries(ADMIN)}
    assert {theirs, mine} <= {sub["id"] for sub in _subscriptions(api, ADMIN)}
    replayed = api.post(f"/subscriptions/{theirs}/replay", json={}, headers=ADMIN)
    assert replayed.status_code == 202, replayed.text
    assert api.delete(f"/subscriptions/{theirs}", headers=ADMIN).status_code == 204


def _subscriptions(api: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    listed = api.get("/subscriptions", headers=headers)
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()
    return items


# -- rate limit ----------------------------------------------------------------------------


def test_a_consumer_over_its_rate_gets_429_then_recovers(
    api: httpx.Client, gateway: GatewayProcess
) -> None:
    slow = bearer("key-of-traag-slow-0004")
    answers = [api.get("/subscriptions", headers=slow).status_code for _ in range(4)]
    assert answers[:3] == [200, 200, 200]
    assert answers[3] == 429
    limited = api.get("/subscriptions", headers=slow)
    body = problem_of(limited, 429)
    assert limited.headers["retry-after"] == "1"
    assert body["detail"].startswith("too many requests: at most 1 per second (bursts of 3)")
    # others are not affected, and health is never limited
    assert api.get("/subscriptions", headers=A).status_code == 200
    assert all(httpx.get(f"{gateway.url}/healthz").status_code == 200 for _ in range(5))
    wait_until(
        lambda: api.get("/subscriptions", headers=slow).status_code == 200,
        timeout=5,
        interval=0.25,
        what="the bucket refilled",
    )
    assert gateway.alive()


def test_the_keys_file_never_reaches_the_log(gateway: GatewayProcess) -> None:
    log = gateway.log()
    for secret in ("key-of-gemeente-a-0001", BEHEER, "bare-operator-key", "key-of-named-0006"):
        assert secret not in log


def test_a_bad_keys_file_stops_the_start_with_exit_2_naming_the_problem(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "x"\nkey = "short"\n')
    process = GatewayProcess(tmp_path / "gateway", env={"DIGIBRIDGE_API_KEYS_FILE": str(keys)})
    with pytest.raises(AssertionError, match="at least 16 characters"):
        process.start(timeout=20)
    assert process.process is not None
    assert process.process.returncode == 2

"""The JWKS cache against a real JWKS endpoint on loopback: loaded once, refreshed for an
unknown `kid` at most once per interval, kept while the issuer is down, and only usable
signature keys of the accepted algorithms taken in."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.requests import Request

from digibridge.api.api_keys import KeyRing
from digibridge.api.auth import Authenticator
from digibridge.api.jwt_tokens import (
    MAX_JWKS_BYTES,
    JwksCache,
    KeysUnavailable,
    TokenVerifier,
    file_loader,
    url_loader,
)
from digibridge.api.problems import Problem
from digibridge.api.ratelimit import Rate
from tests.support.jwks import jwk, jwks
from tests.support.sinks import Reply, ScriptedSink

ALGORITHMS = frozenset({"RS256", "ES256"})
RSA_PUBLIC = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
EC_PUBLIC = ec.generate_private_key(ec.SECP256R1()).public_key()


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[ScriptedSink]:
    server = ScriptedSink(default=jwks(jwk(RSA_PUBLIC, "rsa-1", "RS256")))
    server.start()
    yield server
    server.stop()


def cache(idp: ScriptedSink, ticks: Ticks, **options: float) -> JwksCache:
    settings = {"max_age": 300.0, "refresh_interval": 30.0, **options}
    return JwksCache(
        url_loader(idp.url("/jwks")),
        algorithms=ALGORITHMS,
        monotonic=ticks,
        max_age=settings["max_age"],
        refresh_interval=settings["refresh_interval"],
    )


def lookup(keys: JwksCache, kid: str | None, alg: str = "RS256") -> jwt.PyJWK | None:
    return asyncio.run(keys.key(kid, alg))


def test_keys_load_once_and_an_unknown_kid_refreshes_at_most_once_per_interval(
    idp: ScriptedSink,
) -> None:
    ticks = Ticks()
    keys = cache(idp, ticks)
    assert lookup(keys, "rsa-1") is not None
    assert lookup(keys, "rsa-1") is not None
    assert keys.loads == 1
    # the issuer rotates; the first unknown kid is too soon after the load to fetch again
    idp.default = jwks(jwk(RSA_PUBLIC, "rsa-1", "RS256"), jwk(EC_PUBLIC, "ec-2", "ES256"))
    assert lookup(keys, "ec-2", "ES256") is None
    for _ in range(20):
        assert lookup(keys, "made-up", "RS256") is None
    assert keys.loads == 1
    ticks.now += 30
    found = lookup(keys, "ec-2", "ES256")
    assert found is not None
    assert found.algorithm_name == "ES256"
    assert keys.loads == 2
    assert len(idp.received("/jwks")) == 2


def test_the_set_is_reloaded_after_its_max_age(idp: ScriptedSink) -> None:
    ticks = Ticks()
    keys = cache(idp, ticks, max_age=60)
    assert lookup(keys, "rsa-1") is not None
    idp.default = jwks(jwk(EC_PUBLIC, "ec-9", "ES256"))  # rsa-1 revoked
    ticks.now += 61
    assert lookup(keys, "rsa-1") is None
    assert keys.loads == 2


def test_a_key_answers_only_for_its_own_algorithm(idp: ScriptedSink) -> None:
    keys = cache(idp, Ticks())
    assert lookup(keys, "rsa-1", "ES256") is None
    # without a kid, the one key of the token's algorithm
    assert lookup(keys, None, "RS256") is not None


def test_unusable_keys_are_left_out(idp: ScriptedSink) -> None:
    idp.default = jwks(
        {**jwk(RSA_PUBLIC, "enc", "RS256"), "use": "enc"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
        {**jwk(RSA_PUBLIC, "rs512", "RS256"), "alg": "RS512"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {**jwk(EC_PUBLIC, "ec-no-alg", "ES256"), "alg": None},
        "not-an-object",
    )
    keys = cache(idp, Ticks())
    for kid in ("enc", "hmac", "rs512", "broken"):
        assert lookup(keys, kid, "RS256") is None
    assert lookup(keys, "hmac", "HS256") is None
    assert lookup(keys, "ec-no-alg", "ES256") is not None


@pytest.mark.parametrize(
    "reply",
    [
        Reply(503),
        Reply(302, {"location": "https://elsewhere.example/jwks"}),
        Reply(200, body=b"<html>"),
        Reply(200, body=b'{"keys": {}}'),
        Reply(200, body=b'{"keys": [' + b" " * MAX_JWKS_BYTES + b"]}"),
    ],
    ids=["unavailable", "redirect", "not-json", "no-keys-list", "oversize"],
)
def test_without_keys_a_failed_load_is_keys_unavailable(idp: ScriptedSink, reply: Reply) -> None:
    idp.default = reply
    with pytest.raises(KeysUnavailable):
        lookup(cache(idp, Ticks()), "rsa-1")


def test_the_last_keys_stay_in_use_while_the_issuer_is_down(idp: ScriptedSink) -> None:
    ticks = Ticks()
    keys = cache(idp, ticks, max_age=60)
    assert lookup(keys, "rsa-1") is not None
    idp.default = Reply(500)
    ticks.now += 61
    assert lookup(keys, "rsa-1") is not None
    assert keys.loads == 2


def test_a_jwks_file_is_read(tmp_path: Path) -> None:
    file = tmp_path / "jwks.json"
    file.write_text(json.dumps({"keys": [jwk(EC_PUBLIC, "ec-1", "ES256")]}))
    keys = JwksCache(file_loader(file), algorithms=ALGORITHMS, max_age=300, refresh_interval=0)
    assert asyncio.run(keys.key("ec-1", "ES256")) is not None
    missing = JwksCache(
        file_loader(tmp_path / "absent.json"), algorithms=ALGORITHMS, max_age=1, refresh_interval=0
    )
    with pytest.raises(KeysUnavailable):
        asyncio.run(missing.key("ec-1", "ES256"))


def test_tokens_cannot_be_checked_while_the_keys_are_unavailable(idp: ScriptedSink) -> None:
    """503 with Retry-After: the caller's token may be fine; asking for a new one won't help."""
    idp.default = Reply(503)
    verifier = TokenVerifier(
        issuer="https://idp.example",
        audience="digibridge",
        algorithms=ALGORITHMS,
        leeway=0,
        keys=cache(idp, Ticks()),
    )
    auth = Authenticator(keys=KeyRing([]), tokens=verifier, rate=Rate(10, 10))
    header = json.dumps({"alg": "RS256", "kid": "rsa-1"}).encode()
    credential = f"{base64.urlsafe_b64encode(header).decode().rstrip('=')}.e30.c2ln"
    request = Request(
        {
            "type": "http",
            "client": ("192.0.2.1", 1),
            "path": "/v1/subscriptions",
            "headers": [(b"authorization", f"Bearer {credential}".encode())],
        }
    )
    with pytest.raises(Problem) as problem:
        asyncio.run(auth.authenticate(request))
    assert problem.value.status == 503
    assert problem.value.headers == {"Retry-After": "30"}


def test_with_oauth_only_a_credential_that_is_no_jwt_is_an_invalid_token(
    idp: ScriptedSink,
) -> None:
    verifier = TokenVerifier(
        issuer="https://idp.example",
        audience="digibridge",
        algorithms=ALGORITHMS,
        leeway=0,
        keys=cache(idp, Ticks()),
    )
    auth = Authenticator(keys=KeyRing([]), tokens=verifier, rate=Rate(10, 10))
    request = Request(
        {
            "type": "http",
            "client": ("192.0.2.1", 1),
            "path": "/v1/subscriptions",
            "headers": [(b"authorization", b"Bearer plain-words")],
        }
    )
    with pytest.raises(Problem) as problem:
        asyncio.run(auth.authenticate(request))
    assert problem.value.status == 401
    assert problem.value.detail == "the access token is not valid: the token is not a JWT"
    assert idp.received() == []

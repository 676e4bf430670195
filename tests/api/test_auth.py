"""Who the caller is: loopback without credentials, API keys (bare, named, from a file), the
settings that configure OAuth, and the token buckets of the rate limit."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from starlette.requests import Request

from digibridge.api.api_keys import KeyRing, fingerprint
from digibridge.api.auth import (
    ADMIN_SCOPE,
    ALL_SCOPES,
    CONSUMER_SCOPES,
    LOCAL_CONSUMER,
    Authenticator,
    ConsumerUnknown,
    consumer_of,
)
from digibridge.api.consumers import Consumer
from digibridge.api.problems import Problem
from digibridge.api.ratelimit import Rate, RateLimiter, retry_after
from digibridge.config import ConfigError, load_settings

RATE = Rate(per_second=100, burst=100)


def request_from(host: str, authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "client": (host, 50000), "headers": headers, "path": "/v1/x"})


def authenticator(*entries: str, file: Path | None = None, rate: Rate = RATE) -> Authenticator:
    return Authenticator(keys=KeyRing.configured(list(entries), file, rate), tokens=None, rate=rate)


def identify(auth: Authenticator, request: Request) -> Consumer:
    return asyncio.run(auth.authenticate(request))


def refused(auth: Authenticator, request: Request) -> Problem:
    with pytest.raises(Problem) as problem:
        identify(auth, request)
    return problem.value


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_is_the_local_consumer_without_keys(host: str) -> None:
    request = request_from(host)
    assert identify(authenticator(), request) is LOCAL_CONSUMER
    assert consumer_of(request) is LOCAL_CONSUMER


@pytest.mark.parametrize("host", ["192.0.2.10", "2001:db8::1", "not-an-address"])
def test_other_hosts_are_refused_without_keys(host: str) -> None:
    problem = refused(authenticator(), request_from(host))
    assert problem.status == 403
    assert "DIGIBRIDGE_API_KEYS" in problem.detail


def test_with_keys_a_remote_caller_with_a_key_is_allowed() -> None:
    auth = authenticator("k0", "k1")
    assert identify(auth, request_from("192.0.2.10", "Bearer k1")).id == fingerprint("k1")
    basic = refused(auth, request_from("127.0.0.1", "Basic k1"))
    assert basic.status == 401
    assert basic.headers == {"WWW-Authenticate": 'Bearer realm="digibridge"'}


def test_a_wrong_key_is_an_invalid_token() -> None:
    problem = refused(authenticator("k0"), request_from("192.0.2.10", "Bearer k9"))
    assert problem.status == 401
    assert problem.headers["WWW-Authenticate"] == (
        'Bearer realm="digibridge", error="invalid_token", error_description="unknown API key"'
    )


def test_a_bare_key_is_an_operator_and_a_named_key_a_consumer() -> None:
    auth = authenticator("old-style-key", "gemeente-a:secret-of-a")
    operator = identify(auth, request_from("192.0.2.1", "Bearer old-style-key"))
    assert operator.id == "key-" + hashlib.sha256(b"old-style-key").hexdigest()[:12]
    assert operator.scopes == ALL_SCOPES
    named = identify(auth, request_from("192.0.2.1", "Bearer secret-of-a"))
    assert named == Consumer("gemeente-a", CONSUMER_SCOPES)
    assert not named.admin
    assert named.owns("gemeente-a")
    assert not named.owns("gemeente-b")
    assert not named.owns(None)
    assert operator.owns("gemeente-b")
    assert operator.owns(None)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("bad name:SECRET-VALUE", "'bad name'"),
        ("name:", "'name'"),
        ("key-0123456789ab:SECRET-VALUE", "not starting with 'key-'"),
    ],
)
def test_bad_named_entries_stop_the_start_without_showing_the_key(entry: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        KeyRing.configured([entry], None)
    assert says in str(error.value)
    assert "SECRET" not in str(error.value)


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        KeyRing.configured(["a:same-key", "b:same-key"], None)


def test_consumer_of_fails_closed_when_no_one_identified_the_caller() -> None:
    with pytest.raises(ConsumerUnknown, match="/v1/x"):
        consumer_of(request_from("127.0.0.1"))


KEYS_TOML = """
[[keys]]
name = "gemeente-a"
key = "a-long-enough-key-0001"
scopes = ["subscriptions:read", "subscriptions:write"]

[[keys]]
name = "beheer"
sha256 = "{digest}"
scopes = ["deliveries:admin", "subscriptions:read"]
rate = 2
burst = 3
"""


def test_a_toml_keys_file_names_keys_and_scopes_and_rates(tmp_path: Path) -> None:
    file = tmp_path / "keys.toml"
    digest = hashlib.sha256(b"beheer-key-kept-as-digest").hexdigest()
    file.write_text(KEYS_TOML.format(digest=digest))
    auth = authenticator(file=file)
    consumer = identify(auth, request_from("192.0.2.1", "Bearer a-long-enough-key-0001"))
    assert consumer == Consumer(
        "gemeente-a", frozenset({"subscriptions:read", "subscriptions:write"})
    )
    limited = request_from("192.0.2.1", "Bearer beheer-key-kept-as-digest")
    admin = identify(auth, limited)
    assert admin.id == "beheer"
    assert admin.admin
    # the key's own bucket: a burst of 3 (the first authenticate took one)
    for _ in range(2):
        identify(auth, request_from("192.0.2.1", "Bearer beheer-key-kept-as-digest"))
    spent = refused(auth, request_from("192.0.2.1", "Bearer beheer-key-kept-as-digest"))
    assert spent.status == 429
    assert spent.headers == {"Retry-After": "1"}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_yaml_and_json_keys_files_hold_a_list(tmp_path: Path, suffix: str) -> None:
    file = tmp_path / f"keys{suffix}"
    entries = [{"name": "lezer", "key": "a-long-enough-key-0002", "scopes": ["events:read"]}]
    file.write_text(json.dumps(entries))  # JSON is YAML too
    consumer = identify(
        authenticator(file=file), request_from("192.0.2.1", "Bearer a-long-enough-key-0002")
    )
    assert consumer == Consumer("lezer", frozenset({"events:read"}))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('[[keys]]\nname = "x"\nkey = "a-long-enough-key-0003"\nscopes = ["admin"]', "admin"),
        ('[[keys]]\nname = "x"\nkey = "short"', "at least 16 characters"),
        ('[[keys]]\nname = "x"', "exactly one of key and sha256"),
        ('[[keys]]\nname = "x"\nsha256 = "abc"', "keys.0.sha256"),
        ('[[keys]]\nname = "x"\nkey = "a-long-enough-key-0004"\ncolour = "red"', "colour"),
        ('[[keys]]\nname = "key-0123"\nkey = "a-long-enough-key-0005"', "for bare keys"),
        ("keys = [", "not valid toml"),
    ],
)
def test_a_bad_keys_file_stops_the_start_naming_the_problem(
    tmp_path: Path, content: str, says: str
) -> None:
    file = tmp_path / "keys.toml"
    file.write_text(content)
    with pytest.raises(ConfigError) as error:
        KeyRing.configured([], file)
    assert str(file) in str(error.value)
    assert says in str(error.value)


def test_a_missing_keys_file_or_unknown_format_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api_keys_file"):
        KeyRing.configured([], tmp_path / "absent.toml")
    other = tmp_path / "keys.ini"
    other.write_text("[keys]")
    with pytest.raises(ConfigError, match=r"\.toml, \.yaml, \.yml or \.json"):
        KeyRing.configured([], other)


@pytest.mark.parametrize(
    ("environment", "says"),
    [
        ({"DIGIBRIDGE_OAUTH_ALGORITHMS": "HS256"}, "oauth_algorithms"),
        ({"DIGIBRIDGE_OAUTH_ALGORITHMS": "RS256,none"}, "oauth_algorithms"),
        ({"DIGIBRIDGE_OAUTH_ISSUER": "https://idp.example"}, "oauth_audience"),
        (
            {
                "DIGIBRIDGE_OAUTH_ISSUER": "https://idp.example",
                "DIGIBRIDGE_OAUTH_AUDIENCE": "digibridge",
            },
            "exactly one of oauth_jwks_url and oauth_jwks_file",
        ),
        ({"DIGIBRIDGE_OAUTH_JWKS_URL": "http://idp.example/jwks"}, "oauth_jwks_url"),
        ({"DIGIBRIDGE_RATE_LIMIT": "-1"}, "rate_limit"),
    ],
)
def test_oauth_and_rate_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], says: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert says in str(error.value).lower()


def test_complete_oauth_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGIBRIDGE_OAUTH_ISSUER", "https://idp.example")
    monkeypatch.setenv("DIGIBRIDGE_OAUTH_AUDIENCE", "digibridge")
    monkeypatch.setenv("DIGIBRIDGE_OAUTH_JWKS_URL", "http://127.0.0.1:9/jwks")
    monkeypatch.setenv("DIGIBRIDGE_OAUTH_ALGORITHMS", "ES256")
    settings = load_settings()
    assert settings.oauth_enabled
    assert settings.api_access_configured
    assert settings.oauth_algorithms == ["ES256"]


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    ticks = Ticks()
    limiter = RateLimiter(monotonic=ticks)
    rate = Rate(per_second=2, burst=3)
    assert [limiter.take("a", rate) for _ in range(3)] == [None, None, None]
    assert limiter.take("a", rate) == pytest.approx(0.5)
    assert limiter.take("b", rate) is None  # buckets are per consumer
    ticks.now += 0.5
    assert limiter.take("a", rate) is None
    assert limiter.take("a", rate) == pytest.approx(0.5)
    ticks.now += 60
    assert [limiter.take("a", rate) for _ in range(4)][:3] == [None, None, None]


def test_a_zero_rate_is_unlimited_and_the_table_is_bounded() -> None:
    limiter = RateLimiter(max_buckets=2, monotonic=Ticks())
    assert all(limiter.take("a", Rate(0, 1)) is None for _ in range(50))
    tight = Rate(per_second=1, burst=1)
    for key in ("a", "b", "c"):
        assert limiter.take(key, tight) is None
    # "a" was dropped (least recently used) and comes back full; "c" is still spent
    assert limiter.take("a", tight) is None
    assert limiter.take("c", tight) is not None


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2")])
def test_retry_after_is_whole_seconds_and_never_zero(wait: float, header: str) -> None:
    assert retry_after(wait) == header


def test_failed_credentials_spend_the_address_budget() -> None:
    auth = authenticator("k0", rate=Rate(per_second=1, burst=2))
    for _ in range(2):
        assert refused(auth, request_from("192.0.2.7", "Bearer guess")).status == 401
    assert refused(auth, request_from("192.0.2.7", "Bearer guess")).status == 429
    # another address is not affected, and neither is the right key
    assert refused(auth, request_from("192.0.2.8", "Bearer guess")).status == 401
    assert identify(auth, request_from("192.0.2.7", "Bearer k0")).admin
    assert ADMIN_SCOPE in ALL_SCOPES

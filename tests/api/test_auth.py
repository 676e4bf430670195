"""Without API keys the REST API answers loopback callers only."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from digibridge.api.auth import authorise
from digibridge.api.problems import Problem


def request_from(host: str, authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "client": (host, 50000), "headers": headers})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_is_allowed_without_keys(host: str) -> None:
    authorise(request_from(host), [])


@pytest.mark.parametrize("host", ["192.0.2.10", "2001:db8::1", "not-an-address"])
def test_other_hosts_are_refused_without_keys(host: str) -> None:
    with pytest.raises(Problem) as refused:
        authorise(request_from(host), [])
    assert refused.value.status == 403
    assert "DIGIBRIDGE_API_KEYS" in refused.value.detail


def test_with_keys_a_remote_caller_with_a_key_is_allowed() -> None:
    authorise(request_from("192.0.2.10", "Bearer k1"), ["k0", "k1"])
    with pytest.raises(Problem) as refused:
        authorise(request_from("127.0.0.1", "Basic k1"), ["k1"])
    assert refused.value.status == 401

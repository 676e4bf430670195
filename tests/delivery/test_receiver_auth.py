"""Receiver authentication against real local servers: an OAuth 2.0 token endpoint (client
credentials) and a TLS receiver that demands a client certificate from a test CA."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    CircuitPolicy,
    ClientTls,
    DeliverySettings,
    DeliveryStatus,
    OAuthClient,
)
from digibridge.wus.devcerts import DevCa
from tests.support.delivery import SECRET, publish, received, running, settled, subscription
from tests.support.sinks import FakeClock, LoopbackServer, Reply, ScriptedSink

pytestmark = pytest.mark.anyio


class TokenEndpoint:
    """An OAuth 2.0 token endpoint for one client; tokens `tok-1`, `tok-2`, ..."""

    def __init__(self, expires_in: int = 60) -> None:
        self.expires_in = expires_in
        self.requests: list[dict[str, str]] = []
        self.server = LoopbackServer(
            Starlette(routes=[Route("/token", self._token, methods=["POST"])])
        )

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        expected = "Basic " + base64.b64encode(b"digibridge:s3cret").decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.requests.append(form)
        return JSONResponse(
            {
                "access_token": f"tok-{len(self.requests)}",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
            }
        )


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    endpoint.server.start()
    yield endpoint
    endpoint.server.stop()


def oauth_settings(endpoint: TokenEndpoint) -> DeliverySettings:
    oauth = OAuthClient(
        token_url=endpoint.server.url("/token"),
        client_id="digibridge",
        client_secret="s3cret",
        scope="notificaties",
    )
    return DeliverySettings(secret=SECRET, oauth=oauth)


async def test_oauth_token_is_cached_and_refreshed_before_it_expires(
    store: SqliteStore, sink: ScriptedSink, token_endpoint: TokenEndpoint, clock: FakeClock
) -> None:
    await publish(store, subscription(sink.url(), delivery=oauth_settings(token_endpoint)))

    async with running(store, clock=clock) as dispatcher:
        await received(sink, 1)
        await publish(store, None, "ev-2")
        dispatcher.wake()
        await received(sink, 2)
        clock.advance(timedelta(seconds=55))  # 60 s tokens are renewed 6 s before they expire
        await publish(store, None, "ev-3")
        dispatcher.wake()
        await received(sink, 3)

    assert [p.headers["authorization"] for p in sink.posts()] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert (
        token_endpoint.requests
        == [{"grant_type": "client_credentials", "scope": "notificaties"}] * 2
    )


async def test_a_401_fetches_a_new_token_and_retries_once(
    store: SqliteStore, sink: ScriptedSink, token_endpoint: TokenEndpoint
) -> None:
    sink.script("/hook", Reply(401))
    delivery = await publish(
        store, subscription(sink.url(), delivery=oauth_settings(token_endpoint))
    )

    async with running(store):
        done = await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    assert done.attempts == 1
    assert [p.headers["authorization"] for p in sink.posts()] == ["Bearer tok-1", "Bearer tok-2"]


async def test_an_unreachable_token_endpoint_is_retried(
    store: SqliteStore, sink: ScriptedSink, token_endpoint: TokenEndpoint
) -> None:
    broken = DeliverySettings(
        secret=SECRET,
        oauth=OAuthClient(
            token_url=token_endpoint.server.url("/missing"), client_id="x", client_secret="y"
        ),
    )
    delivery = await publish(store, subscription(sink.url(), delivery=broken))

    async with running(store):
        await settled(store, delivery.id, DeliveryStatus.DEAD)

    attempts = await store.list_attempts(delivery.id)
    assert attempts[0].error == "OAuth: token endpoint answered 404 Not Found"
    assert sink.posts() == []


@pytest.fixture(scope="module")
def ca() -> DevCa:
    return DevCa.create()


def tls_sink(ca: DevCa, folder: Path) -> ScriptedSink:
    """A receiver on https://127.0.0.1 that demands a client certificate from `ca`."""
    server = ca.server(("127.0.0.1",))
    certificate, key, bundle = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    certificate.write_bytes(server.certificate_pem() + ca.intermediate.certificate_pem())
    key.write_bytes(server.key_pem())
    bundle.write_bytes(ca.bundle_pem())
    sink = ScriptedSink(
        ssl_certfile=str(certificate),
        ssl_keyfile=str(key),
        ssl_ca_certs=str(bundle),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    sink.start()
    return sink


async def test_mutual_tls_presents_the_subscriptions_client_certificate(
    store: SqliteStore, ca: DevCa, tmp_path: Path
) -> None:
    sink = tls_sink(ca, tmp_path)
    try:
        trusted = ca.bundle_pem().decode()
        client = ca.client("00000099000000000002")
        chain = (client.certificate_pem() + ca.intermediate.certificate_pem()).decode()
        tls = ClientTls(certificate=chain, key=client.key_pem().decode(), ca=trusted)
        stranger = DevCa.create("someone else").client(None)
        untrusted = ClientTls(
            certificate=stranger.certificate_pem().decode(),
            key=stranger.key_pem().decode(),
            ca=trusted,
        )
        good = await publish(
            store,
            subscription(sink.url(), id="mtls", delivery=DeliverySettings(SECRET, tls=tls)),
        )
        bad = await publish(
            store,
            subscription(sink.url(), id="bad", delivery=DeliverySettings(SECRET, tls=untrusted)),
            "ev-2",
        )

        # Both subscriptions share the endpoint: keep its circuit out of this test.
        async with running(store, circuit=CircuitPolicy(min_requests=1000)):
            await settled(store, good.id, DeliveryStatus.SUCCEEDED)
            refused = await settled(store, bad.id, DeliveryStatus.DEAD)
    finally:
        sink.stop()

    assert sink.url().startswith("https://")
    assert {p.headers["webhook-id"] for p in sink.posts()} == {"ev-1", "ev-2"}  # all for mtls
    assert refused.last_error is not None
    assert "gave up" in refused.last_error

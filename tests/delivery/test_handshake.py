"""The sink check before delivery (CloudEvents webhook validation handshake, VNG-style check,
or none) on a running gateway, and the rate and origin it leads to in delivery."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digibridge.config import ConfigError, load_settings
from digibridge.delivery.guard import SinkGuard
from digibridge.delivery.handshake import HandshakeRefused, SinkCheck
from digibridge.delivery.signing import generate_secret
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import DeliverySettings, DeliveryStatus
from tests.delivery.test_receiver_auth import TokenEndpoint
from tests.support.delivery import SECRET, publish, received, running, settled, subscription
from tests.support.events import check_webhook
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.sinks import FakeClock, LoopbackServer, Reply, ScriptedSink
from tests.support.soap import post_levering, sample, with_kenmerk

ORIGIN = "digibridge.gemeente.example"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    env = {"DIGIBRIDGE_WEBHOOK_ORIGIN": ORIGIN}
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), env=env).start()
    yield process
    process.stop()


@pytest.fixture
def api(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{gateway.url}/v1", timeout=30) as client:
        yield client


def create(api: httpx.Client, sink: str, **delivery: object) -> httpx.Response:
    body = {"sink": sink, "delivery": {"secret": SECRET, **delivery}}
    return api.post("/subscriptions", json=body)


def created_id(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def refused(response: httpx.Response, *mentions: str) -> None:
    """400 problem+json naming the sink and quoting what the receiver answered."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 400
    assert problem["invalidParams"][0]["name"] == "sink"
    for mention in mentions:
        assert mention in problem["detail"], problem["detail"]


def listed_sinks(api: httpx.Client) -> list[str]:
    return [item["sink"] for item in api.get("/subscriptions", params={"pageSize": 100}).json()]


def test_cloudevents_handshake_is_sent_and_accepted(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    response = create(api, receiver.url("/ok"), rate=120)
    sub = created_id(response)

    [options] = receiver.handshakes("/ok")
    assert options.headers["webhook-request-origin"] == ORIGIN
    assert options.headers["webhook-request-rate"] == "120"
    assert receiver.posts() == []
    assert response.json()["delivery"]["handshake"] == "cloudevents"
    assert response.json()["delivery"]["allowedRate"] == 120
    api.delete(f"/subscriptions/{sub}")


def test_no_rate_asked_means_no_rate_header(api: httpx.Client, receiver: ScriptedSink) -> None:
    sub = created_id(create(api, receiver.url("/plain")))
    [options] = receiver.handshakes("/plain")
    assert "webhook-request-rate" not in options.headers
    assert "allowedRate" not in api.get(f"/subscriptions/{sub}").json()["delivery"]
    api.delete(f"/subscriptions/{sub}")


def test_the_receivers_lower_rate_and_wildcard_origin_are_taken(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    allowed = {"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "2"}
    receiver.script_handshake("/slow", Reply(200, allowed))
    sub = created_id(create(api, receiver.url("/slow"), rate=10))
    delivery = api.get(f"/subscriptions/{sub}").json()["delivery"]
    assert (delivery["rate"], delivery["allowedRate"]) == (10, 2)
    api.delete(f"/subscriptions/{sub}")


@pytest.mark.parametrize(
    ("reply", "mentions"),
    [
        (Reply(405), ("HTTP 405 Method Not Allowed",)),
        (Reply(200), ("HTTP 200", "WebHook-Allowed-Origin must be", ORIGIN)),
        (
            Reply(200, {"WebHook-Allowed-Origin": "someone-else.example"}),
            ("webhook-allowed-origin: someone-else.example",),
        ),
        (
            Reply(307, {"Location": "https://elsewhere.example/"}),
            ("307", "redirect not followed"),
        ),
        (
            Reply(200, {"WebHook-Allowed-Origin": ORIGIN, "WebHook-Allowed-Rate": "fast"}),
            ("WebHook-Allowed-Rate 'fast'",),
        ),
    ],
)
def test_a_refused_handshake_rejects_the_create_saying_why(
    api: httpx.Client, receiver: ScriptedSink, reply: Reply, mentions: tuple[str, ...]
) -> None:
    receiver.script_handshake("/no", reply)
    refused(create(api, receiver.url("/no")), *mentions)
    assert receiver.url("/no") not in listed_sinks(api)
    assert receiver.posts() == []


def test_a_sink_that_does_not_answer_is_refused(api: httpx.Client) -> None:
    url = f"http://127.0.0.1:{free_port()}/gone"  # nothing listens: connection refused
    refused(create(api, url), "no answer", "ConnectError")


def test_handshake_none_sends_nothing(api: httpx.Client, receiver: ScriptedSink) -> None:
    receiver.script_handshake("/agreed", Reply(403))
    sub = created_id(create(api, receiver.url("/agreed"), handshake="none"))
    assert receiver.received() == []
    assert api.get(f"/subscriptions/{sub}").json()["delivery"]["handshake"] == "none"
    api.delete(f"/subscriptions/{sub}")


def test_vng_check_passes_when_the_sink_demands_the_credential(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    secret = generate_secret()
    receiver.script("/vng", Reply(204), Reply(401))
    body = {
        "sink": receiver.url("/vng"),
        "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": "t0ken"},
        "delivery": {"secret": secret, "handshake": "vng"},
    }
    sub = created_id(api.post("/subscriptions", json=body))

    with_credential, without = receiver.posts("/vng")
    assert with_credential.headers["authorization"] == "Bearer t0ken"
    assert "authorization" not in without.headers
    for request in (with_credential, without):
        event = check_webhook(request, secret)
        assert event["type"] == "nl.digibridge.subscription.test"
        assert request.headers["webhook-request-origin"] == ORIGIN
    assert receiver.handshakes() == []
    api.delete(f"/subscriptions/{sub}")


@pytest.mark.parametrize(
    ("replies", "mention"),
    [
        ((Reply(204), Reply(204)), "without the credential got HTTP 204"),
        ((Reply(401),), "with the credential got HTTP 401 Unauthorized"),
    ],
)
def test_vng_check_refuses_a_sink_that_lets_anyone_in_or_nobody(
    api: httpx.Client, receiver: ScriptedSink, replies: tuple[Reply, ...], mention: str
) -> None:
    receiver.script("/open", *replies)
    body = {
        "sink": receiver.url("/open"),
        "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": "t0ken"},
        "delivery": {"handshake": "vng"},
    }
    refused(api.post("/subscriptions", json=body), mention)


def test_vng_check_needs_a_credential(api: httpx.Client, receiver: ScriptedSink) -> None:
    response = create(api, receiver.url("/vng"), handshake="vng")
    assert response.status_code == 400, response.text
    assert response.json()["invalidParams"][0]["name"] == "delivery.handshake"
    assert receiver.received() == []


def test_a_changed_sink_is_checked_again_and_a_refusal_keeps_the_old_one(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    sub = created_id(create(api, receiver.url("/first")))
    patch = {"content-type": "application/merge-patch+json"}

    types_only = api.patch(f"/subscriptions/{sub}", json={"types": ["nl.x"]}, headers=patch)
    assert types_only.status_code == 200, types_only.text
    assert [r.path for r in receiver.handshakes()] == ["/first"]

    moved = api.patch(
        f"/subscriptions/{sub}", json={"sink": receiver.url("/second")}, headers=patch
    )
    assert moved.status_code == 200, moved.text
    assert [r.path for r in receiver.handshakes()] == ["/first", "/second"]

    receiver.script_handshake("/third", Reply(404))
    replaced = api.put(f"/subscriptions/{sub}", json={"sink": receiver.url("/third")})
    refused(replaced, "HTTP 404 Not Found")
    assert api.get(f"/subscriptions/{sub}").json()["sink"] == receiver.url("/second")
    api.delete(f"/subscriptions/{sub}")


@pytest.fixture
def tokens() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    endpoint.server.start()
    yield endpoint
    endpoint.server.stop()


def test_the_checks_carry_the_oauth_token(
    api: httpx.Client, receiver: ScriptedSink, tokens: TokenEndpoint
) -> None:
    oauth = {"tokenUrl": tokens.server.url("/token"), "clientId": "digibridge"}
    body = {"sink": receiver.url("/oauth"), "delivery": {"oauth": {**oauth, "clientSecret": "x"}}}
    refused(api.post("/subscriptions", json=body), "no OAuth token", "401")

    body["delivery"] = {"oauth": {**oauth, "clientSecret": "s3cret"}}
    sub = created_id(api.post("/subscriptions", json=body))
    [options] = receiver.handshakes("/oauth")
    assert options.headers["authorization"] == "Bearer tok-1"
    assert api.post(f"/subscriptions/{sub}/test").json()["status"] == 204
    [sent] = receiver.posts("/oauth")
    assert sent.headers["authorization"] == "Bearer tok-2"
    api.delete(f"/subscriptions/{sub}")


def test_a_token_no_header_can_carry_fails_the_request_instead_of_the_gateway(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    async def token(request: Request) -> Response:
        return JSONResponse({"access_token": "t\u00f8ken", "token_type": "Bearer"})

    server = LoopbackServer(Starlette(routes=[Route("/token", token, methods=["POST"])]))
    server.start()
    try:
        oauth = {"tokenUrl": server.url("/token"), "clientId": "c", "clientSecret": "s"}
        body = {"sink": receiver.url("/enc"), "delivery": {"oauth": oauth, "handshake": "none"}}
        sub = created_id(api.post("/subscriptions", json=body))
        result = api.post(f"/subscriptions/{sub}/test").json()
        assert (result["outcome"], result["status"]) == ("failed", None)
        assert "request cannot be encoded" in result["error"]
        assert receiver.posts() == []
        api.delete(f"/subscriptions/{sub}")
    finally:
        server.stop()


def test_every_delivery_carries_the_origin(
    api: httpx.Client, gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    secret = generate_secret()
    body = {
        "sink": receiver.url("/events"),
        "types": ["nl.brp.persoon-verhuisd"],
        "delivery": {"secret": secret},
    }
    sub = created_id(api.post("/subscriptions", json=body))
    post_levering(gateway.wus_url, with_kenmerk(sample("brp-verhuizing.xml")))

    [request] = receiver.wait_for_posts(1)
    assert request.headers["webhook-request-origin"] == ORIGIN
    assert check_webhook(request, secret)["type"] == "nl.brp.persoon-verhuisd"
    api.delete(f"/subscriptions/{sub}")


class TickingClock:
    """Moves one second on every reading: the dispatcher runs through minutes of its time in
    a fraction of a real second, and every request's `webhook-timestamp` shows when it went."""

    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


@pytest.mark.anyio
async def test_the_dispatcher_keeps_to_the_granted_rate(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    # Granted 2 requests per minute: no 60-second window may hold a third.
    sub = subscription(sink.url(), delivery=DeliverySettings(secret=SECRET, allowed_rate=2))
    deliveries = [await publish(store, sub if n == 0 else None, f"ev-{n}") for n in range(6)]

    async with running(store, clock=TickingClock(), idle_poll=0.02):
        for delivery in deliveries:
            await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    posts = sink.posts()
    assert {request.headers["webhook-id"] for request in posts} == {f"ev-{n}" for n in range(6)}
    sent = sorted(int(request.headers["webhook-timestamp"]) for request in posts)
    assert all(later - earlier >= 60 for earlier, later in zip(sent, sent[2:], strict=False))


@pytest.mark.anyio
async def test_the_dispatcher_names_its_origin_on_deliveries(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    delivery = await publish(store, subscription(sink.url()))
    async with running(store, origin=ORIGIN):
        await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)
    [request] = await received(sink, 1)
    assert request.headers["webhook-request-origin"] == ORIGIN


def test_the_origin_defaults_to_the_public_host_and_must_be_a_dns_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    public = load_settings(public_url="https://digibridge.gemeente.example:8443/gw")
    assert public.request_origin == "digibridge.gemeente.example"
    assert load_settings(webhook_origin="gw.example").request_origin == "gw.example"
    assert load_settings().request_origin == socket.getfqdn()
    monkeypatch.setenv("DIGIBRIDGE_WEBHOOK_ORIGIN", "gw.example\r\nX-Evil: 1")
    with pytest.raises(ConfigError, match=r"WEBHOOK_ORIGIN.*must be a DNS name"):
        load_settings()


@pytest.mark.anyio
async def test_the_check_goes_through_the_ssrf_guard(sink: ScriptedSink) -> None:
    checker = SinkCheck(SinkGuard([]), FakeClock(), origin=ORIGIN, timeout=5)
    sub = subscription(sink.url("/guarded"))

    with pytest.raises(HandshakeRefused, match=re.escape("sink refused: 127.0.0.1 is loopback")):
        await checker.validate(sub)
    probe = await checker.send_test(sub)

    assert probe.answer.result.reason is not None
    assert "sink refused" in probe.answer.result.reason
    assert sink.received() == []


@pytest.mark.anyio
async def test_a_slow_sink_fails_the_check_within_the_timeout(sink: ScriptedSink) -> None:
    sink.script_handshake("/slow", Reply(200, {"WebHook-Allowed-Origin": "*"}, delay=2))
    checker = SinkCheck(SinkGuard(["127.0.0.0/8"]), FakeClock(), origin=ORIGIN, timeout=0.2)

    with pytest.raises(HandshakeRefused, match=re.escape("timed out after 0.2 s")):
        await checker.validate(subscription(sink.url("/slow")))

"""`digibridge receive`: verifies Standard Webhooks signatures, prints the CloudEvent, 204."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from digibridge.delivery.dispatcher import Dispatcher
from digibridge.delivery.receiver import create_receiver_app
from digibridge.delivery.retry import RetryPolicy
from digibridge.delivery.signing import generate_secret, webhook_headers
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import DeliverySettings, InboundMessage, NewEvent, Subscription
from tests.support.sinks import LoopbackServer, eventually

pytestmark = pytest.mark.anyio

SECRET = generate_secret()
EVENT = {
    "specversion": "1.0",
    "id": "ev-1",
    "source": "urn:nld:oin:00000001823288444000:systeem:BRP",
    "type": "nl.brp.persoon-verhuisd",
    "time": "2026-03-01T12:00:00Z",
    "datacontenttype": "application/json",
    "data": {"plaats": "Zoë's dorp"},
}
BODY = json.dumps(EVENT).encode()
STRUCTURED = {"content-type": "application/cloudevents+json; charset=utf-8"}


def signed(body: bytes = BODY, secret: str = SECRET, msg_id: str = "ev-1") -> dict[str, str]:
    return STRUCTURED | webhook_headers(secret, msg_id, int(time.time()), body)


@pytest.fixture
def printed() -> list[str]:
    return []


def in_process(secret: str | None, printed: list[str]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_receiver_app(secret, printed.append))
    return httpx.AsyncClient(transport=transport, base_url="http://receiver")


@pytest.fixture
async def client(printed: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(SECRET, printed) as client:
        yield client


async def test_signed_event_is_printed_as_pretty_json(
    client: httpx.AsyncClient, printed: list[str]
) -> None:
    response = await client.post("/any/path", content=BODY, headers=signed())

    assert response.status_code == 204
    [text] = printed
    assert "\n  " in text
    assert "Zoë's dorp" in text
    document = json.loads(text)
    assert document["id"] == "ev-1"
    assert document["data"] == {"plaats": "Zoë's dorp"}
    assert document["time"].startswith("2026-03-01T12:00:00")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        # Signed when the test runs, not when it is collected: the timestamp must be fresh.
        (lambda: signed(secret=generate_secret()), "no webhook-signature entry matches"),
        (lambda: signed(body=b"{}"), "no webhook-signature entry matches"),
        (lambda: STRUCTURED, "missing header"),
    ],
    ids=["wrong secret", "altered body", "unsigned"],
)
async def test_bad_signature_is_refused_with_401(
    client: httpx.AsyncClient,
    printed: list[str],
    headers: Callable[[], dict[str, str]],
    reason: str,
) -> None:
    response = await client.post("/", content=BODY, headers=headers())

    assert response.status_code == 401
    assert reason in response.text
    assert printed == []


async def test_without_a_secret_signatures_are_not_checked(printed: list[str]) -> None:
    async with in_process(None, printed) as client:
        response = await client.post("/", content=BODY, headers=STRUCTURED)

    assert response.status_code == 204
    assert len(printed) == 1


async def test_binary_mode_is_understood(printed: list[str]) -> None:
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "ev-bin",
        "ce-source": "urn:nld:oin:1:systeem:BRP",
        "ce-type": "nl.brp.persoon-verhuisd",
    }

    async with in_process(None, printed) as client:
        response = await client.post("/", content=b'{"plaats":"Zwolle"}', headers=headers)

    assert response.status_code == 204
    assert json.loads(printed[0])["id"] == "ev-bin"


async def test_a_body_that_is_no_cloudevent_is_a_400(
    client: httpx.AsyncClient, printed: list[str]
) -> None:
    body = b'{"hello": "world"}'

    response = await client.post("/", content=body, headers=signed(body=body))

    assert response.status_code == 400
    assert response.text.startswith("not a CloudEvent")
    assert printed == []


async def test_options_grants_the_webhook_validation_handshake(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/hook",
        headers={"WebHook-Request-Origin": "digibridge.example.nl", "WebHook-Request-Rate": "120"},
    )

    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "digibridge.example.nl"
    assert response.headers["WebHook-Allowed-Rate"] == "120"
    assert "POST" in response.headers["Allow"]


@pytest.fixture
def served_receiver(printed: list[str]) -> Iterator[LoopbackServer]:
    server = LoopbackServer(create_receiver_app(SECRET, printed.append))
    server.start()
    yield server
    server.stop()


async def test_the_receiver_accepts_what_the_dispatcher_sends(
    tmp_path: Path, served_receiver: LoopbackServer, printed: list[str]
) -> None:
    store = SqliteStore(tmp_path / "e2e.db")
    await store.open()
    try:
        await store.create_subscription(
            Subscription(
                id="sub-e2e",
                sink=served_receiver.url("/webhooks"),
                delivery=DeliverySettings(secret=SECRET),
                created_at=datetime.now(UTC),
            )
        )
        message = InboundMessage("uuid:e2e", "K-e2e", "BRP", "verhuizing", datetime.now(UTC))
        event = NewEvent("ev-1", EVENT["type"], EVENT["source"], None, None, {}, BODY)  # type: ignore[arg-type]
        await store.ingest(message, [event], lambda _s, _e: True)
        dispatcher = Dispatcher(store, policy=RetryPolicy.parse("0"), idle_poll=0.2)
        task = asyncio.create_task(dispatcher.run())

        async def printed_one() -> bool:
            return len(printed) == 1

        await eventually(printed_one, "the receiver printed the event")
        await dispatcher.stop()
        await task
        [delivery] = await store.list_deliveries()
        assert delivery.last_status_code == 204
    finally:
        await store.close()
    assert json.loads(printed[0])["data"] == EVENT["data"]

"""The delivery engine end to end: SqliteStore + Dispatcher + real HTTP sinks on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from digibridge.delivery.dispatcher import Dispatcher
from digibridge.delivery.retry import RetryPolicy
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    DeliveryStatus,
    SubscriptionStatus,
)
from tests.support.delivery import (
    FAST,
    SECRET,
    cloud_event,
    publish,
    running,
    settled,
    subscription,
)
from tests.support.net import free_port
from tests.support.sinks import FakeClock, Reply, ScriptedSink, eventually

pytestmark = pytest.mark.anyio


def parse_cloudevent(headers: dict[str, str], body: bytes) -> object:
    return from_http(HTTPMessage(headers=headers, body=body), JSONFormat())


async def test_delivers_a_signed_structured_cloudevent(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sub = subscription(
        sink.url(),
        sinkcredential="consumer-token",
        protocolsettings={
            "headers": {"X-Tenant": "zwolle", "Content-Type": "text/plain", "webhook-id": "forged"}
        },
    )
    delivery = await publish(store, sub)

    with capture_logs() as logs:
        async with running(store):
            done = await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    [request] = sink.received("/hook")
    event = cloud_event("ev-1")
    # The body as stored: the event plus the `sequence` the store gave it.
    assert json.loads(request.body) == {**json.loads(event.body), "sequence": "0" * 19 + "1"}
    assert request.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert request.headers["authorization"] == "Bearer consumer-token"
    assert request.headers["x-tenant"] == "zwolle"
    assert request.headers["user-agent"].startswith("digibridge/")
    assert request.headers["webhook-id"] == "ev-1"
    Webhook(SECRET).verify(request.body, request.headers)
    parsed = parse_cloudevent(request.headers, request.body)
    assert parsed.get_id() == "ev-1"  # type: ignore[attr-defined]
    assert parsed.get_data() == {"plaats": "Zwolle"}  # type: ignore[attr-defined]
    assert done.attempts == 1
    [attempt] = await store.list_attempts(delivery.id)
    assert attempt.status_code == 204
    assert attempt.error is None
    succeeded = [log for log in logs if log["event"] == "delivery_succeeded"]
    assert succeeded[0]["delivery_id"] == delivery.id
    assert succeeded[0]["event_id"] == "ev-1"
    assert succeeded[0]["subscription_id"] == "sub-1"
    assert SECRET not in repr(logs)
    assert "consumer-token" not in repr(logs)


async def test_503_is_retried_with_the_same_webhook_id(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sink.script("/hook", Reply(503, body=b"busy"), Reply(204))
    delivery = await publish(store, subscription(sink.url()))

    async with running(store):
        done = await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    requests = sink.received("/hook")
    assert [r.headers["webhook-id"] for r in requests] == ["ev-1", "ev-1"]
    for request in requests:
        Webhook(SECRET).verify(request.body, request.headers)
    attempts = await store.list_attempts(delivery.id)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 503), (2, 204)]
    assert attempts[0].error == "503 Service Unavailable"
    assert attempts[0].response_excerpt == "busy"
    assert done.attempts == 2


async def test_a_long_answer_is_kept_as_its_first_512_bytes_and_not_waited_for(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    """Only the excerpt of an answer is read; the rest is left unread (its connection closed,
    not reused), and the next attempt goes out on a fresh one."""
    long_body = b"".join(b"%07d\n" % n for n in range(8192))  # 64 KiB
    sink.script("/hook", Reply(500, body=long_body), Reply(204))
    delivery = await publish(store, subscription(sink.url()))

    async with running(store):
        done = await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    first, second = await store.list_attempts(delivery.id)
    assert first.response_excerpt == long_body[:512].decode()
    assert (first.status_code, second.status_code) == (500, 204)
    assert done.attempts == 2


async def test_retry_after_is_respected(
    store: SqliteStore, sink: ScriptedSink, clock: FakeClock
) -> None:
    sink.script("/hook", Reply(429, headers={"Retry-After": "120"}), Reply(204))
    delivery = await publish(store, subscription(sink.url()))
    first_try = clock.now()

    policy = RetryPolicy.parse("0,0.05", max_age=timedelta(hours=1))

    async with running(store, policy, clock=clock) as dispatcher:

        async def rescheduled() -> bool:
            found = await store.get_delivery(delivery.id)
            return found is not None and found.attempts == 1

        await eventually(rescheduled, "the 429 attempt recorded")
        waiting = await store.get_delivery(delivery.id)
        assert waiting is not None
        assert waiting.status is DeliveryStatus.PENDING
        assert waiting.next_attempt_at is not None
        assert waiting.next_attempt_at >= first_try + timedelta(seconds=120)
        assert waiting.last_status_code == 429

        clock.advance(timedelta(seconds=121))
        dispatcher.wake()
        await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    assert len(sink.received("/hook")) == 2


async def test_410_dead_letters_and_disables_the_subscription(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sink.script("/hook", Reply(410))
    delivery = await publish(store, subscription(sink.url()))

    with capture_logs() as logs:
        async with running(store):
            done = await settled(store, delivery.id, DeliveryStatus.DEAD)

    sub = await store.get_subscription("sub-1")
    assert sub is not None
    assert sub.status is SubscriptionStatus.DISABLED
    assert sub.status_reason == "410 Gone from sink"
    assert done.last_error == "410 Gone"
    assert {log["event"] for log in logs} >= {"delivery_dead", "subscription_disabled"}
    assert len(sink.received()) == 1


async def test_400_dead_letters_at_once(store: SqliteStore, sink: ScriptedSink) -> None:
    sink.script("/hook", Reply(400, body=b'{"title":"bad"}'))
    delivery = await publish(store, subscription(sink.url()))

    async with running(store):
        done = await settled(store, delivery.id, DeliveryStatus.DEAD)

    assert (done.attempts, done.last_status_code, done.last_error) == (1, 400, "400 Bad Request")
    assert len(sink.received()) == 1


async def test_redirect_is_not_followed(store: SqliteStore, sink: ScriptedSink) -> None:
    sink.script("/hook", Reply(302, headers={"Location": sink.url("/elsewhere")}))
    delivery = await publish(store, subscription(sink.url()))

    async with running(store):
        done = await settled(store, delivery.id, DeliveryStatus.DEAD)

    assert done.last_error is not None
    assert "redirect not followed" in done.last_error
    assert sink.received("/elsewhere") == []


async def test_slow_sink_times_out_and_is_retried(store: SqliteStore, sink: ScriptedSink) -> None:
    sink.script("/hook", Reply(204, delay=3), Reply(204))
    delivery = await publish(store, subscription(sink.url()))

    async with running(store, request_timeout=0.3):
        await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    attempts = await store.list_attempts(delivery.id)
    assert attempts[0].status_code is None
    assert attempts[0].error == "timed out after 0.3 s"
    assert attempts[1].status_code == 204


async def test_retries_exhausted_make_a_dead_letter(store: SqliteStore) -> None:
    delivery = await publish(store, subscription(f"http://127.0.0.1:{free_port()}/hook"))

    async with running(store, policy=RetryPolicy.parse("0,0.01")):
        done = await settled(store, delivery.id, DeliveryStatus.DEAD)

    assert done.attempts == 2
    assert done.last_error is not None
    assert done.last_error.startswith("gave up after 2 attempts; last: ConnectError")


async def test_sink_down_then_back_is_delivered(
    store: SqliteStore, start_sink: Callable[..., ScriptedSink]
) -> None:
    port = free_port()
    delivery = await publish(store, subscription(f"http://127.0.0.1:{port}/hook"))
    policy = RetryPolicy.parse("0,0.05", repeat_last=True, max_age=timedelta(minutes=5))

    async with running(store, policy=policy):

        async def refused_twice() -> bool:
            found = await store.get_delivery(delivery.id)
            return found is not None and found.attempts >= 2

        await eventually(refused_twice, "two refused attempts")
        back = start_sink(port)
        await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    assert len(back.received("/hook")) == 1
    attempts = await store.list_attempts(delivery.id)
    assert attempts[0].error is not None
    assert attempts[0].error.startswith("ConnectError")


async def test_pending_and_leased_deliveries_survive_a_restart(
    tmp_path: Path, sink: ScriptedSink
) -> None:
    path = tmp_path / "restart.db"
    before = SqliteStore(path)
    await before.open()
    leased = await publish(before, subscription(sink.url()), "ev-leased")
    waiting = await publish(before, None, "ev-waiting")
    now = datetime.now(UTC)
    # A process that claimed one delivery and then died without completing it.
    await before.claim_due(now=now, limit=1, lease_until=now + timedelta(hours=1), owner="killed")
    await before.close()

    after = SqliteStore(path)
    await after.open()
    try:
        assert await after.release_leases() == 1
        async with running(after):
            await settled(after, leased.id, DeliveryStatus.SUCCEEDED)
            await settled(after, waiting.id, DeliveryStatus.SUCCEEDED)
    finally:
        await after.close()

    assert sorted(r.headers["webhook-id"] for r in sink.received()) == ["ev-leased", "ev-waiting"]


class FlakyStore:
    """A real store whose first `claim_due` fails, as a store outage would."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.failures = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def claim_due(self, **kwargs: object) -> object:
        if self.failures:
            self.failures -= 1
            raise OSError("disk I/O error")
        return await self.inner.claim_due(**kwargs)  # type: ignore[arg-type]


async def test_a_failing_store_does_not_stop_the_loop(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    delivery = await publish(store, subscription(sink.url()))
    flaky = FlakyStore(store)

    with capture_logs() as logs:
        async with running(flaky):  # type: ignore[arg-type]
            await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    assert "dispatcher_store_error" in [log["event"] for log in logs]


async def test_stop_cancels_slow_sends_and_releases_their_leases(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sink.script("/hook", Reply(204, delay=5))
    delivery = await publish(store, subscription(sink.url()))
    dispatcher = Dispatcher(store, policy=FAST, idle_poll=0.2, request_timeout=10)
    task = asyncio.create_task(dispatcher.run())

    async def arrived() -> bool:
        return len(sink.received()) == 1

    await eventually(arrived, "the slow request reached the sink")
    await dispatcher.stop(timeout=0.1)
    await task

    now = datetime.now(UTC)
    jobs = await store.claim_due(now=now, limit=5, lease_until=now, owner="next")
    assert [job.delivery.id for job in jobs] == [delivery.id]
    assert await store.list_attempts(delivery.id) == []


async def test_wake_starts_new_work_without_waiting_for_the_poll(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    await store.create_subscription(subscription(sink.url()))
    async with running(store, idle_poll=30) as dispatcher:
        delivery = await publish(store, None, "ev-woken")
        dispatcher.wake()
        await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

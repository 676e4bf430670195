"""The delivery engine's rules against real receivers on loopback: 4xx opt-in, per-subscription
timeout, circuit breaking, endpoint isolation, disabling, ordering, content modes, signing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks.webhooks import Webhook

from digibridge.delivery.retry import RetryPolicy
from digibridge.delivery.signing import generate_key_pair, generate_secret, verify
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    CircuitPolicy,
    CircuitState,
    DeliverySettings,
    DeliveryStatus,
    PreviousKey,
    SubscriptionStatus,
)
from tests.support.delivery import SECRET, publish, received, running, settled, subscription
from tests.support.sinks import FakeClock, Reply, ScriptedSink, eventually

pytestmark = pytest.mark.anyio

NOTICE_TYPE = "nl.digibridge.subscription.disabled"


def settings(**changes: Any) -> DeliverySettings:
    return DeliverySettings(secret=SECRET, **changes)


async def test_4xx_is_retried_when_the_subscription_opts_in(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sink.script("/hook", Reply(404), Reply(204))
    delivery = await publish(store, subscription(sink.url(), delivery=settings(retry_4xx=True)))

    async with running(store):
        done = await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    assert done.attempts == 2
    assert [a.status_code for a in await store.list_attempts(delivery.id)] == [404, 204]


async def test_the_subscription_timeout_overrides_the_default(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sink.script("/hook", Reply(204, delay=3))
    delivery = await publish(store, subscription(sink.url(), delivery=settings(timeout=0.2)))

    async with running(store, policy=RetryPolicy.parse("0"), request_timeout=10):
        done = await settled(store, delivery.id, DeliveryStatus.DEAD)

    [attempt] = await store.list_attempts(delivery.id)
    assert attempt.error == "timed out after 0.2 s"
    assert done.last_error == "gave up after 1 attempts; last: timed out after 0.2 s"


async def test_circuit_opens_half_opens_and_closes(
    store: SqliteStore, sink: ScriptedSink, clock: FakeClock
) -> None:
    """Two 503s in the window open the circuit: nothing is sent until the pause is over, then
    one probe; its success closes the circuit and the rest follow."""
    sink.script("/hook", Reply(503), Reply(503))
    sub = subscription(sink.url())
    first = await publish(store, sub, "ev-1")
    others = [await publish(store, None, f"ev-{n}") for n in range(2, 5)]
    circuit = CircuitPolicy(min_requests=2, failure_ratio=0.5, pause=timedelta(seconds=30))
    policy = RetryPolicy.parse("0,0", repeat_last=True, max_age=timedelta(hours=1), jitter=0)

    async with running(store, policy, clock=clock, circuit=circuit, concurrency=1) as dispatcher:

        async def opened() -> bool:
            found = await store.get_circuit(sub.endpoint)
            return found is not None and found.state is CircuitState.OPEN

        await eventually(opened, "the circuit opened")
        sent_while_closed = len(sink.posts())
        assert sent_while_closed == 2
        dispatcher.wake()
        await asyncio.sleep(0)  # nothing to wait for: the dispatcher must not send
        assert await store.next_due_at() == clock.now() + timedelta(seconds=30)

        clock.advance(timedelta(seconds=31))
        dispatcher.wake()
        for delivery in [first, *others]:
            await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    closed = await store.get_circuit(sub.endpoint)
    assert closed is not None
    assert closed.state is CircuitState.CLOSED
    assert closed.failing_since is None
    assert len(sink.posts()) == 2 + 4


async def dead_and_healthy(
    store: SqliteStore, start_sink: Any, *, answer_after: float
) -> tuple[ScriptedSink, ScriptedSink]:
    """Two subscribed receivers, one answering only after `answer_after` seconds, and twelve
    events for both."""
    dead, healthy = start_sink(), start_sink()
    dead.default = Reply(204, delay=answer_after)
    await store.create_subscription(subscription(dead.url(), id="dead"))
    await store.create_subscription(subscription(healthy.url(), id="healthy"))
    for n in range(12):
        await publish(store, None, f"ev-{n}")
    return dead, healthy


async def test_a_dead_endpoint_costs_the_others_nothing(
    store: SqliteStore, start_sink: Any
) -> None:
    """A receiver that never answers holds at most `per_endpoint` slots; the healthy endpoint's
    deliveries all go out while the dead one's requests hang."""
    dead, healthy = await dead_and_healthy(store, start_sink, answer_after=5)

    async with running(store, concurrency=4, per_endpoint=2, request_timeout=5):
        await received(healthy, 12)
        assert len(dead.posts()) == 2


async def test_a_hanging_endpoint_does_not_hold_the_global_slots(
    store: SqliteStore, start_sink: Any
) -> None:
    """With as many global slots as the hanging endpoint may take, the healthy endpoint is
    still served at once: a send in flight past `slow_after` gives its global slot up (it keeps
    its endpoint's), so the others do not wait for the hanging requests to time out."""
    dead, healthy = await dead_and_healthy(store, start_sink, answer_after=8)

    async with running(store, concurrency=2, per_endpoint=2, request_timeout=8, slow_after=0.1):
        await received(healthy, 12)
        # The dead endpoint's two requests still hang: nothing of them is recorded yet.
        assert len(dead.posts()) == 2
        hanging = await store.list_deliveries(subscription_id="dead")
        assert [d.attempts for d in hanging] == [0] * 12


async def test_an_endpoint_that_timed_out_sends_in_the_slow_lane_at_once(
    store: SqliteStore, start_sink: Any
) -> None:
    """Once an endpoint's request has timed out, its next sends never hold a global slot (not
    even for `slow_after`): here `slow_after` is longer than the whole test, so only that rule
    lets the healthy endpoint through while the dead one's second pair of requests hangs."""
    dead, healthy = await dead_and_healthy(store, start_sink, answer_after=8)
    policy = RetryPolicy.parse("0,0", repeat_last=True, max_age=timedelta(hours=1), jitter=0)

    async with running(
        store, policy, concurrency=2, per_endpoint=2, request_timeout=1, slow_after=60
    ):
        await received(healthy, 12)
        # The first pair timed out (that made the endpoint suspect); the second pair hangs in
        # the slow lane. Without the rule, the dead endpoint's sends take both global slots a
        # second at a time and the healthy endpoint waits behind them, pair after pair.
        assert len(dead.posts()) <= 4


async def test_an_endpoint_not_heard_from_yet_sends_in_the_slow_lane_from_its_first_request(
    store: SqliteStore, start_sink: Any
) -> None:
    """A fresh dispatcher knows nothing of a dead endpoint: its sends hold no global slot until
    it has answered once. With `slow_after` longer than the test and as many global slots as
    the dead endpoint may take, only that rule lets the healthy endpoint through."""
    dead, healthy = await dead_and_healthy(store, start_sink, answer_after=8)

    async with running(store, concurrency=2, per_endpoint=2, request_timeout=8, slow_after=60):
        await received(healthy, 12)
        assert len(dead.posts()) == 2


async def test_an_endpoint_failing_too_long_is_disabled_and_announced(
    store: SqliteStore, start_sink: Any, clock: FakeClock
) -> None:
    failing, operators = start_sink(), start_sink()
    failing.default = Reply(503)
    watched = subscription(failing.url(), id="watched")
    ops = subscription(operators.url("/ops"), id="ops", types=(NOTICE_TYPE,))
    await store.create_subscription(ops)
    delivery = await publish(store, watched)
    circuit = CircuitPolicy(min_requests=100, disable_after=timedelta(hours=1))
    policy = RetryPolicy.parse("0,1h", repeat_last=True, max_age=timedelta(days=3), jitter=0)

    async with running(store, policy, clock=clock, circuit=circuit) as dispatcher:

        async def failed_once() -> bool:
            found = await store.get_delivery(delivery.id)
            return found is not None and found.attempts == 1

        await eventually(failed_once, "the first failure")
        clock.advance(timedelta(hours=1, seconds=1))
        dispatcher.wake()

        async def disabled() -> bool:
            found = await store.get_subscription("watched")
            return found is not None and found.status is SubscriptionStatus.DISABLED

        await eventually(disabled, "the subscription disabled")
        [notice] = await received(operators, 1)

    sub = await store.get_subscription("watched")
    assert sub is not None
    assert sub.status_reason is not None
    assert sub.status_reason.startswith(f"endpoint {watched.endpoint} failing since ")
    document = json.loads(notice.body)
    assert document["type"] == NOTICE_TYPE
    assert document["source"] == "urn:nld:digibridge"
    assert document["subject"] == "watched"
    assert document["data"]["subscriptionId"] == "watched"
    assert document["data"]["reason"] == sub.status_reason
    verify(SECRET, notice.headers, notice.body, now=clock.now())  # signed at the test's time
    pending = await store.get_delivery(delivery.id)
    assert pending is not None
    assert pending.status is DeliveryStatus.PENDING  # waits for the subscription's enable


async def test_410_is_announced_as_a_disabled_notice(store: SqliteStore, start_sink: Any) -> None:
    gone, operators = start_sink(), start_sink()
    gone.script("/hook", Reply(410))
    await store.create_subscription(
        subscription(operators.url("/ops"), id="ops", types=(NOTICE_TYPE,))
    )
    await publish(store, subscription(gone.url(), id="gone"))

    async with running(store):
        [notice] = await received(operators, 1)

    document = json.loads(notice.body)
    assert document["subject"] == "gone"
    assert document["data"]["reason"] == "410 Gone from sink"


async def test_ordered_subjects_stay_in_order_under_concurrent_failures(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    """Three subjects in parallel, a seeded third of all requests failing with 503."""
    rng = random.Random(7)
    replies = [
        Reply(503 if rng.random() < 0.33 else 204, delay=rng.uniform(0, 0.01)) for _ in range(200)
    ]
    sink.script("/hook", *replies)
    await store.create_subscription(subscription(sink.url(), delivery=settings(ordered=True)))
    ids: dict[str, list[str]] = {}
    for n in range(8):
        for subject in ("a", "b", "c"):
            event_id = f"{subject}-{n}"
            ids.setdefault(subject, []).append(event_id)
            await publish(store, None, event_id, subject=subject)
    policy = RetryPolicy.parse("0,0.01", repeat_last=True, max_age=timedelta(minutes=5))

    # A third of requests failing would open the circuit; this test is about order.
    circuit = CircuitPolicy(min_requests=1000)
    async with running(store, policy, concurrency=8, circuit=circuit):

        async def all_delivered() -> bool:
            done = await store.list_deliveries(status=DeliveryStatus.SUCCEEDED)
            return len(done) == 24

        await eventually(all_delivered, "24 deliveries succeeded", timeout=20)

    # The sink answers its requests with the scripted replies in arrival order.
    arrived = [
        (json.loads(post.body)["subject"], post.headers["webhook-id"], reply.status)
        for post, reply in zip(sink.posts(), replies, strict=False)
    ]
    assert {status for _s, _i, status in arrived} == {204, 503}
    for subject, expected in ids.items():
        seen = [event_id for s, event_id, _status in arrived if s == subject]
        # Retries repeat an id; the next id never arrives before the previous one succeeded.
        assert list(dict.fromkeys(seen)) == expected
        successes = [i for s, i, status in arrived if s == subject and status == 204]
        assert successes == expected
        for before, after in itertools.pairwise(seen):
            if before != after:
                assert (subject, before, 204) in arrived


async def test_binary_mode_sends_percent_encoded_ce_headers(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    subject = "Euro € 😀 100%"
    await publish(
        store,
        subscription(sink.url(), delivery=settings(mode="binary")),
        subject=subject,
        data={"plaats": "Zwolle"},
    )

    async with running(store):
        [request] = await received(sink, 1)

    headers = request.headers
    assert headers["ce-subject"] == "Euro%20%E2%82%AC%20%F0%9F%98%80%20100%25"
    assert headers["ce-id"] == "ev-1"
    assert "ce-datacontenttype" not in headers
    assert headers["content-type"] == "application/json"
    event = from_binary(HTTPMessage(headers=headers, body=request.body), JSONFormat())
    assert event.get_subject() == subject
    assert event.get_type() == "nl.brp.persoon-verhuisd"
    assert event.get_data() == {"plaats": "Zwolle"}
    Webhook(SECRET).verify(request.body, headers)


async def test_batch_mode_sends_arrays_within_the_limits(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sub = subscription(sink.url(), delivery=settings(mode="batch", batch_max_events=3))
    await store.create_subscription(sub)
    for n in range(5):
        await publish(store, None, f"ev-{n}")

    async with running(store):

        async def done() -> bool:
            found = await store.list_deliveries(status=DeliveryStatus.SUCCEEDED)
            return len(found) == 5

        await eventually(done, "5 deliveries succeeded")

    posts = sink.posts()
    # The two batches are sent concurrently: they may arrive in either order.
    batches = sorted((json.loads(p.body) for p in posts), key=lambda batch: batch[0]["id"])
    assert [len(batch) for batch in batches] == [3, 2]
    received = [event["id"] for batch in batches for event in batch]
    assert received == [f"ev-{n}" for n in range(5)]
    for post in posts:
        assert post.headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
        assert post.headers["webhook-id"].startswith("batch_")
        Webhook(SECRET).verify(post.body, post.headers)


@pytest.mark.parametrize("mode", ["structured", "binary", "batch"])
async def test_informatiearm_subscriptions_get_the_reduced_body(
    store: SqliteStore, sink: ScriptedSink, mode: str
) -> None:
    reduced = {"identificatie": "0599010000000001"}
    await publish(
        store,
        subscription(sink.url(), delivery=settings(form="informatiearm", mode=mode)),
        data={"identificatie": "0599010000000001", "bsn": "999999990"},
        informatiearm=reduced,
    )

    async with running(store):
        [request] = await received(sink, 1)

    assert b"999999990" not in request.body
    body = json.loads(request.body)
    data = body if mode == "binary" else (body[0] if mode == "batch" else body)["data"]
    assert data == reduced


async def test_v1a_signatures_verify_with_the_public_key(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    secret_key, public_key = generate_key_pair()
    await publish(store, subscription(sink.url(), delivery=DeliverySettings(secret=secret_key)))

    async with running(store):
        [request] = await received(sink, 1)

    assert request.headers["webhook-signature"].startswith("v1a,")
    verify(public_key, request.headers, request.body, now=datetime.now(UTC))


async def test_rotation_signs_with_old_and_new_keys_until_the_grace_period_ends(
    store: SqliteStore, sink: ScriptedSink, clock: FakeClock
) -> None:
    old, new = generate_secret(), generate_secret()
    rotating = DeliverySettings(
        secret=new,
        x_signature=True,
        previous_secrets=(PreviousKey(old, clock.now() + timedelta(hours=1)),),
    )
    sub = subscription(sink.url(), delivery=rotating)
    await publish(store, sub, "ev-1")

    async with running(store, clock=clock) as dispatcher:
        [during] = await received(sink, 1)
        clock.advance(timedelta(hours=2))
        await publish(store, None, "ev-2")
        dispatcher.wake()
        _during, after = await received(sink, 2)

    assert len(during.headers["webhook-signature"].split()) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split()) == 1
    expected = hmac.new(base64.b64decode(new.removeprefix("whsec_")), after.body, hashlib.sha256)
    assert after.headers["x-signature"] == "sha256=" + expected.hexdigest()
    stored = await store.get_subscription(sub.id)
    assert stored is not None
    assert stored.delivery == replace(rotating)

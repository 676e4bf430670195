"""Crashes lose nothing: the gateway under load is SIGKILLed at random moments, restarted, and
every acknowledged event still reaches the receiver (duplicates only as the same webhook-id)."""

from __future__ import annotations

import json
import random
import threading
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from digibridge.delivery.signing import generate_secret
from tests.support.events import ack_event_ids
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.sinks import Received, Reply, ScriptedSink
from tests.support.soap import envelope, headers_for, sample, with_kenmerk

pytestmark = pytest.mark.e2e

KILLS = 3


class Sender(threading.Thread):
    """Sends new DigiLevering messages until told to stop or the gateway goes away; records the
    event ids of every acknowledged message."""

    def __init__(self, gateway: GatewayProcess, acknowledged: list[str]) -> None:
        super().__init__(daemon=True)
        self.gateway = gateway
        self.acknowledged = acknowledged
        self.stopping = threading.Event()

    def run(self) -> None:
        template = sample("brp-verhuizing.xml")
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                document = with_kenmerk(template)
                try:
                    response = client.post(
                        self.gateway.wus_url,
                        content=envelope(document, to=self.gateway.wus_url),
                        headers=headers_for(document),
                    )
                except httpx.TransportError:
                    return  # killed mid-request: not acknowledged, so not counted
                if response.status_code == 200:
                    self.acknowledged.extend(ack_event_ids(response.content))


def whole(receiver: ScriptedSink) -> list[Received]:
    """The POSTs that arrived whole; one cut off by a kill never reached the receiver's app as a
    request, so it is no delivery."""
    return [p for p in receiver.posts() if len(p.body) == int(p.headers["content-length"])]


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    receiver = ScriptedSink(default=Reply(204, delay=0.05))  # slow: work piles up in the queue
    receiver.start()
    rng = random.Random(20260301)
    acknowledged: list[str] = []
    gateway = GatewayProcess(tmp_path / "gateway").start()
    try:
        subscribed = httpx.post(
            f"{gateway.url}/v1/subscriptions",
            json={"sink": receiver.url(), "delivery": {"secret": generate_secret()}},
        )
        assert subscribed.status_code == 201, subscribed.text
        for _kill in range(KILLS):
            sender = Sender(gateway, acknowledged)
            sender.start()
            target = len(acknowledged) + rng.randint(5, 25)
            wait_until(lambda t=target: len(acknowledged) >= t, timeout=30, what="acks")
            gateway.kill()
            sender.join(timeout=15)
            gateway.start()  # same data folder: restart after the crash

        wait_until(
            lambda: set(acknowledged) <= {p.headers["webhook-id"] for p in whole(receiver)},
            timeout=60,
            what="every acknowledged event delivered",
        )
        posts = whole(receiver)
    finally:
        gateway.stop()
        receiver.stop()

    bodies: dict[str, set[bytes]] = defaultdict(set)
    for post in posts:
        assert json.loads(post.body)["id"] == post.headers["webhook-id"]
        bodies[post.headers["webhook-id"]].add(post.body)
    assert set(acknowledged) <= set(bodies)
    # A duplicate is the same webhook-id with the same body: a retry, never a second event.
    assert all(len(variants) == 1 for variants in bodies.values())
    assert len(acknowledged) >= KILLS * 5

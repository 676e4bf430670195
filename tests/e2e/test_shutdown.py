"""SIGTERM drains: not ready at once, SOAP requests in flight answered, webhook sends in flight
finished (or, past `shutdown_timeout`, returned to the queue), exit code 0, and after a restart
every acknowledged event reaches the receiver."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn

from digibridge.app import create_app, drain
from digibridge.config import load_settings
from digibridge.delivery.signing import generate_secret
from tests.support.events import ack_event_ids
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port, wait_until
from tests.support.sinks import Received, Reply, ScriptedSink, eventually
from tests.support.soap import envelope, headers_for, sample, with_kenmerk

pytestmark = pytest.mark.e2e


class Sender(threading.Thread):
    """Sends new messages until the gateway stops answering; keeps the acknowledged event ids."""

    def __init__(self, gateway: GatewayProcess) -> None:
        super().__init__(daemon=True)
        self.gateway = gateway
        self.acknowledged: list[str] = []

    def run(self) -> None:
        template = sample("brp-verhuizing.xml")
        with httpx.Client(timeout=30) as client:
            while True:
                document = with_kenmerk(template)
                try:
                    response = client.post(
                        self.gateway.wus_url,
                        content=envelope(document, to=self.gateway.wus_url),
                        headers=headers_for(document),
                    )
                except httpx.TransportError:
                    return  # the listener is closed: the stop has begun
                if response.status_code == 200:
                    self.acknowledged.extend(ack_event_ids(response.content))


def whole(receiver: ScriptedSink) -> list[Received]:
    return [p for p in receiver.posts() if len(p.body) == int(p.headers["content-length"])]


def run_under_load_then_stop(
    gateway: GatewayProcess, receiver: ScriptedSink, in_flight: int
) -> tuple[list[str], int]:
    """Subscribe, send until `in_flight` webhooks are waiting at the receiver, SIGTERM; the
    acknowledged event ids and the exit code."""
    subscribed = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": receiver.url(), "delivery": {"secret": generate_secret()}},
    )
    assert subscribed.status_code == 201, subscribed.text
    sender = Sender(gateway)
    sender.start()
    wait_until(lambda: len(receiver.posts()) >= in_flight, timeout=30, what="webhooks in flight")
    code = gateway.stop()
    sender.join(timeout=30)
    assert not sender.is_alive()
    return sender.acknowledged, code


def test_sends_in_flight_finish_within_the_deadline_and_nothing_is_sent_twice(
    tmp_path: Path,
) -> None:
    receiver = ScriptedSink(default=Reply(204, delay=0.5))
    receiver.start()
    gateway = GatewayProcess(tmp_path / "gateway", env={"DIGIBRIDGE_SHUTDOWN_TIMEOUT": "10"})
    try:
        acknowledged, code = run_under_load_then_stop(gateway.start(), receiver, in_flight=4)
        assert code == 0
        stopped = gateway.log()
        assert '"gateway_draining"' in stopped
        assert '"dispatcher_leases_released"' not in stopped
        receiver.default = Reply(204)
        gateway.start()
        wait_until(
            lambda: set(acknowledged) <= {p.headers["webhook-id"] for p in whole(receiver)},
            timeout=30,
            what="every acknowledged event delivered after the restart",
        )
    finally:
        gateway.stop()
        receiver.stop()
    ids = [p.headers["webhook-id"] for p in whole(receiver)]
    assert len(acknowledged) >= 4
    # The sends in flight at the stop were finished and recorded: none went out again.
    assert len(ids) == len(set(ids))


def test_sends_past_the_deadline_go_back_to_the_queue_and_go_out_after_a_restart(
    tmp_path: Path,
) -> None:
    receiver = ScriptedSink(default=Reply(204, delay=5))
    receiver.start()
    gateway = GatewayProcess(tmp_path / "gateway", env={"DIGIBRIDGE_SHUTDOWN_TIMEOUT": "0.3"})
    try:
        acknowledged, code = run_under_load_then_stop(gateway.start(), receiver, in_flight=3)
        assert code == 0
        assert '"dispatcher_leases_released"' in gateway.log()
        receiver.default = Reply(204)
        gateway.start()
        wait_until(
            lambda: set(acknowledged) <= {p.headers["webhook-id"] for p in whole(receiver)},
            timeout=30,
            what="every acknowledged event delivered after the restart",
        )
    finally:
        gateway.stop()
        receiver.stop()
    assert len(acknowledged) >= 3


def test_readyz_turns_503_as_the_drain_begins_while_liveness_stays(tmp_path: Path) -> None:
    """The app under uvicorn in this process (its loop is the test's), the drain begun the
    way `serve` begins it on SIGTERM, the server still answering."""
    port = free_port()
    settings = load_settings(store_url=f"sqlite:///{tmp_path / 'digibridge.db'}", port=port)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    url = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        serving = asyncio.create_task(server.serve())

        async def started() -> bool:
            return server.started

        try:
            await eventually(started, "the in-process gateway started")
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/readyz")).status_code == 200
                drain(app)()
                readyz = await client.get("/readyz")
                assert readyz.status_code == 503
                assert readyz.json()["checks"]["started"] is False
                assert (await client.get("/healthz")).status_code == 200
                assert "digibridge_ready 0.0" in (await client.get("/metrics")).text
        finally:
            server.should_exit = True
            await serving

    asyncio.run(scenario())

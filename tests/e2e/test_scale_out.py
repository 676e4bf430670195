"""Several gateway processes on one PostgreSQL database: the store is all they share.

Real `digibridge serve` processes, a real receiver that notes for every webhook-id how many
requests for it are in flight at once, SOAP messages sent round-robin; one instance SIGKILLed
mid-load; and (where allowed) the database itself restarted mid-load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from digibridge.delivery.signing import generate_secret
from tests.support.events import ack_duplicate, ack_event_ids
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port, wait_until
from tests.support.postgres import fresh_schema
from tests.support.sinks import Reply, ScriptedSink
from tests.support.soap import envelope, fault_code, headers_for, sample, with_kenmerk

pytestmark = pytest.mark.e2e

TEMPLATE = sample("brp-verhuizing.xml")
#: Seconds the receiver takes per webhook: long enough that sends overlap in time.
HOLD = 0.02
#: The delivery lease of the kill test: requests are capped at a quarter of it (0.75 s).
LEASE = 3.0


class OverlapSink(ScriptedSink):
    """A receiver that records, per webhook-id, every arrival (wall clock) and whether a
    request for it came in while another for it was still being answered."""

    def __init__(self, hold: float = HOLD) -> None:
        self.in_flight: Counter[str] = Counter()
        self.overlapping: list[str] = []
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        super().__init__(default=Reply(204, delay=hold))

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers", []))
        webhook_id = headers.get(b"webhook-id", b"").decode()
        if scope.get("method") != "POST" or not webhook_id:
            await super()._app(scope, receive, send)
            return
        with self._lock:
            self.arrivals[webhook_id].append(time.time())
            self.in_flight[webhook_id] += 1
            if self.in_flight[webhook_id] > 1:
                self.overlapping.append(webhook_id)
        try:
            await super()._app(scope, receive, send)
        finally:
            with self._lock:
                self.in_flight[webhook_id] -= 1

    def delivered(self) -> set[str]:
        with self._lock:
            return set(self.arrivals)

    def count(self, webhook_id: str) -> int:
        with self._lock:
            return len(self.arrivals[webhook_id])

    def arrived_after(self, webhook_id: str, moment: float) -> list[float]:
        with self._lock:
            return [at for at in self.arrivals[webhook_id] if at > moment]


@pytest.fixture
def sink() -> Iterator[OverlapSink]:
    server = OverlapSink()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def start_all(gateways: list[GatewayProcess]) -> None:
    """Start them at the same moment: their migrations race for the same schema."""
    with ThreadPoolExecutor(len(gateways)) as pool:
        list(pool.map(lambda gateway: gateway.start(timeout=60), gateways))


def gateways_on(url: str, tmp_path: Path, count: int, **env: str) -> list[GatewayProcess]:
    return [
        GatewayProcess(tmp_path / f"gateway-{n}", env={"DIGIBRIDGE_STORE_URL": url, **env})
        for n in range(count)
    ]


def subscribe(gateway: GatewayProcess, sink: str) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": sink, "delivery": {"secret": generate_secret()}},
        timeout=30,
    )
    assert response.status_code == 201, response.text


def post(client: httpx.Client, gateway: GatewayProcess, body: bytes) -> httpx.Response:
    return client.post(gateway.wus_url, content=body, headers=headers_for(TEMPLATE), timeout=30)


def send_round_robin(gateways: list[GatewayProcess], count: int) -> list[str]:
    """`count` new messages, message n to gateway n mod len; the acknowledged event ids."""

    def one(number: int) -> list[str]:
        gateway = gateways[number % len(gateways)]
        with httpx.Client() as client:
            response = post(client, gateway, envelope(with_kenmerk(TEMPLATE), to=gateway.wus_url))
        assert response.status_code == 200, response.text
        return ack_event_ids(response.content)

    with ThreadPoolExecutor(6) as pool:
        return [event_id for ids in pool.map(one, range(count)) for event_id in ids]


def succeeded(gateway: GatewayProcess) -> int:
    """Webhooks this instance sent with success, from its own `/metrics`."""
    response = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == "digibridge_deliveries_total"
            and sample.labels.get("result") == "succeeded"
        )
    )


def stop_all(gateways: list[GatewayProcess]) -> None:
    for gateway in gateways:
        if gateway.process is not None:
            gateway.stop()


def test_three_instances_share_the_work_and_never_send_one_delivery_twice_at_once(
    store_url: str, sink: OverlapSink, tmp_path: Path
) -> None:
    gateways = gateways_on(store_url, tmp_path, 3)
    try:
        start_all(gateways)
        subscribe(gateways[0], sink.url())
        acknowledged = send_round_robin(gateways, 60)

        # The same message (same MessageID and kenmerk) to two instances at the same moment.
        twins: list[tuple[httpx.Response, httpx.Response]] = []
        for number in range(8):
            first, second = gateways[number % 3], gateways[(number + 1) % 3]
            body = envelope(with_kenmerk(TEMPLATE))
            barrier = threading.Barrier(2)

            def at_once(
                gateway: GatewayProcess,
                body: bytes = body,
                barrier: threading.Barrier = barrier,
            ) -> httpx.Response:
                with httpx.Client() as client:
                    barrier.wait()
                    return post(client, gateway, body)

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(at_once, (first, second)))
            twins.append((answers[0], answers[1]))
        for one, other in twins:
            assert one.status_code == other.status_code == 200, (one.text, other.text)
            assert ack_event_ids(one.content) == ack_event_ids(other.content)
            # Exactly one of the two stored it; the other was told it is a duplicate.
            assert sorted([ack_duplicate(one.content), ack_duplicate(other.content)]) == [
                False,
                True,
            ]
            acknowledged += ack_event_ids(one.content)

        assert len(set(acknowledged)) == len(acknowledged) == 68
        wait_until(
            lambda: sink.delivered() >= set(acknowledged),
            timeout=30,
            what="every acknowledged event at the receiver",
        )
        assert sink.overlapping == []
        assert all(sink.count(event_id) == 1 for event_id in acknowledged)
        assert sink.delivered() == set(acknowledged)
        # Each webhook was sent by exactly one instance, and the work was shared.
        sent = [succeeded(gateway) for gateway in gateways]
        assert sum(sent) == len(acknowledged), sent
        assert sum(1 for count in sent if count) >= 2, sent
    finally:
        stop_all(gateways)


def leases_of(url: str, owner_suffix: str, *, claimed_within: float | None = None) -> list[Any]:
    """(event id, lease end as unix time) of the pending deliveries leased by an owner; with
    `claimed_within`, only those whose lease (of `LEASE` seconds) began that recently."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT event_id, extract(epoch FROM lease_until) FROM deliveries"
            " WHERE status = 'pending' AND lease_owner LIKE %s"
            " AND lease_until > now() + make_interval(secs => %s)",
            (f"%:{owner_suffix}", -1.0 if claimed_within is None else LEASE - claimed_within),
        ).fetchall()
    return [(str(event_id), float(until)) for event_id, until in rows]


def test_a_killed_instances_claims_are_taken_over_after_the_lease(
    store_url: str, tmp_path: Path
) -> None:
    sink = OverlapSink(hold=0.5)  # slow, so work piles up and every instance holds claims
    sink.start()
    gateways = gateways_on(store_url, tmp_path, 3, DIGIBRIDGE_DELIVERY_LEASE=str(LEASE))
    try:
        start_all(gateways)
        subscribe(gateways[0], sink.url())
        victim, survivors = gateways[2], gateways[:2]
        assert victim.process is not None
        pid = str(victim.process.pid)
        with ThreadPoolExecutor(1) as pool:
            # Messages go to the survivors; the victim's dispatcher claims from the shared queue.
            sending = pool.submit(send_round_robin, survivors, 60)
            # Killed right after a claim: its request (0.5 s at the receiver) is still running.
            wait_until(
                lambda: leases_of(store_url, pid, claimed_within=0.2),
                timeout=20,
                what="the victim claiming a delivery",
            )
            victim.kill()
            killed_at = time.time()
            # Read at once: on a slow machine the rest of the sending outlasts the lease, and
            # the survivors' claims would already have taken these rows over.
            orphaned = leases_of(store_url, pid)
            acknowledged = sending.result()
        assert orphaned

        # The dead instance's claims are sent by the survivors (whether or not its own request
        # reached the receiver before it died: it never recorded the outcome).
        wait_until(
            lambda: (
                all(sink.arrived_after(event_id, killed_at) for event_id, _ in orphaned)
                and sink.delivered() >= set(acknowledged)
            ),
            timeout=30,
            what="the dead instance's claims taken over, every acknowledged event delivered",
        )
        for event_id, lease_until in orphaned:
            # Taken over only once the dead instance's lease had run out.
            assert min(sink.arrived_after(event_id, killed_at)) >= lease_until - 0.05, event_id
        assert sink.overlapping == []
    finally:
        stop_all(gateways)
        sink.stop()


def _may_make_clusters() -> bool:
    """Root with the PostgreSQL cluster tools, and CI or DIGIBRIDGE_TEST_PG_RESTART=1."""
    allowed = os.environ.get("DIGIBRIDGE_TEST_PG_RESTART") == "1" or bool(os.environ.get("CI"))
    return (
        allowed
        and os.geteuid() == 0
        and os.path.isdir("/etc/postgresql")
        and all(shutil.which(tool) for tool in ("pg_createcluster", "pg_ctlcluster"))
    )


def pg_ctl(cluster: list[str], action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def private_cluster() -> Iterator[tuple[list[str], str]]:
    """A throwaway PostgreSQL cluster of its own (trust auth, a free port), so restarting it
    disturbs no other test; dropped afterwards. `(cluster, store URL)`."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    cluster = [version, f"digibridge_restart_{os.getpid()}"]
    port = free_port()
    subprocess.run(
        ["pg_createcluster", *cluster, "-p", str(port), "--", "--auth=trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        pg_ctl(cluster, "start")
        yield cluster, f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", *cluster], check=False, capture_output=True, timeout=120
        )


@pytest.mark.skipif(
    not _may_make_clusters(),
    reason="makes and restarts a PostgreSQL cluster: only as root with CI or "
    "DIGIBRIDGE_TEST_PG_RESTART=1",
)
def test_a_database_restart_mid_load_loses_nothing_acknowledged(
    private_cluster: tuple[list[str], str], sink: OverlapSink, tmp_path: Path
) -> None:
    cluster, store_url = private_cluster
    # A request waits this long for a database connection before it is answered with 0051;
    # a send whose outcome could not be written while the database was down goes out again
    # when its lease ends (at-least-once), so the lease is short here.
    gateways = gateways_on(
        store_url,
        tmp_path,
        2,
        DIGIBRIDGE_STORE_CONNECT_TIMEOUT="2",
        DIGIBRIDGE_DELIVERY_LEASE="4",
    )
    acknowledged: list[str] = []
    faults: Counter[str] = Counter()
    stopping = threading.Event()

    def keep_sending(gateway: GatewayProcess) -> None:
        with httpx.Client() as client:
            while not stopping.is_set():
                try:
                    response = post(
                        client, gateway, envelope(with_kenmerk(TEMPLATE), to=gateway.wus_url)
                    )
                except httpx.TransportError:
                    faults["transport"] += 1
                    continue
                if response.status_code == 200:
                    acknowledged.extend(ack_event_ids(response.content))
                else:
                    faults[fault_code(response.content)] += 1

    try:
        start_all(gateways)
        subscribe(gateways[0], sink.url())
        senders = [threading.Thread(target=keep_sending, args=(g,)) for g in gateways]
        for sender in senders:
            sender.start()
        wait_until(lambda: len(acknowledged) >= 20, timeout=20, what="acknowledgements")
        pg_ctl(cluster, "stop")
        try:
            wait_until(lambda: faults["0051"] >= 2, timeout=20, what="Faults 0051 while down")
            # Readiness says so at once (a load balancer stops sending), not after a timeout.
            readyz = httpx.get(f"{gateways[0].url}/readyz", timeout=4.5)
            assert readyz.status_code == 503
            assert readyz.json()["checks"]["store"] is False
        finally:
            pg_ctl(cluster, "start")
        before = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= before + 20, timeout=30, what="reconnected")
        assert all(httpx.get(f"{g.url}/readyz", timeout=10).status_code == 200 for g in gateways)
        stopping.set()
        for sender in senders:
            sender.join(timeout=30)
        assert set(faults) <= {"0051"}, faults
        wait_until(
            lambda: sink.delivered() >= set(acknowledged),
            timeout=30,
            what="every acknowledged event delivered",
        )
        assert sink.overlapping == []
    finally:
        stopping.set()
        stop_all(gateways)

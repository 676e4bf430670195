"""`digibridge serve --workers 2`: several gateway processes on one port and one SQLite file.

Messages spread over the workers, every acknowledged event is delivered once, a killed worker
is replaced without losing anything, and so is a stuck one, a stop drains every worker, and a
killed parent leaves no worker behind holding the file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from digibridge.delivery.signing import generate_secret
from digibridge.store.types import process_owner
from tests.support.gateway import GatewayProcess, send_message
from tests.support.net import free_port, wait_until
from tests.support.postgres import fresh_schema
from tests.support.sinks import Reply, ScriptedSink

pytestmark = pytest.mark.e2e


def log_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    lines = []
    for line in gateway.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # one whole JSON object per line, never two
    return lines


def worker_pids(gateway: GatewayProcess) -> set[int]:
    assert gateway.process is not None
    children = Path(f"/proc/{gateway.process.pid}/task/{gateway.process.pid}/children")
    pids = {int(pid) for pid in children.read_text().split()}
    # The spawn machinery's resource tracker is a child too; workers log with their pid.
    started = {line["worker"] for line in log_lines(gateway) if line["event"] == "gateway_started"}
    return pids & started


def replaced(gateway: GatewayProcess, before: set[int], how: str) -> None:
    """Wait until one worker of `before` has a new worker in its place."""
    wait_until(
        lambda: len(worker_pids(gateway) - before) == 1,
        timeout=30,
        what=f"a new worker in the {how} one's place",
    )


def subscribe(gateway: GatewayProcess, receiver: ScriptedSink) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": receiver.url(), "delivery": {"secret": generate_secret()}},
    )
    assert response.status_code == 201, response.text


def delivered(receiver: ScriptedSink) -> Counter[str]:
    return Counter(post.headers["webhook-id"] for post in receiver.posts())


def metric(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples with `labels`, from `/metrics` on a new connection (any
    worker may answer)."""
    response = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert response.status_code == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_workers_share_the_messages_and_deliver_each_event_once(store: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        env = {}
        if store == "postgres":  # each worker an instance like any other
            env["DIGIBRIDGE_STORE_URL"] = stack.enter_context(fresh_schema())
        receiver = ScriptedSink()
        receiver.start()
        stack.callback(receiver.stop)
        gateway = GatewayProcess(tmp_path, env, workers=2).start()
        try:
            lines = _share_and_deliver(gateway, receiver)
        finally:
            assert gateway.stop() == 0

    accepted_by = Counter(line["worker"] for line in lines if line["event"] == "soap_accepted")
    assert len(accepted_by) == 2, accepted_by  # both workers took messages
    assert sum(accepted_by.values()) == 80


def _share_and_deliver(gateway: GatewayProcess, receiver: ScriptedSink) -> list[dict[str, Any]]:
    """80 messages on new connections: every event delivered once, counted once in `/metrics`
    whichever worker answers; the log lines."""
    subscribe(gateway, receiver)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda _: send_message(gateway), range(80))
        acknowledged = [event_id for ids in answers for event_id in ids]
    wait_until(
        lambda: set(acknowledged) <= set(delivered(receiver)),
        timeout=30,
        what="every acknowledged event delivered",
    )
    # Whichever worker answers, /metrics counts what all of them did.
    for _ in range(6):
        accepted = "digibridge_inbound_messages_total"
        assert metric(gateway, accepted, result="accepted") == 80
        assert metric(gateway, "digibridge_events_total") == 80
        assert metric(gateway, "digibridge_ready") == 1
    wait_until(
        lambda: metric(gateway, "digibridge_deliveries_total", result="succeeded") == 80,
        timeout=10,
        what="every delivery counted",
    )
    assert len(set(acknowledged)) == 80
    assert set(delivered(receiver).values()) == {1}  # once each: leases hold across workers
    return log_lines(gateway)


def pending(gateway: GatewayProcess, owner: str | None = None) -> int:
    """How many deliveries are still pending (leased by `owner`, if given), read from the
    running gateway's store: the SQLite file beside it, or its PostgreSQL schema."""
    url = gateway.env["DIGIBRIDGE_STORE_URL"]
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as database:
            (count,) = database.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'"
                " AND (:owner IS NULL OR lease_owner = :owner)",
                {"owner": owner},
            ).fetchone()
        return int(count)
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'pending'"
            " AND (%(owner)s::text IS NULL OR lease_owner = %(owner)s)",
            {"owner": owner},
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_killed_worker_is_replaced_and_no_acknowledged_event_is_lost(
    store: str, tmp_path: Path
) -> None:
    """The worker is killed while it has webhooks in flight (the receiver answers slowly):
    its parent hands its leases back at once, so its deliveries go out again within the test,
    not after their leases run out minutes later."""
    schema = fresh_schema() if store == "postgres" else contextlib.nullcontext(None)
    with schema as store_url:
        env = {} if store_url is None else {"DIGIBRIDGE_STORE_URL": store_url}
        _kill_a_worker_in_flight(GatewayProcess(tmp_path, env, workers=2))


def _kill_a_worker_in_flight(gateway: GatewayProcess) -> None:
    receiver = ScriptedSink(default=Reply(delay=0.3))
    receiver.start()
    gateway.start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set():
            try:
                acknowledged.extend(send_message(gateway))
            except (httpx.TransportError, AssertionError):
                continue  # cut off by the kill: not acknowledged, so not counted

    try:
        subscribe(gateway, receiver)
        before = worker_pids(gateway)
        assert len(before) == 2
        senders = [threading.Thread(target=keep_sending) for _ in range(3)]
        for sender in senders:
            sender.start()
        wait_until(lambda: len(acknowledged) >= 20, timeout=30, what="messages acknowledged")
        victim = min(before)
        in_flight = process_owner(victim)
        wait_until(lambda: pending(gateway, in_flight), timeout=30, what="a webhook in flight")
        os.kill(victim, signal.SIGKILL)
        replaced(gateway, before, "killed")
        count = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= count + 20, timeout=30, what="serving on")
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
        wait_until(
            lambda: set(acknowledged) <= set(delivered(receiver)),
            timeout=60,
            what="every acknowledged event delivered",
        )
        # Also those whose sending the kill cut short, or that were claimed and not yet sent.
        wait_until(lambda: pending(gateway) == 0, timeout=60, what="every delivery recorded")
        lines = log_lines(gateway)
    finally:
        stop.set()
        gateway.stop()
        receiver.stop()

    assert victim not in worker_pids_of(lines, "gateway_stopped")
    assert any(line["event"] == "worker_died" and line["pid"] == victim for line in lines)
    assert any(
        line["event"] == "leases_released" and line["pid"] == victim and line["count"] >= 1
        for line in lines
    )


def test_a_stuck_worker_is_replaced_and_its_connections_are_served(tmp_path: Path) -> None:
    """SIGSTOP: the worker is alive but its event loop does not turn, and the kernel still
    queues new connections for it. Its parent notices the silent heartbeat, kills it and starts
    another on the same socket, which serves what was queued."""
    receiver = ScriptedSink()
    receiver.start()
    gateway = GatewayProcess(tmp_path, {"DIGIBRIDGE_WORKER_TIMEOUT": "2"}, workers=2).start()
    try:
        subscribe(gateway, receiver)
        before = worker_pids(gateway)
        victim = min(before)
        os.kill(victim, signal.SIGSTOP)
        # About half of these connections go to the stopped worker's socket and wait there.
        with ThreadPoolExecutor(max_workers=8) as pool:
            sent = list(pool.map(lambda _: send_message(gateway), range(12)))
        acknowledged = [event for events in sent for event in events]
        replaced(gateway, before, "stuck")
        wait_until(
            lambda: set(acknowledged) <= set(delivered(receiver)),
            timeout=30,
            what="every acknowledged event delivered",
        )
        lines = log_lines(gateway)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGCONT)
        gateway.stop()
        receiver.stop()

    stuck = [line for line in lines if line["event"] == "worker_stuck"]
    assert [line["pid"] for line in stuck] == [victim]
    assert stuck[0]["silent_seconds"] >= 2
    assert any(line["event"] == "worker_died" and line["pid"] == victim for line in lines)


def test_a_worker_that_drains_by_itself_is_not_taken_for_stuck(tmp_path: Path) -> None:
    """A worker sent SIGTERM on its own stops beating while it waits for a slow webhook; its
    parent gives it the stop's time limit and starts another once it has drained."""
    receiver = ScriptedSink(default=Reply(delay=3))
    receiver.start()
    gateway = GatewayProcess(tmp_path, {"DIGIBRIDGE_WORKER_TIMEOUT": "1"}, workers=2).start()
    try:
        subscribe(gateway, receiver)
        before = worker_pids(gateway)
        victim = min(before)
        in_flight = process_owner(victim)
        stop = threading.Event()

        def keep_sending() -> None:
            while not stop.is_set() and not pending(gateway, in_flight):
                send_message(gateway)

        with ThreadPoolExecutor(max_workers=2) as pool:
            senders = [pool.submit(keep_sending) for _ in range(2)]
            wait_until(lambda: pending(gateway, in_flight), timeout=30, what="a webhook in flight")
            stop.set()
            for sender in senders:
                sender.result()
        os.kill(victim, signal.SIGTERM)
        replaced(gateway, before, "drained")
        lines = log_lines(gateway)
    finally:
        gateway.stop()
        receiver.stop()

    assert victim in worker_pids_of(lines, "gateway_stopped")
    assert not [line for line in lines if line["event"] == "worker_stuck"]
    died = [line for line in lines if line["event"] == "worker_died" and line["pid"] == victim]
    assert [line["exit_code"] for line in died] == [0]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_writes_every_gateway_process_s_stacks_and_changes_nothing(
    workers: int, tmp_path: Path
) -> None:
    """What the parent asks of a stuck worker before it kills it, so the log shows where it
    was stuck. Sent to the gateway (to the parent, with `--workers`, which passes it on), it
    writes the stacks of every process that serves, which then serve on."""
    gateway = GatewayProcess(tmp_path, workers=workers).start()
    assert gateway.process is not None
    try:
        before = worker_pids(gateway) if workers > 1 else set()
        gateway.process.send_signal(signal.SIGUSR1)
        # One dump per process, each naming the thread that wrote it "Current thread".
        wait_until(
            lambda: gateway.log().count("Current thread 0x") == workers,
            timeout=10,
            what="every process's stacks in the log",
        )
        assert "serving.py" in gateway.log()  # where the main thread waits: the served loop
        assert gateway.alive()
        if workers > 1:
            assert worker_pids(gateway) == before
        for _ in range(4):
            send_message(gateway)
    finally:
        assert gateway.stop() == 0


def worker_pids_of(lines: list[dict[str, Any]], event: str) -> set[int]:
    return {line["worker"] for line in lines if line["event"] == event and "worker" in line}


def test_a_reload_by_api_or_sighup_reloads_every_worker(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, workers=2).start()
    try:
        pids = worker_pids(gateway)
        reloaded = httpx.post(f"{gateway.url}/v1/admin/reload", timeout=30)
        assert reloaded.status_code == 200, reloaded.text
        wait_until(
            lambda: worker_pids_of(log_lines(gateway), "mappings_reloaded") == pids,
            timeout=30,
            what="both workers reloaded",
        )
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: (
                Counter(
                    line["worker"]
                    for line in log_lines(gateway)
                    if line["event"] == "mappings_reloaded" and line["trigger"] == "SIGHUP"
                ).keys()
                == pids
                and all(
                    count >= 2
                    for count in Counter(
                        line["worker"]
                        for line in log_lines(gateway)
                        if line["event"] == "mappings_reloaded"
                    ).values()
                )
            ),
            timeout=30,
            what="both workers reloaded again on SIGHUP",
        )
        send_message(gateway)
    finally:
        assert gateway.stop() == 0


def test_sigterm_drains_every_worker_and_exits_0(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, workers=2).start()
    send_message(gateway)
    pids = worker_pids(gateway)
    assert len(pids) == 2

    assert gateway.stop() == 0

    lines = log_lines(gateway)
    assert worker_pids_of(lines, "gateway_stopped") == pids
    assert lines[-1]["event"] == "workers_stopped"
    assert lines[-1]["failed"] is False
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[1].split()[0] == "Z"


def test_workers_stop_when_their_parent_is_killed_and_free_the_file(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, workers=2).start()
    pids = worker_pids(gateway)
    gateway.kill()  # SIGKILL: the parent has no chance to stop its workers

    wait_until(
        lambda: all(not Path(f"/proc/{pid}").exists() or _is_zombie(pid) for pid in pids),
        timeout=30,
        what="orphaned workers gone",
    )
    lines = log_lines(gateway)
    assert worker_pids_of(lines, "worker_orphaned") == pids
    assert worker_pids_of(lines, "gateway_stopped") == pids  # a drained stop, not a crash

    again = GatewayProcess(tmp_path, workers=2).start()  # the file's lock went with them
    try:
        send_message(again)
    finally:
        assert again.stop() == 0


def test_a_second_gateway_on_the_file_or_the_port_is_refused(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "first", workers=2).start()
    try:
        same_file = subprocess.run(
            [sys.executable, "-m", "digibridge", "serve", "--port", str(free_port())],
            env=gateway.env,
            cwd=gateway.data_dir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        other = tmp_path / "second"
        other.mkdir()
        same_port = subprocess.run(
            [sys.executable, "-m", "digibridge", "serve", "--port", str(gateway.port)],
            env={**gateway.env, "DIGIBRIDGE_STORE_URL": f"sqlite:///{other / 'd.db'}"},
            cwd=other,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        send_message(gateway)  # still serving, on its own
    finally:
        gateway.stop()

    assert same_file.returncode == 2
    assert "in use by another digibridge process" in same_file.stderr
    assert same_port.returncode == 1
    assert f"cannot listen on 127.0.0.1:{gateway.port}" in same_port.stderr

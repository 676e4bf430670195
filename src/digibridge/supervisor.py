"""`serve --workers N`: a parent process that owns the store and keeps N gateway processes
serving one listening socket.

One process is one GIL: parsing, mapping, storing and sending are Python, so one gateway
process uses one core however many the machine has. Each worker runs the whole gateway (SOAP
endpoint, API, dispatcher), and the store is where they meet (leases, as for several instances,
docs/scaling.md). The parent binds one socket per worker on the same port (`SO_REUSEPORT`), so
the kernel spreads new connections evenly; on one shared socket the first worker to wake took
nearly all of them. The parent keeps the sockets: connections that arrive for a worker that
died wait in its socket's queue for the worker that replaces it.

The parent
- owns a SQLite file: it takes the file's lock and releases the leases a killed process left,
  once, before any worker starts; the workers inherit the lock, so it lasts as long as the last
  of them;
- forwards SIGTERM and SIGINT (drain and stop), SIGHUP (reload the mappings) and SIGUSR1
  (write your stacks) to every worker; a worker that reloads on `POST /v1/admin/reload` sends
  its parent SIGHUP, so all reload;
- gives the workers a folder for their metrics, which `/metrics` on any of them adds up;
- starts a worker again when one dies, unless it died before it served: then the next would
  too, and the parent stops them all;
- replaces a worker that is alive but stuck: its event loop has not turned (its heartbeat)
  for `worker_timeout` seconds. The parent first has it write its threads' stacks to the log
  (SIGUSR1), then kills it, and from there on it is a dead worker.
A worker stops by itself (drains, as on SIGTERM) when its parent is gone, so a killed parent
leaves no gateway behind holding the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.reduction import DupFd
from typing import Any

import structlog
from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE

from digibridge.clock import SystemClock
from digibridge.config import Settings
from digibridge.errors import DigibridgeError
from digibridge.heartbeat import DUMP_STACKS, Heartbeat
from digibridge.logs import configure_logging
from digibridge.metrics import MULTIPROCESS_DIR
from digibridge.store import _file_locks
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import Store, process_owner

log = structlog.get_logger("digibridge.supervisor")
_spawn = multiprocessing.get_context("spawn")
#: Seconds a worker is given beyond `shutdown_timeout` to finish its stop before it is killed.
_STOP_MARGIN = 15.0
#: Seconds between a worker's death and its replacement (a crash loop stays slow).
_RESTART_DELAY = 1.0
#: How often a worker checks that its parent still lives.
_PARENT_CHECK = 1.0
#: Seconds a stuck worker is given to write its stacks before it is killed.
_DUMP_WAIT = 1.0


class InheritedFd:
    """A file descriptor a spawned worker inherits (the store's owner lock): pickled while the
    worker is spawned, as multiprocessing does for sockets."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _inherit, (DupFd(self.fd),)


def _inherit(duplicate: Any) -> InheritedFd:
    return InheritedFd(duplicate.detach())


@dataclass
class _Worker:
    process: SpawnProcess
    heartbeat: Heartbeat
    started: float = field(default_factory=time.monotonic)
    #: When the parent found it stuck and asked for its stacks.
    stuck_at: float | None = None


def run(settings: Settings) -> None:
    """Serve with `settings.workers` processes until SIGTERM or SIGINT; exits with the
    status `serve` documents (0 after a drained stop)."""
    listeners = bind_listeners(settings.host, settings.port, settings.workers)
    metrics_dir = tempfile.mkdtemp(prefix="digibridge-metrics-")
    os.environ[MULTIPROCESS_DIR] = metrics_dir  # the workers inherit it
    try:
        owner_fd = asyncio.run(_own_store(settings))
        try:
            code = _Supervisor(settings, listeners, owner_fd, metrics_dir).run()
        finally:
            if owner_fd is not None:
                _file_locks.disown(owner_fd)
    finally:
        for listener in listeners:
            listener.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(code)


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets bound to one address with `SO_REUSEPORT`; DigibridgeError when the
    address cannot be bound. The address is first bound without that option, so that a port
    some other process listens on (even another gateway's workers) is refused, not shared."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listeners: list[socket.socket] = []
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        for _ in range(count):
            listener = socket.socket(family, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise DigibridgeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return listeners


async def _own_store(settings: Settings) -> int | None:
    """Take a SQLite file's lock and release the leases of the process that held it last
    (nobody else can hold one now); the lock's descriptor. None for PostgreSQL, which the
    workers share like any other instances."""
    path = settings.sqlite_path
    if path is None:
        return None
    fd = _file_locks.own(path)
    try:
        released, dmks_released = await _release_in(SqliteStore(path, shared=True), None)
    except BaseException:
        _file_locks.disown(fd)
        raise
    if released or dmks_released:
        log.info("leases_released", count=released, dmks=dmks_released)
    return fd


def _hand_back_leases(settings: Settings, pid: int | None) -> None:
    """Return to the queue what a dead worker had leased: deliveries and DigiMelding requests.
    Left alone, they would wait for their leases to run out (minutes), while its siblings'
    leases in the same store are live and must stay. Sent again, they may arrive twice, as
    after any crash (at-least-once)."""
    if pid is None:  # never started
        return
    owner = process_owner(pid)
    try:
        released, dmks_released = asyncio.run(_release_leases(settings, owner))
    except Exception as exc:  # noqa: BLE001 - the leases still run out by themselves
        log.warning("leases_not_released", pid=pid, error=str(exc))
        return
    if released or dmks_released:
        log.info("leases_released", pid=pid, count=released, dmks=dmks_released)


async def _release_leases(settings: Settings, owner: str) -> tuple[int, int]:
    from digibridge.app import open_store  # noqa: PLC0415 - the web app only when needed

    return await _release_in(open_store(settings, SystemClock(), worker=True), owner)


async def _release_in(store: Store, owner: str | None) -> tuple[int, int]:
    """Open `store`, return `owner`'s leases (everyone's when None) to the queue, close it: how
    many deliveries and DigiMelding requests."""
    await store.open()
    try:
        return await store.release_leases(owner), await store.release_dmks_leases(owner)
    finally:
        await store.close()


class _Supervisor:
    def __init__(
        self,
        settings: Settings,
        listeners: list[socket.socket],
        owner_fd: int | None,
        metrics_dir: str,
    ) -> None:
        self._settings = settings
        self._metrics_dir = metrics_dir
        self._listeners = listeners
        self._owner = None if owner_fd is None else InheritedFd(owner_fd)
        self._workers: list[_Worker | None] = [None] * settings.workers
        self._signals: list[int] = []
        self._stopping: float | None = None
        self._failed = False

    def run(self) -> int:
        wake_reader, wake_writer = os.pipe()
        os.set_blocking(wake_reader, False)
        os.set_blocking(wake_writer, False)
        previous_fd = signal.set_wakeup_fd(wake_writer)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, DUMP_STACKS):
            signal.signal(number, self._note)
        try:
            for slot in range(len(self._workers)):
                self._start(slot)
            log.info("workers_started", workers=len(self._workers), parent=os.getpid())
            while any(worker is not None for worker in self._workers):
                sentinels = [w.process.sentinel for w in self._workers if w is not None]
                wait([*sentinels, wake_reader], timeout=self._wait_timeout())
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_reader, 512)
                self._handle_signals()
                self._reap()
                self._replace_stuck()
                self._kill_overdue()
        finally:
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_reader)
            os.close(wake_writer)
        log.info("workers_stopped", failed=self._failed)
        return 1 if self._failed else 0

    def _note(self, number: int, frame: object) -> None:
        self._signals.append(number)

    def _wait_timeout(self) -> float:
        return _RESTART_DELAY if self._stopping is None else 1.0

    def _start(self, slot: int) -> None:
        # A worker that drains stops beating: it is given the stop's own time limit for that.
        heartbeat = Heartbeat(grace=self._settings.shutdown_timeout + _STOP_MARGIN)
        process = _spawn.Process(
            target=_worker_main,
            args=(self._settings, self._listeners[slot], self._owner, heartbeat),
            name=f"digibridge-worker-{slot}",
        )
        process.start()
        self._workers[slot] = _Worker(process, heartbeat)

    def _handle_signals(self) -> None:
        while self._signals:
            number = self._signals.pop(0)
            if number == signal.SIGHUP:
                self._send(number)
            elif number == DUMP_STACKS:
                # Not to a worker still starting: until it serves, SIGUSR1 would end it.
                self._send(number, serving_only=True)
            elif self._stopping is None:
                log.info("workers_stopping", signal=signal.Signals(number).name)
                self._stopping = time.monotonic()
                self._send(signal.SIGTERM)

    def _send(self, number: int, *, serving_only: bool = False) -> None:
        for worker in self._workers:
            if serving_only and (worker is None or worker.heartbeat.silent_for() is None):
                continue
            if worker is not None and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, number)

    def _reap(self) -> None:
        for slot, worker in enumerate(self._workers):
            if worker is None or worker.process.is_alive():
                continue
            worker.process.join()
            code = worker.process.exitcode
            self._workers[slot] = None
            if worker.process.pid is not None:  # its live gauges (readiness) count no more
                multiprocess.mark_process_dead(worker.process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
            if self._stopping is not None:
                if code != 0:
                    self._failed = True
                    _hand_back_leases(self._settings, worker.process.pid)
                continue
            if code == STARTUP_FAILURE:
                log.error("worker_failed_to_start", pid=worker.process.pid)
                self._failed = True
                self._stopping = time.monotonic()
                self._send(signal.SIGTERM)
                continue
            log.error("worker_died", pid=worker.process.pid, exit_code=code)
            _hand_back_leases(self._settings, worker.process.pid)
            if time.monotonic() - worker.started < _RESTART_DELAY:
                time.sleep(_RESTART_DELAY)
            self._start(slot)
            log.info("worker_restarted", pid=self._workers[slot].process.pid)  # type: ignore[union-attr]

    def _replace_stuck(self) -> None:
        """A worker whose loop has not turned for `worker_timeout` seconds: ask for its stacks,
        and kill it a moment later (`_reap` then hands back its leases and starts another).
        Not while stopping: `_kill_overdue` sees to a stop that hangs."""
        timeout = self._settings.worker_timeout
        if not timeout or self._stopping is not None:
            return
        now = time.monotonic()
        for worker in self._workers:
            if worker is None or worker.process.pid is None or not worker.process.is_alive():
                continue
            if worker.stuck_at is not None:
                if now - worker.stuck_at >= _DUMP_WAIT:
                    worker.process.kill()
                continue
            silent = worker.heartbeat.silent_for()
            if silent is not None and silent > timeout:
                log.error("worker_stuck", pid=worker.process.pid, silent_seconds=round(silent, 1))
                worker.stuck_at = now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, DUMP_STACKS)

    def _kill_overdue(self) -> None:
        if self._stopping is None:
            return
        if time.monotonic() - self._stopping < self._settings.shutdown_timeout + _STOP_MARGIN:
            return
        for worker in self._workers:
            if worker is not None and worker.process.is_alive():
                log.error("worker_killed", pid=worker.process.pid, reason="stop took too long")
                self._failed = True
                worker.process.kill()


def _worker_main(
    settings: Settings,
    listener: socket.socket,
    owner: InheritedFd | None,
    heartbeat: Heartbeat,
) -> None:
    """A worker: the whole gateway, serving `listener`, beating `heartbeat` while its loop
    turns. `owner`, the store's lock shared with the parent, stays open until this process
    exits."""
    from digibridge import serving  # noqa: PLC0415 - imported in the worker, after the spawn
    from digibridge.app import create_app  # noqa: PLC0415

    configure_logging(settings.log_format, settings.log_level, worker=os.getpid())
    try:
        app = create_app(settings, worker=True)
        app.state.runtime.reload_siblings = partial(os.kill, os.getppid(), signal.SIGHUP)
    except DigibridgeError as exc:
        log.error("worker_failed_to_start", error=str(exc))
        sys.exit(STARTUP_FAILURE)
    _stop_when_orphaned(os.getppid())
    serving.serve_app(app, settings, sockets=[listener], heartbeat=heartbeat)


def _stop_when_orphaned(parent: int) -> None:
    """SIGTERM ourselves (a drained stop) once the parent is gone: a killed parent must not
    leave workers behind holding the store."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK)
        log.warning("worker_orphaned", parent=parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="digibridge-parent-watch", daemon=True).start()

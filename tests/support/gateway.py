"""The gateway as a user runs it: `digibridge serve` in its own process, on a free port."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.events import ack_event_ids
from tests.support.net import free_port, wait_until
from tests.support.soap import envelope, headers_for, sample, with_kenmerk


class GatewayProcess:
    """`tls`: the gateway terminates TLS (configured through `env`); the context is how the
    readiness probe (and tests) trust its certificate. `workers`: `serve --workers`; ready once
    every worker has started."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        *,
        workers: int = 1,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.wus_url = f"{self.url}/wus/digilevering"
        self.log_path = data_dir / f"gateway-{self.port}.log"
        self.env = {
            **os.environ,
            "DIGIBRIDGE_STORE_URL": f"sqlite:///{data_dir / 'digibridge.db'}",
            "DIGIBRIDGE_RETRY_SCHEDULE": "0,0.2,0.4,0.8",
            "DIGIBRIDGE_LOG_FORMAT": "json",
            "DIGIBRIDGE_WORKERS": str(workers),
            **(env or {}),
        }
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> GatewayProcess:
        self.launch()
        self.wait_ready(timeout=timeout)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to be ready (`wait_ready`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._started_before = self._log_count('"gateway_started"')
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "digibridge", "serve", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.data_dir,
            )

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        wait_until(self._ready, timeout=timeout, what=f"gateway ready ({self.log_path})")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"gateway exited with {self.process.returncode}:\n{self.log_path.read_text()}"
            )
        started = self._log_count('"gateway_started"') - self._started_before
        if self.workers > 1 and started < self.workers:
            return False
        try:
            readyz = httpx.get(f"{self.url}/readyz", timeout=1, verify=self.tls or True)
            return readyz.status_code == 200
        except httpx.TransportError:
            return False

    def _log_count(self, text: str) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count(text)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_all(gateways: list[GatewayProcess], *, timeout: float = 60.0) -> None:
    """Start `gateways` side by side, so their starts (mostly imports) overlap; return when
    every one is ready. On failure the caller stops those whose `process` is set."""
    for gateway in gateways:
        gateway.launch()
    for gateway in gateways:
        gateway.wait_ready(timeout=timeout)


def send_message(gateway: GatewayProcess) -> list[str]:
    """A new BRP message through the SOAP endpoint, on a new connection (with `--workers`, the
    kernel picks a worker for each); its acknowledged event ids."""
    document = with_kenmerk(sample("brp-verhuizing.xml"))
    response = httpx.post(
        gateway.wus_url,
        content=envelope(document, to=gateway.wus_url),
        headers=headers_for(document),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return ack_event_ids(response.content)

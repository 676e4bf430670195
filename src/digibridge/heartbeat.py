"""A worker's heartbeat: shared memory in which a worker of `serve --workers` records when its
event loop last turned, for its parent to see a worker that is alive but stuck (a blocking
call on the loop, a deadlock, a loop that never ends) and replace it."""

from __future__ import annotations

import ctypes
import multiprocessing
import time


class Heartbeat:
    """The time (`time.monotonic`, the same clock in every process of a machine) at which a
    worker's event loop last turned, in memory its parent reads. 0 until it serves."""

    def __init__(self, grace: float) -> None:
        self.last = multiprocessing.get_context("spawn").RawValue(ctypes.c_double, 0.0)
        self._grace = grace

    def beat(self) -> None:
        self.last.value = time.monotonic()

    def stopping(self) -> None:
        """The loop stops turning while it drains: a beat `grace` seconds ahead covers that."""
        self.last.value = time.monotonic() + self._grace

    def silent_for(self) -> float | None:
        """Seconds since the last beat; None before the first."""
        last = float(self.last.value)
        return None if last == 0 else time.monotonic() - last

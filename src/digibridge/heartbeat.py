"""Seeing a gateway process that is alive but stuck (a blocking call on the event loop, a
deadlock, a loop that never ends): a worker's heartbeat, shared memory in which a worker of
`serve --workers` records when its event loop last turned, for its parent to read; and the
signal on which any gateway process writes its threads' stacks to stderr."""

from __future__ import annotations

import ctypes
import faulthandler
import multiprocessing
import signal
import sys
import time

#: `kill -USR1`: write every thread's stack to stderr and go on.
DUMP_STACKS = signal.SIGUSR1


def write_stacks_on_signal() -> None:
    """From now on, DUMP_STACKS writes this process's stacks: from a C-level handler, so it
    works while the event loop is stuck."""
    faulthandler.register(DUMP_STACKS, file=sys.stderr, all_threads=True)


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

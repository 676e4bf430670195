"""The circuit breaker's state transitions, applied by a store inside `complete`.

Pure functions over the stored `Circuit`, so every backend breaks circuits the same way:

    closed ──(failure ratio ≥ policy over ≥ min_requests in the window)──► open
    open ──(pause over: claim lets one delivery through)──► half_open
    half_open ──(probe succeeds)──► closed       half_open ──(probe fails)──► open
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from digibridge.store.types import Circuit, CircuitPolicy, CircuitState


def new_circuit(endpoint: str, now: datetime) -> Circuit:
    return Circuit(endpoint=endpoint, state=CircuitState.CLOSED, window_start=now)


def record(circuit: Circuit, *, failed: bool, now: datetime, policy: CircuitPolicy) -> Circuit:
    """The circuit after one outcome of a request to its endpoint."""
    failing_since = (circuit.failing_since or now) if failed else None
    if circuit.state is not CircuitState.CLOSED:
        if not failed:
            return Circuit(circuit.endpoint, CircuitState.CLOSED, window_start=now)
        if circuit.state is CircuitState.HALF_OPEN:
            return _open(circuit, now, policy, failing_since)
        # Open already: a late answer from before it opened changes nothing but the streak.
        return replace(circuit, failing_since=failing_since)
    if now - circuit.window_start >= policy.window:
        circuit = replace(circuit, window_start=now, successes=0, failures=0)
    successes = circuit.successes + (0 if failed else 1)
    failures = circuit.failures + (1 if failed else 0)
    counted = replace(circuit, successes=successes, failures=failures, failing_since=failing_since)
    total = successes + failures
    if failed and total >= policy.min_requests and failures / total >= policy.failure_ratio:
        return _open(counted, now, policy, failing_since)
    return counted


def _open(
    circuit: Circuit, now: datetime, policy: CircuitPolicy, failing_since: datetime | None
) -> Circuit:
    return Circuit(
        circuit.endpoint,
        CircuitState.OPEN,
        window_start=now,
        retry_at=now + policy.pause,
        failing_since=failing_since,
    )


def failing_too_long(circuit: Circuit, now: datetime, policy: CircuitPolicy) -> bool:
    return circuit.failing_since is not None and now - circuit.failing_since >= policy.disable_after

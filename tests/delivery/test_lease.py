"""A short delivery lease (`delivery_lease`, for a fast take-over of a dead instance's claims)
caps every webhook request at a quarter of it, so a send still ends inside its lease and no
other instance can take the delivery over while it is in flight."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digibridge.config import ConfigError, load_settings
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import DeliveryStatus
from tests.support.delivery import publish, running, settled, subscription
from tests.support.sinks import Reply, ScriptedSink


@pytest.mark.anyio
async def test_a_short_lease_cuts_a_slow_request_at_a_quarter_of_it(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sink.script("/hook", Reply(204, delay=1.5))  # slower than a quarter of the lease
    delivery = await publish(store, subscription(sink.url()))

    async with running(store, request_timeout=10.0, lease=timedelta(seconds=2)):
        done = await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    first, second = await store.list_attempts(done.id)
    assert first.error == "timed out after 0.5 s"
    assert first.duration_ms < 1000
    assert second.status_code == 204


@pytest.mark.anyio
async def test_without_a_lease_the_request_timeout_applies(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    sink.script("/hook", Reply(204, delay=0.7))
    delivery = await publish(store, subscription(sink.url()))

    async with running(store, request_timeout=10.0):
        done = await settled(store, delivery.id, DeliveryStatus.SUCCEEDED)

    (only,) = await store.list_attempts(done.id)
    assert only.status_code == 204
    assert only.duration_ms >= 700


@pytest.mark.parametrize("value", ["0", "-2", "soon", "3601"])
def test_a_bad_lease_stops_the_start_naming_the_key(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGIBRIDGE_DELIVERY_LEASE", value)
    with pytest.raises(ConfigError, match="delivery_lease"):
        load_settings(None)

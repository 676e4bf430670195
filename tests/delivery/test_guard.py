"""The SSRF guard: which sinks are refused at subscribe time, and at send time when DNS changes.

Names are resolved by an injected resolver (no external DNS in tests)."""

from __future__ import annotations

import re

import pytest

from digibridge.delivery.guard import SinkGuard, SinkRefused
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import DeliveryStatus
from tests.support.delivery import publish, received, running, settled, subscription
from tests.support.sinks import ScriptedSink

pytestmark = pytest.mark.anyio


class Dns:
    """A resolver answering from a table the test can change."""

    def __init__(self, **table: str) -> None:
        self.table = {name.replace("_", "."): address for name, address in table.items()}

    async def __call__(self, host: str, _port: int) -> list[str]:
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return [self.table[host]]


DNS = Dns(
    metadata_internal="169.254.169.254",
    intranet_gemeente_nl="10.20.30.40",
    router_lan="192.168.1.1",
    docker_host="172.17.0.1",
    ula_example="fd12:3456::1",
    mapped_example="::ffff:10.0.0.1",
    localhost="127.0.0.1",
    ontvanger_gemeente_nl="145.21.10.20",
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "https://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a cloud metadata address",
        ),
        ("https://metadata.internal/", "resolves to 169.254.169.254, which is a cloud metadata"),
        ("https://[fd00:ec2::254]/", "cloud metadata address"),
        ("https://169.254.10.1/", "link-local"),
        ("https://10.1.2.3/hook", "10.1.2.3 is private"),
        ("https://172.16.5.4/", "private"),
        ("https://192.168.0.10/", "private"),
        ("https://intranet.gemeente.nl/", "resolves to 10.20.30.40, which is private"),
        ("https://router.lan/", "resolves to 192.168.1.1"),
        ("https://docker.host/", "resolves to 172.17.0.1"),
        ("https://ula.example/", "resolves to fd12:3456::1, which is private"),
        ("https://mapped.example/", "resolves to ::ffff:a00:1, which is private"),
        ("https://localhost:8443/", "resolves to 127.0.0.1, which is loopback"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://100.64.0.1/", "not public"),
        ("https://nowhere.test/", "does not resolve"),
        ("http://ontvanger.gemeente.nl/", "must use https://"),
    ],
)
async def test_private_and_metadata_sinks_are_refused(url: str, reason: str) -> None:
    with pytest.raises(SinkRefused, match=re.escape(reason)):
        await SinkGuard((), resolver=DNS).check_sink(url)


async def test_public_https_sinks_are_accepted() -> None:
    guard = SinkGuard((), resolver=DNS)
    await guard.check_sink("https://ontvanger.gemeente.nl/webhooks")
    await guard.check_sink("https://145.21.10.20:8443/webhooks")


async def test_the_allowlist_admits_private_networks_and_plain_http() -> None:
    guard = SinkGuard(["10.0.0.0/8", "127.0.0.0/8"], resolver=DNS)
    await guard.check_sink("http://intranet.gemeente.nl/hook")
    await guard.check_sink("http://localhost:9000/")
    await guard.check_sink("https://mapped.example/")  # ::ffff:10.0.0.1 is 10.0.0.1
    with pytest.raises(SinkRefused, match="cloud metadata"):
        await guard.check_sink("https://metadata.internal/")


async def test_a_sink_whose_name_starts_resolving_to_a_private_address_is_not_called(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    """Checked on every connection: the address connected to is the address checked."""
    dns = Dns(receiver_test="127.0.0.1")
    guard = SinkGuard(["127.0.0.0/8"], resolver=dns)
    sink_url = f"http://receiver.test:{sink.port}/hook"
    first = await publish(store, subscription(sink_url), "ev-1")

    async with running(store, guard=guard):
        await settled(store, first.id, DeliveryStatus.SUCCEEDED)
    dns.table["receiver.test"] = "10.9.8.7"
    second = await publish(store, None, "ev-2")
    # A new connection (a kept-alive one stays with the address it was checked for).
    async with running(store, guard=guard):
        refused = await settled(store, second.id, DeliveryStatus.DEAD)

    assert len(await received(sink, 1)) == 1
    assert refused.last_error == (
        "sink refused: receiver.test resolves to 10.9.8.7, which is private; "
        "allow it with DIGIBRIDGE_SINK_ALLOWLIST if intended"
    )


async def test_a_sink_written_as_an_ip_address_is_checked_at_send_time_too(
    store: SqliteStore, sink: ScriptedSink
) -> None:
    """The HTTP client connects to an IP literal without asking a resolver: the guard checks it
    before the request (here the subscription predates a narrower allowlist)."""
    delivery = await publish(store, subscription(f"http://127.0.0.1:{sink.port}/hook"), "ev-1")

    async with running(store, guard=SinkGuard(["10.0.0.0/8"])):
        refused = await settled(store, delivery.id, DeliveryStatus.DEAD)

    assert sink.posts() == []
    assert refused.last_error is not None
    assert refused.last_error.startswith("sink refused: 127.0.0.1 is loopback")

"""The DMKS outbox and status poller in-process, against F's DigiMelding stub on loopback and a
real SQLite store, driven one round at a time so leases, retries and transitions are exact."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from digibridge.config import ConfigError, Settings
from digibridge.delivery.digimelding_clients import build_clients
from digibridge.delivery.dmks_outbox import DmksOutbox
from digibridge.delivery.dmks_poller import StatusPoller
from digibridge.delivery.dmks_workers import DmksWorkers
from digibridge.delivery.retry import RetryPolicy
from digibridge.events.terugmeldingen import for_owner
from digibridge.mapping.reverse import ReverseMappings
from digibridge.mapping.reverse_types import Attribuut, Contact, Terugmelding
from digibridge.resources import bundled
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    DmksRequest,
    HistoryKind,
    RequestKind,
    TerugmeldingRecord,
    TransportStatus,
)
from digibridge.wus.digimelding import DigimeldingClient
from digibridge.wus.digimelding_stub import DigimeldingStub
from tests.support.digimelding import StubHandle, running_stub
from tests.support.net import free_port
from tests.support.pki import SERVER_KEY_PASSWORD, LocalPki
from tests.support.sinks import FakeClock, LoopbackServer, eventually

pytestmark = pytest.mark.anyio

OIN = "00000001001234567000"
QUICK = RetryPolicy.parse("0,1")


@pytest.fixture(scope="module")
def stub() -> Iterator[StubHandle]:
    with running_stub() as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh(stub: StubHandle) -> None:
    stub.control("POST", "/reset").raise_for_status()


async def submit(store: SqliteStore, clock: FakeClock, n: int = 0) -> TerugmeldingRecord:
    """What the API stores for one NHR terugmelding (built by the real reverse mapping)."""
    mapping = ReverseMappings.load(bundled("mappings")).get("NHR")
    assert mapping is not None
    t = Terugmelding(
        registratie="NHR",
        oin_basisregistratie=mapping.oin,
        object_sleutel="12345678",
        attributen=(Attribuut("handelsnaam", "Korenaar", "Korenaer"),),
        toelichting="Gevelbord wijkt af.",
        referentiekenmerk=f"T-{n}",
        contact=Contact("J. de Vries", "j@gemeente.nl"),
        oin_melder=OIN,
    )
    now = clock.now()
    annotatie = mapping.build(t, now=now, new_uuid=lambda: str(uuid.uuid4()))
    record = TerugmeldingRecord(
        id=str(uuid.uuid4()),
        owner="local",
        registratie="NHR",
        oin_basisregistratie=mapping.oin,
        oin_melder=OIN,
        document={"referentiekenmerk": t.referentiekenmerk},
        root_uuid=annotatie.root_uuid,
        transport_status=TransportStatus.ONTVANGEN,
        created_at=now,
        updated_at=now,
    )
    request = DmksRequest(
        id=str(uuid.uuid4()),
        terugmelding_id=record.id,
        kind=RequestKind.MELDING,
        registratie="NHR",
        oin_basisregistratie=mapping.oin,
        annotatieboom=annotatie.annotatieboom,
        root_uuid=annotatie.root_uuid,
        uuids=annotatie.uuids,
        created_at=now,
    )
    await store.create_terugmelding(record, request)
    return record


def outbox(store: SqliteStore, clock: FakeClock, url: str, owner: str = "a") -> DmksOutbox:
    client = DigimeldingClient(url, oin=OIN, timeout=5)
    return DmksOutbox(
        store, {"NHR": client}, policy=QUICK, matcher=for_owner, clock=clock, owner=owner
    )


def poller(store: SqliteStore, clock: FakeClock, url: str, interval: float = 60) -> StatusPoller:
    client = DigimeldingClient(url, oin=OIN, timeout=5)
    return StatusPoller(
        store, {"NHR": client}, interval=interval, max_backoff=0.4, matcher=for_owner, clock=clock
    )


async def test_two_outboxes_never_send_one_request_twice(
    store: SqliteStore, clock: FakeClock, stub: StubHandle
) -> None:
    made = [await submit(store, clock, n) for n in range(5)]
    first, second = outbox(store, clock, stub.url, "a"), outbox(store, clock, stub.url, "b")
    for _ in range(3):
        await asyncio.gather(first.send_due(), second.send_due())
    for record in made:
        found = await store.get_terugmelding(record.id)
        assert found is not None
        assert found.transport_status is TransportStatus.VERZONDEN
    assert len(stub.received("AnnotatieToevoegen")) == 5
    assert set(stub.stub.reports) == {record.root_uuid for record in made}


async def test_retries_run_out_into_mislukt(
    store: SqliteStore, clock: FakeClock, stub: StubHandle
) -> None:
    stub.inject_fault("DK0051", count=5, operation="AnnotatieToevoegen")
    record = await submit(store, clock)
    sender = outbox(store, clock, stub.url)
    await sender.send_due()
    waiting = await store.get_terugmelding(record.id)
    assert waiting is not None
    assert waiting.transport_status is TransportStatus.ONTVANGEN
    await sender.send_due()  # not due yet: nothing sent
    assert len(stub.received("AnnotatieToevoegen")) == 1
    clock.advance(timedelta(seconds=1.2))
    await sender.send_due()
    failed = await store.get_terugmelding(record.id)
    assert failed is not None
    assert failed.transport_status is TransportStatus.MISLUKT
    faults = [h for h in await store.terugmelding_history(record.id) if h.kind is HistoryKind.FAULT]
    assert [(f.code, f.retried) for f in faults] == [("DK0051", True), ("DK0051", False)]
    assert faults[-1].text is not None
    assert "gave up after 2 attempts" in faults[-1].text


async def test_poller_records_once_and_flags_a_skipped_status(
    store: SqliteStore, clock: FakeClock, stub: StubHandle
) -> None:
    record = await submit(store, clock)
    await outbox(store, clock, stub.url).send_due()
    watcher = poller(store, clock, stub.url)
    assert await watcher.poll("NHR") == 1
    assert await watcher.poll("NHR") == 0
    # The registry moves on twice between two polls: Gemeld → Afgehandeld is not a DMKS
    # transition; it is recorded all the same, flagged and logged.
    stub.stub.set_status(record.root_uuid, "In behandeling")
    stub.stub.set_status(record.root_uuid, "Afgehandeld")
    with capture_logs() as logs:
        assert await watcher.poll("NHR") == 1
    flagged = [log for log in logs if log["event"] == "dmks_transition_unexpected"]
    assert flagged
    assert flagged[0]["previous"] == "Gemeld"
    assert flagged[0]["status"] == "Afgehandeld"
    changes = [h for h in await store.terugmelding_history(record.id) if h.kind is HistoryKind.DMKS]
    assert [(h.previous, h.status, h.unexpected) for h in changes] == [
        (None, "Gemeld", False),
        ("Gemeld", "Afgehandeld", True),
    ]
    # An end state: the report is not asked after any more.
    asked = len(stub.received("Statusoverzicht"))
    assert await watcher.poll("NHR") == 0
    assert len(stub.received("Statusoverzicht")) == asked


async def test_failed_polls_back_off_up_to_the_maximum(
    store: SqliteStore, clock: FakeClock, stub: StubHandle
) -> None:
    await submit(store, clock)
    await outbox(store, clock, stub.url).send_due()
    watcher = poller(store, clock, f"http://127.0.0.1:{free_port()}/dmks", interval=0.05)
    assert watcher.next_wait("NHR") == 0.05
    task = asyncio.create_task(watcher.run())

    async def failed_thrice() -> bool:
        return watcher.failures["NHR"] >= 3

    try:
        await eventually(failed_thrice, "three failed polls")
        assert watcher.next_wait("NHR") == 0.4
    finally:
        await watcher.stop()
        await task


async def test_configured_endpoint_speaks_mutual_tls_and_signs(
    store: SqliteStore, clock: FakeClock, pki: LocalPki
) -> None:
    """From settings to a sent request: client certificate (2W-be) and signature (2W-be-S)."""
    registry = DigimeldingStub(signature_trust=pki.trust())
    server = LoopbackServer(
        registry.app,
        ssl_certfile=str(pki.server_certificate),
        ssl_keyfile=str(pki.server_key),
        ssl_keyfile_password=SERVER_KEY_PASSWORD,
        ssl_ca_certs=str(pki.ca_bundle),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    server.start()
    try:
        endpoint = {
            "url": server.url("/dmks"),
            "client_certificate": pki["nhr"].certificate,
            "client_key": pki["nhr"].key,
            "trusted_cas": pki.ca_bundle,
            "sign": True,
        }
        settings = Settings(oin=OIN, digimelding={"NHR": endpoint})
        clients = build_clients(settings, ReverseMappings.load(bundled("mappings")), clock)
        record = await submit(store, clock)
        sender = DmksOutbox(store, clients, policy=QUICK, matcher=for_owner, clock=clock)
        await sender.send_due()
        sent = await store.get_terugmelding(record.id)
        assert sent is not None
        assert sent.transport_status is TransportStatus.VERZONDEN
        assert set(registry.reports) == {record.root_uuid}
    finally:
        server.stop()


def test_endpoint_configuration_errors_name_the_setting(pki: LocalPki) -> None:
    reverse = ReverseMappings.load(bundled("mappings"))
    clock = FakeClock()
    unknown = Settings(oin=OIN, digimelding={"XYZ": {"url": "https://dmks.example/"}})
    with pytest.raises(ConfigError, match=r"digimelding\.XYZ: no reverse mapping"):
        build_clients(unknown, reverse, clock)
    unsigned = Settings(oin=OIN, digimelding={"BRP": {"url": "https://dmks.example/"}})
    with pytest.raises(ConfigError, match=r"digimelding\.BRP\.sign"):
        build_clients(unsigned, reverse, clock)  # the BRP mapping wants 2W-be-S
    with pytest.raises(ValidationError, match="go together"):
        Settings(digimelding={"NHR": {"url": "https://x/", "client_key": pki["nhr"].key}})
    with pytest.raises(ValidationError, match="oin"):
        Settings(oin="123")


@pytest.mark.parametrize("shared", [False, True], ids=["own-file", "shared-database"])
async def test_start_releases_leftover_leases_only_when_the_store_is_its_own(
    store: SqliteStore, clock: FakeClock, stub: StubHandle, shared: bool
) -> None:
    """On a shared database another live instance may hold the lease: starting must not take
    it away (the same AnnotatieToevoegen would go out twice at once)."""
    record = await submit(store, clock)
    now = clock.now()
    held = await store.claim_dmks_requests(
        now=now, limit=10, lease_until=now + timedelta(minutes=10), owner="other-instance"
    )
    assert len(held) == 1
    workers = DmksWorkers(
        ReverseMappings.load(bundled("mappings")),
        outbox(store, clock, stub.url, "this-instance"),
        poller(store, clock, stub.url),
    )
    await workers.start(store, release_leases=not shared)
    try:
        if shared:
            # Still the other instance's: nobody else may claim (or send) it.
            again = await store.claim_dmks_requests(
                now=now, limit=10, lease_until=now + timedelta(minutes=10), owner="third"
            )
            assert again == []
            assert stub.received("AnnotatieToevoegen") == []
        else:
            # Released at start, so this instance's outbox sends it.
            async def sent() -> bool:
                found = await store.get_terugmelding(record.id)
                return found is not None and found.transport_status is TransportStatus.VERZONDEN

            await eventually(sent, "the released request sent by this instance")
            assert len(stub.received("AnnotatieToevoegen")) == 1
    finally:
        await workers.stop(timeout=1)

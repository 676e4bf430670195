"""The reverse path end to end on loopback: JSON in at the gateway (its own process), a
schema-valid `AnnotatieToevoegen` at the DigiMelding stub, the registry moving the report on,
the poller seeing it, and signed status CloudEvents at a subscriber. Plus withdrawal, faults
that are final (DK0004) or retried (DK0051, connection refused), and a stub that is down while
terugmeldingen are submitted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families

from digibridge.events.builtin import BUILTIN_EVENT_TYPES
from digibridge.wus.digimelding_stub import DigimeldingStub
from tests.support.digimelding import StubHandle, running_stub
from tests.support.events import check_webhook
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port, wait_until
from tests.support.sinks import LoopbackServer, ScriptedSink

pytestmark = pytest.mark.e2e

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OIN = "00000001001234567000"
DMKS = "{http://webservices.digimelding.nl/dmks/cookiebox/}"
STATUS = "nl.digibridge.terugmelding.status-gewijzigd"
TRANSPORT = "nl.digibridge.terugmelding.transportstatus-gewijzigd"
XSD = Path(__file__).resolve().parents[2] / "wsdl" / "digimelding.xsd"
#: The data schemas of the catalogue, which every event's data must satisfy.
SCHEMAS = {builtin.type: builtin.schema for builtin in BUILTIN_EVENT_TYPES}
CONTACT = {"naam": "J. de Vries", "email": "j.devries@gemeente.nl", "telefoon": "+31 20 555 0100"}


def nhr(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "registratie": "NHR",
        "objectSleutel": "12345678",
        "attributen": [
            {
                "naam": "handelsnaam",
                "betwijfeldeWaarde": "Korenaar",
                "voorgesteldeWaarde": "Korenaer",
            }
        ],
        "peildatum": "2026-10-01",
        "toelichting": "Gevelbord en uittreksel verschillen.",
        "referentiekenmerk": "ZK-1",
        "contact": CONTACT,
        "bijlagen": [{"bestandsnaam": "foto.txt", "mimeType": "text/plain", "data": "Zm90bw=="}],
    }
    body.update(changes)
    return body


def brp() -> dict[str, Any]:
    return {
        "registratie": "BRP",
        "objectSleutel": "999990019",
        "attributen": [
            {
                "naam": "straatnaam",
                "betwijfeldeWaarde": "Dorpstraat",
                "voorgesteldeWaarde": "Dorpsstraat",
            }
        ],
        "toelichting": "Straatnaam gespeld als op het straatnaambord.",
        "referentiekenmerk": "BRP-7",
        "contact": CONTACT,
    }


@pytest.fixture(scope="module")
def stub() -> Iterator[StubHandle]:
    with running_stub() as handle:
        yield handle


@pytest.fixture(scope="module")
def brp_port() -> int:
    """Where the BRP's DigiMelding endpoint will be: nothing listens there until a test says so."""
    return free_port()


@pytest.fixture(scope="module")
def subscriber() -> Iterator[ScriptedSink]:
    sink = ScriptedSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    stub: StubHandle,
    brp_port: int,
    subscriber: ScriptedSink,
) -> Iterator[GatewayProcess]:
    endpoints = {
        "NHR": {"url": stub.url},
        "BRP": {"url": f"http://127.0.0.1:{brp_port}/dmks", "sign": False},
    }
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"),
        env={
            "DIGIBRIDGE_OIN": OIN,
            "DIGIBRIDGE_DIGIMELDING": json.dumps(endpoints),
            "DIGIBRIDGE_DIGIMELDING_POLL_INTERVAL": "0.2",
            "DIGIBRIDGE_DIGIMELDING_POLL_MAX_BACKOFF": "0.5",
            "DIGIBRIDGE_DIGIMELDING_RETRY_SCHEDULE": "0," + ",".join(["0.3"] * 40),
        },
    ).start()
    subscription = httpx.post(
        f"{process.url}/v1/subscriptions",
        json={
            "sink": subscriber.url(),
            "types": [STATUS, TRANSPORT],
            # In order per subject: a terugmelding's events arrive as they happened.
            "delivery": {"secret": SECRET, "ordered": True},
        },
        timeout=10,
    )
    assert subscription.status_code == 201, subscription.text
    yield process
    process.stop()


@pytest.fixture
def api(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{gateway.url}/v1", timeout=15) as client:
        yield client


def submit(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    created = api.post("/terugmeldingen", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "ontvangen"
    answer: dict[str, Any] = created.json()
    return answer


def until(api: httpx.Client, tid: str, what: str, **expected: Any) -> dict[str, Any]:
    """Wait until the terugmelding's fields have the expected values; the resource."""

    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/terugmeldingen/{tid}").json()
        return body if all(body[key] == value for key, value in expected.items()) else None

    found: dict[str, Any] = wait_until(check, timeout=20, what=what)
    return found


def events_of(subscriber: ScriptedSink, tid: str, event_type: str) -> list[dict[str, Any]]:
    """The signed CloudEvents about one terugmelding (each verified, parsed and validated)."""
    documents = [check_webhook(request, SECRET) for request in subscriber.posts()]
    return [d for d in documents if d["subject"] == tid and d["type"] == event_type]


def statuses(subscriber: ScriptedSink, tid: str) -> list[str]:
    """The DMKS statuses announced for one terugmelding so far."""
    return [e["data"]["status"] for e in events_of(subscriber, tid, STATUS)]


def annotaties(stub: StubHandle, root_uuid: str) -> list[etree._Element]:
    """The AnnotatieToevoegen requests the stub received about one report (any annotation of
    it), each validated against our XSD here."""
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    found = []
    for body in stub.received_bodies("AnnotatieToevoegen"):
        schema.assertValid(body)
        uuids = {a.get("uuid") for a in body.iter() if a.get("uuid")}
        refs = {r.text for r in body.iter(f"{DMKS}Annotatieverwijzing")}
        if root_uuid in uuids | refs:
            found.append(body)
    return found


def terugmeldingen_counted(gateway: GatewayProcess) -> dict[tuple[str, str], float]:
    """`digibridge_terugmeldingen_total` from `/metrics`, by (kind, status)."""
    counted: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text):
        for sample in family.samples:
            if sample.name == "digibridge_terugmeldingen_total":
                counted[(sample.labels["kind"], sample.labels["status"])] = sample.value
    return counted


def test_json_in_status_events_out(
    gateway: GatewayProcess, api: httpx.Client, stub: StubHandle, subscriber: ScriptedSink
) -> None:
    before = terugmeldingen_counted(gateway)
    made = submit(api, nhr())
    tid, root = made["id"], made["annotatieUuid"]
    sent = until(api, tid, "sent", status="verzonden")
    assert sent["annotatieVerwijzing"] == root
    assert sent["verzondenAt"] is not None
    (request,) = annotaties(stub, root)
    assert request.findtext(f"{DMKS}OinBasisregistratie") == "00000001003214345000"
    terugmelding = request.find(f"{DMKS}AnnotatieBoom/{DMKS}Terugmelding")
    assert terugmelding is not None
    assert terugmelding.get("uuid") == root
    assert terugmelding.findtext(f"{DMKS}GeannoteerdDoor/{DMKS}Oin") == OIN
    until(api, tid, "the poller saw Gemeld", dmksStatus="Gemeld")
    assert stub.set_status(root, "In behandeling").status_code == 200
    wait_until(
        lambda: "In behandeling" in statuses(subscriber, tid), timeout=20, what="In behandeling"
    )
    assert stub.set_status(root, "Afgehandeld").status_code == 200
    wait_until(
        lambda: len(events_of(subscriber, tid, STATUS)) == 3, timeout=20, what="Afgehandeld event"
    )
    announced = [e["data"] for e in events_of(subscriber, tid, STATUS)]
    assert [(d["vorigeStatus"], d["status"]) for d in announced] == [
        (None, "Gemeld"),
        ("Gemeld", "In behandeling"),
        ("In behandeling", "Afgehandeld"),
    ]
    assert not any(d["onverwacht"] for d in announced)
    (transport,) = events_of(subscriber, tid, TRANSPORT)
    assert transport["data"]["transportStatus"] == "verzonden"
    for event in [*events_of(subscriber, tid, STATUS), transport]:
        assert event["source"] == "urn:nld:digibridge"
        # Nothing personal beyond the consumer's own reference.
        assert "j.devries" not in json.dumps(event)
        assert event["data"]["referentiekenmerk"] == "ZK-1"
        jsonschema.validate(event["data"], dict(SCHEMAS[event["type"]]))
    done = api.get(f"/terugmeldingen/{tid}").json()
    assert done["dmksStatus"] == "Afgehandeld"
    dmks = [(h["previousStatus"], h["status"]) for h in done["history"] if h["kind"] == "dmks"]
    assert dmks == [
        (None, "Gemeld"),
        ("Gemeld", "In behandeling"),
        ("In behandeling", "Afgehandeld"),
    ]
    assert all(h["registryTime"] for h in done["history"] if h["kind"] == "dmks")
    closed = api.post(f"/terugmeldingen/{tid}/intrekken")
    assert closed.status_code == 409
    assert "Afgehandeld" in closed.json()["detail"]
    after = terugmeldingen_counted(gateway)
    for key in (
        ("transport", "ontvangen"),
        ("transport", "verzonden"),
        ("dmks", "Gemeld"),
        ("dmks", "In behandeling"),
        ("dmks", "Afgehandeld"),
    ):
        assert after.get(key, 0) - before.get(key, 0) == 1, key


def test_intrekken_end_to_end(
    api: httpx.Client, stub: StubHandle, subscriber: ScriptedSink
) -> None:
    made = submit(api, nhr(referentiekenmerk="ZK-2"))
    tid, root = made["id"], made["annotatieUuid"]
    until(api, tid, "the poller saw Gemeld", dmksStatus="Gemeld")
    withdrawn = api.post(f"/terugmeldingen/{tid}/intrekken", json={"toelichting": "Dubbel gemeld."})
    assert withdrawn.status_code == 202, withdrawn.text
    assert withdrawn.json()["intrekkingStatus"] == "ontvangen"
    until(api, tid, "withdrawn", intrekkingStatus="verzonden", dmksStatus="Ingetrokken")
    report = stub.control("GET", f"/terugmeldingen/{root}").json()
    assert report["status"] == "Ingetrokken"
    (_, withdrawal) = annotaties(stub, root)
    assert withdrawal.findtext(f".//{DMKS}Annotatiestatus/{DMKS}Status") == "Ingetrokken"
    assert withdrawal.find(f".//{DMKS}Terugmelding") is None
    wait_until(lambda: "Ingetrokken" in statuses(subscriber, tid), timeout=20, what="event")
    verzoeken = {e["data"]["verzoek"] for e in events_of(subscriber, tid, TRANSPORT)}
    assert verzoeken == {"melding", "intrekking"}


def test_dk0004_is_final_and_visible(
    api: httpx.Client, stub: StubHandle, subscriber: ScriptedSink
) -> None:
    stub.inject_fault("DK0004", operation="AnnotatieToevoegen")
    made = submit(api, nhr(referentiekenmerk="ZK-3"))
    failed = until(api, made["id"], "mislukt", status="mislukt")
    (fault,) = [h for h in failed["history"] if h["kind"] == "fault"]
    assert (fault["code"], fault["retried"]) == ("DK0004", False)
    assert fault["text"]
    # Received once, answered with the fault, and never sent again.
    assert len(annotaties(stub, made["annotatieUuid"])) == 1
    assert made["annotatieUuid"] not in stub.stub.reports
    wait_until(
        lambda: events_of(subscriber, made["id"], TRANSPORT), timeout=20, what="mislukt event"
    )
    (event,) = events_of(subscriber, made["id"], TRANSPORT)
    assert event["data"]["transportStatus"] == "mislukt"
    withdraw = api.post(f"/terugmeldingen/{made['id']}/intrekken")
    assert withdraw.status_code == 409


def test_dk0051_is_retried_then_delivered(api: httpx.Client, stub: StubHandle) -> None:
    stub.inject_fault("DK0051", count=2, operation="AnnotatieToevoegen")
    made = submit(api, nhr(referentiekenmerk="ZK-4"))
    sent = until(api, made["id"], "sent after two time-outs", status="verzonden")
    faults = [(h["code"], h["retried"]) for h in sent["history"] if h["kind"] == "fault"]
    assert faults == [("DK0051", True), ("DK0051", True)]
    # Two attempts answered with the fault, the third stored.
    assert len(annotaties(stub, made["annotatieUuid"])) == 3
    assert made["annotatieUuid"] in stub.stub.reports


def test_stub_down_during_submit_loses_nothing(api: httpx.Client, brp_port: int) -> None:
    """Connection refused is retried; what was accepted while the registry was away arrives."""
    made = [submit(api, brp()) for _ in range(2)]

    def refused_and_retried() -> bool:
        history = api.get(f"/terugmeldingen/{made[0]['id']}").json()["history"]
        return any(
            h["kind"] == "fault" and h["code"] == "transport" and h["retried"] for h in history
        )

    wait_until(refused_and_retried, timeout=20, what="a refused connection in the history")
    down = DigimeldingStub()
    server = LoopbackServer(down.app, port=brp_port)
    server.start()
    try:
        for item in made:
            until(api, item["id"], "sent once the registry is back", status="verzonden")
        assert set(down.reports) == {item["annotatieUuid"] for item in made}
    finally:
        server.stop()


def test_accepted_survives_a_crash(gateway: GatewayProcess, brp_port: int) -> None:
    """A terugmelding answered 201 while the registry is away is sent after a SIGKILL and a
    restart: it was committed before the answer. (Last in the module: it restarts the gateway.)"""
    with httpx.Client(base_url=f"{gateway.url}/v1", timeout=15) as api:
        made = submit(api, brp())
    gateway.kill()
    registry = DigimeldingStub()
    server = LoopbackServer(registry.app, port=brp_port)
    server.start()
    try:
        gateway.start()
        with httpx.Client(base_url=f"{gateway.url}/v1", timeout=15) as api:
            until(api, made["id"], "sent after the restart", status="verzonden")
        assert set(registry.reports) == {made["annotatieUuid"]}
    finally:
        server.stop()

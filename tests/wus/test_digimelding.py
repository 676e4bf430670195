"""The DigiMelding client against the real stub (and against hostile servers), and the stub's
own lifecycle, fault scripting and control API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import zeep
from lxml import etree

from digibridge.mapping.dmks import DMKS_NS, schema_errors
from digibridge.mapping.reverse import ReverseMapping, ReverseMappings
from digibridge.mapping.reverse_types import (
    AnnotatieToevoegen,
    Attribuut,
    Bijlage,
    Contact,
    Terugmelding,
)
from digibridge.wus.digimelding import (
    BINDING,
    ClientTls,
    DigimeldingClient,
    DigimeldingFault,
    DigimeldingRejected,
    DigimeldingUnavailable,
    wsdl_path,
)
from digibridge.wus.digimelding_stub import DigimeldingStub
from digibridge.wus.wsse import EnvelopeSigner
from digibridge.wus.wsse.verifier import verify_envelope
from tests.support.digimelding import StubHandle, running_stub
from tests.support.net import free_port, wait_until
from tests.support.pki import SERVER_KEY_PASSWORD, LocalPki
from tests.support.sinks import LoopbackServer, Reply, ScriptedSink

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "digimelding"
MELDER = "00000001823288444000"
NHR_OIN = "00000001003214345000"
NS = {"d": DMKS_NS}
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def nhr() -> ReverseMapping:
    found = ReverseMappings.load(ROOT / "mappings").get("NHR")
    assert found is not None
    return found


def report(
    nhr: ReverseMapping, *, oin_melder: str = MELDER, kenmerk: str = "ZAAK-1"
) -> AnnotatieToevoegen:
    t = Terugmelding(
        registratie="NHR",
        oin_basisregistratie=NHR_OIN,
        object_sleutel="12345678",
        attributen=(Attribuut("handelsnaam", "Bakkerij Jansen", "Bakkerij Janssen"),),
        toelichting="Handelsnaam anders gespeld dan op de gevel.",
        referentiekenmerk=kenmerk,
        contact=Contact("Petra de Vries", "p.devries@example.nl"),
        oin_melder=oin_melder,
        peildatum=date(2026, 2, 1),
        bijlagen=(
            Bijlage("gevel.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(200)),
            Bijlage("uittreksel.pdf", "application/pdf", b"%PDF-1.7 ..."),
        ),
    )
    return nhr.build(t, now=datetime.now(UTC), new_uuid=lambda: str(uuid.uuid4()))


def withdrawal(nhr: ReverseMapping, root: str, *, oin_melder: str = MELDER) -> AnnotatieToevoegen:
    return nhr.build_status(
        root,
        "Ingetrokken",
        "Dubbel gemeld",
        oin_melder,
        datetime.now(UTC),
        lambda: str(uuid.uuid4()),
    )


def client(url: str, **options: Any) -> DigimeldingClient:
    return DigimeldingClient(url, timeout=options.pop("timeout", 5.0), oin=MELDER, **options)


@pytest.fixture
def hostile() -> Iterator[ScriptedSink]:
    server = ScriptedSink()
    server.start()
    yield server
    server.stop()


# --- the WSDL -----------------------------------------------------------------------------


def test_zeep_reads_our_wsdl_with_four_operations_and_addressing() -> None:
    wsdl = zeep.Client(str(wsdl_path())).wsdl
    binding = wsdl.bindings[BINDING]
    assert sorted(binding._operations) == [
        "AnnotatieToevoegen",
        "DetailsTerugmelding",
        "Echo",
        "Statusoverzicht",
    ]
    for name, operation in binding._operations.items():
        assert operation.soapaction == f"{DMKS_NS}{name}"
        assert operation.abstract.wsa_action == f"{DMKS_NS}{name}"


def test_the_stub_serves_a_wsdl_zeep_can_call_through(digimelding_stub: StubHandle) -> None:
    remote = zeep.Client(f"{digimelding_stub.url}?wsdl")
    assert remote.service.Echo(Tekst="via de geserveerde WSDL") == "via de geserveerde WSDL"


# --- every operation against the stub -----------------------------------------------------


def test_echo(digimelding_stub: StubHandle) -> None:
    assert run(client(digimelding_stub.url).echo("hallo ✓")) == "hallo ✓"


def test_submit_sends_a_schema_valid_request_and_is_stored(
    digimelding_stub: StubHandle, nhr: ReverseMapping
) -> None:
    request = report(nhr)
    receipt = run(client(digimelding_stub.url).annotatie_toevoegen(request))
    assert receipt.annotatie_uuid == request.root_uuid
    assert abs(receipt.tijdstempel - datetime.now(UTC)) < timedelta(minutes=1)
    (body,) = digimelding_stub.received_bodies("AnnotatieToevoegen")
    assert body.findtext("d:OinBasisregistratie", namespaces=NS) == NHR_OIN
    assert body.findtext("d:Registratie", namespaces=NS) == "NHR"
    assert len(body.findall("d:AnnotatieBoom/d:Bijlageverwijzing", NS)) == 2
    (received,) = digimelding_stub.received("AnnotatieToevoegen")
    assert received["action"] == f"{DMKS_NS}AnnotatieToevoegen"
    assert received["messageId"].startswith("urn:uuid:")
    assert f"?OIN={MELDER}</wsa:Address>" in received["xml"]
    assert (
        digimelding_stub.control("GET", f"/terugmeldingen/{request.root_uuid}").json()["status"]
        == "Gemeld"
    )


def test_status_follows_the_registry_and_details_hold_the_whole_tree(
    digimelding_stub: StubHandle, nhr: ReverseMapping
) -> None:
    dmks = client(digimelding_stub.url)
    first, second = report(nhr, kenmerk="A"), report(nhr, kenmerk="B")
    run(dmks.annotatie_toevoegen(first))
    run(dmks.annotatie_toevoegen(second))
    assert digimelding_stub.set_status(first.root_uuid, "In behandeling").status_code == 200
    entries = run(dmks.statusoverzicht(NHR_OIN, oin_melder=MELDER))
    assert {(e.annotatie_uuid, e.status, e.referentiekenmerk) for e in entries} == {
        (first.root_uuid, "In behandeling", "A"),
        (second.root_uuid, "Gemeld", "B"),
    }
    only = run(dmks.statusoverzicht(NHR_OIN, oin_melder=MELDER, uuids=[second.root_uuid]))
    assert [e.annotatie_uuid for e in only] == [second.root_uuid]
    changed = (
        entries[0].tijdstempel if entries[0].status == "In behandeling" else entries[1].tijdstempel
    )
    since = run(dmks.statusoverzicht(NHR_OIN, oin_melder=MELDER, sinds=changed))
    assert [e.status for e in since] == ["In behandeling"]
    assert run(dmks.statusoverzicht(NHR_OIN, oin_melder="00000001000000000000")) == []
    tree = etree.fromstring(run(dmks.details_terugmelding(first.root_uuid)))
    wrapper = etree.Element(f"{{{DMKS_NS}}}DetailsTerugmeldingResponse")
    wrapper.append(tree)
    assert schema_errors(wrapper) == []
    statuses = [s.text for s in tree.iterfind("d:Annotatiestatus/d:Status", NS)]
    assert statuses == ["Gemeld", "In behandeling"]
    root = tree.find("d:Terugmelding", NS)
    assert root is not None
    assert root.get("uuid") == first.root_uuid


def test_withdrawal_ends_the_report_and_cannot_be_repeated(
    digimelding_stub: StubHandle, nhr: ReverseMapping
) -> None:
    dmks = client(digimelding_stub.url)
    request = report(nhr)
    run(dmks.annotatie_toevoegen(request))
    withdraw = withdrawal(nhr, request.root_uuid)
    receipt = run(dmks.annotatie_toevoegen(withdraw))
    assert receipt.annotatie_uuid == withdraw.uuids[0]
    (entry,) = run(dmks.statusoverzicht(NHR_OIN, oin_melder=MELDER))
    assert (entry.status, entry.toelichting) == ("Ingetrokken", "Dubbel gemeld")
    with pytest.raises(DigimeldingFault) as caught:
        run(dmks.annotatie_toevoegen(withdrawal(nhr, request.root_uuid)))
    assert (caught.value.code, caught.value.retryable) == ("DK0050", False)
    assert "is Ingetrokken; it cannot become Ingetrokken" in caught.value.faultstring


# --- faults -------------------------------------------------------------------------------


def test_dk0002_when_another_organisation_withdraws(
    digimelding_stub: StubHandle, nhr: ReverseMapping
) -> None:
    dmks = client(digimelding_stub.url)
    request = report(nhr)
    run(dmks.annotatie_toevoegen(request))
    with pytest.raises(DigimeldingFault) as caught:
        run(dmks.annotatie_toevoegen(withdrawal(nhr, request.root_uuid, oin_melder="0" * 20)))
    assert (caught.value.code, caught.value.retryable) == ("DK0002", False)
    assert caught.value.faultcode == "Client.DK0002.Oin"


def test_dk0004_for_a_request_outside_the_schema(
    digimelding_stub: StubHandle, nhr: ReverseMapping
) -> None:
    valid = report(nhr)
    boom = etree.fromstring(valid.annotatieboom)
    root = boom.find("d:Terugmelding", NS)
    assert root is not None
    root.remove(root.find("d:Attributenset", NS))
    invalid = AnnotatieToevoegen(NHR_OIN, "NHR", etree.tostring(boom), valid.root_uuid)
    with pytest.raises(DigimeldingFault) as caught:
        run(client(digimelding_stub.url).annotatie_toevoegen(invalid))
    fault = caught.value
    assert (fault.code, fault.retryable) == ("DK0004", False)
    assert fault.faultcode == "Client.DK0004.SchemaValidatie"
    assert "Attributenset" in fault.faultstring
    assert digimelding_stub.control("GET", "/terugmeldingen").json() == []


@pytest.mark.parametrize(
    ("script", "code", "faultcode", "retryable"),
    [
        ({"code": "DK0051"}, "DK0051", "Server.DK0051.Gescript", True),
        ({"code": "DK0051", "server": False}, "DK0051", "Client.DK0051.Gescript", True),
        ({"code": "DK0050"}, "DK0050", "Server.DK0050.Gescript", True),
        ({"code": "DK0050", "server": False}, "DK0050", "Client.DK0050.Gescript", False),
        ({"code": "DK0002"}, "DK0002", "Client.DK0002.Gescript", False),
        ({"code": "DK0004", "server": True}, "DK0004", "Server.DK0004.Gescript", False),
        ({"code": "NH0101"}, "NH0101", "Client.NH0101.Gescript", False),
        ({"code": "NH0102", "server": True}, "NH0102", "Server.NH0102.Gescript", True),
    ],
)
def test_scripted_faults_are_parsed_with_their_retry_decision(
    digimelding_stub: StubHandle,
    script: dict[str, Any],
    code: str,
    faultcode: str,
    retryable: bool,
) -> None:
    digimelding_stub.inject_fault(**script)
    with pytest.raises(DigimeldingFault) as caught:
        run(client(digimelding_stub.url).echo("x"))
    assert (caught.value.code, caught.value.faultcode, caught.value.retryable) == (
        code,
        faultcode,
        retryable,
    )
    assert caught.value.actor == "DigiMelding"


def test_dk0051_twice_then_the_request_goes_through(
    digimelding_stub: StubHandle, nhr: ReverseMapping
) -> None:
    digimelding_stub.inject_fault("DK0051", count=2, operation="AnnotatieToevoegen")
    dmks = client(digimelding_stub.url)
    assert run(dmks.echo("niet geraakt")) == "niet geraakt"
    request = report(nhr)
    for _ in range(2):
        with pytest.raises(DigimeldingFault) as caught:
            run(dmks.annotatie_toevoegen(request))
        assert caught.value.retryable is True
    assert run(dmks.annotatie_toevoegen(request)).annotatie_uuid == request.root_uuid


@pytest.mark.parametrize(
    ("fixture", "code", "retryable", "detail"),
    [
        ("fault-code-only.xml", "DK0051", True, None),
        (
            "fault-registry-specific.xml",
            "NHR0101",
            False,
            "12345678 staat niet in het Handelsregister",
        ),
    ],
)
def test_faults_from_other_servers(
    hostile: ScriptedSink, fixture: str, code: str, retryable: bool, detail: str | None
) -> None:
    hostile.script(
        "/dmks", Reply(500, {"content-type": "text/xml"}, (FIXTURES / fixture).read_bytes())
    )
    with pytest.raises(DigimeldingFault) as caught:
        run(client(hostile.url("/dmks")).echo("x"))
    assert (caught.value.code, caught.value.retryable, caught.value.detail) == (
        code,
        retryable,
        detail,
    )


# --- unavailable and hostile --------------------------------------------------------------


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/dmks"
    with pytest.raises(DigimeldingUnavailable, match="cannot reach") as caught:
        run(client(url).echo("x"))
    assert caught.value.retryable is True


def test_a_slow_registry_is_unavailable_within_the_timeout(digimelding_stub: StubHandle) -> None:
    digimelding_stub.delay(1.5)
    started = time.monotonic()
    with pytest.raises(DigimeldingUnavailable, match=r"did not answer Echo within 0.3s"):
        run(client(digimelding_stub.url, timeout=0.3).echo("x"))
    assert time.monotonic() - started < 2.0


def test_5xx_without_a_fault_is_unavailable(digimelding_stub: StubHandle) -> None:
    assert digimelding_stub.control("POST", "/outages", {"status": 503}).status_code == 201
    with pytest.raises(DigimeldingUnavailable) as caught:
        run(client(digimelding_stub.url).echo("x"))
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert run(client(digimelding_stub.url).echo("weer op")) == "weer op"


def test_a_redirect_is_not_followed(hostile: ScriptedSink) -> None:
    hostile.script("/dmks", Reply(302, {"location": hostile.url("/elders")}))
    with pytest.raises(DigimeldingRejected) as caught:
        run(client(hostile.url("/dmks")).echo("x"))
    assert (caught.value.status, caught.value.retryable) == (302, False)
    assert [r.path for r in hostile.received()] == ["/dmks"]


def test_a_404_page_is_rejected_not_retried(hostile: ScriptedSink) -> None:
    hostile.script(
        "/dmks", Reply(404, {"content-type": "text/html"}, b"<html><body>weg</body></html>")
    )
    with pytest.raises(DigimeldingRejected, match="HTTP 404"):
        run(client(hostile.url("/dmks")).echo("x"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"Service Temporarily Unavailable", "not usable XML"),
        ((FIXTURES / "answer-billion-laughs.xml").read_bytes(), "DTDs and entity declarations"),
        (b"<a>" * 200 + b"</a>" * 200, "nested deeper than 64 levels"),
        ((FIXTURES / "answer-soap12.xml").read_bytes(), "instead of a SOAP 1.1 Envelope"),
        ((FIXTURES / "answer-echo-other-message.xml").read_bytes(), "answered another message"),
        ((FIXTURES / "answer-echo-not-in-schema.xml").read_bytes(), "against the schema"),
    ],
)
def test_hostile_answers_are_unavailable_not_crashes(
    hostile: ScriptedSink, body: bytes, reason: str
) -> None:
    hostile.script("/dmks", Reply(200, {"content-type": "text/xml"}, body))
    with pytest.raises(DigimeldingUnavailable, match=reason):
        run(client(hostile.url("/dmks")).echo("x"))


def test_an_oversized_answer_is_refused_unread(hostile: ScriptedSink) -> None:
    hostile.script(
        "/dmks", Reply(200, {"content-type": "text/xml"}, b"<x>" + b"a" * 200_000 + b"</x>")
    )
    with pytest.raises(DigimeldingUnavailable, match="more than 65536 bytes"):
        run(client(hostile.url("/dmks"), max_answer_bytes=65536).echo("x"))


def test_only_http_endpoints() -> None:
    with pytest.raises(ValueError, match="http"):
        DigimeldingClient("file:///etc/passwd")


# --- the stub: hostile SOAP and its control API ---------------------------------------------


def test_the_stub_answers_garbage_with_dk0004_and_keeps_serving(
    digimelding_stub: StubHandle,
) -> None:
    for body in (b"not xml", (FIXTURES / "answer-billion-laughs.xml").read_bytes(), b"<a/>"):
        answer = httpx.post(
            digimelding_stub.url, content=body, headers={"content-type": "text/xml"}
        )
        assert answer.status_code == 500
        fault = etree.fromstring(answer.content).find(".//faultcode")
        assert fault is not None
        assert fault.text is not None
        assert fault.text.startswith("soap:Client.DK0004.")
    assert run(client(digimelding_stub.url).echo("nog hier")) == "nog hier"


def test_the_stub_walks_the_lifecycle_and_refuses_other_transitions(
    digimelding_stub: StubHandle, nhr: ReverseMapping
) -> None:
    request = report(nhr)
    run(client(digimelding_stub.url).annotatie_toevoegen(request))
    refused = digimelding_stub.set_status(request.root_uuid, "Afgehandeld")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == (
        "Gemeld → Afgehandeld is not a DMKS transition (allowed: In behandeling, Ingetrokken, "
        "Onvoldoende informatie, Verkeerde Bronhouder)"
    )
    for status in ("In behandeling", "Ingepland", "Afgehandeld"):
        assert digimelding_stub.set_status(request.root_uuid, status).status_code == 200
    history = digimelding_stub.control("GET", f"/terugmeldingen/{request.root_uuid}").json()[
        "history"
    ]
    assert [h["status"] for h in history] == [
        "Gemeld",
        "In behandeling",
        "Ingepland",
        "Afgehandeld",
    ]
    assert digimelding_stub.set_status(request.root_uuid, "Gemeld").status_code == 409


@pytest.mark.parametrize(
    "case",
    [
        ("/terugmeldingen/{uuid}/status", {"status": "Klaar"}, 400, "'Klaar' is not a DMKS status"),
        (
            "/terugmeldingen/{uuid}/status",
            {"status": 3},
            400,
            "/status: Input should be a valid string",
        ),
        (
            "/terugmeldingen/{uuid}/status",
            {"status": "Gemeld", "x": 1},
            400,
            "/x: Extra inputs are not permitted",
        ),
        ("/terugmeldingen/{uuid}/status", "not json", 400, "Invalid JSON"),
        (
            "/terugmeldingen/00000000-0000-4000-8000-000000000000/status",
            {"status": "Gemeld"},
            404,
            "no terugmelding",
        ),
        ("/faults", {"code": "0051"}, 400, "/code: String should match pattern"),
        (
            "/faults",
            {"code": "DK0051", "count": 0},
            400,
            "/count: Input should be greater than or equal to 1",
        ),
        ("/faults", {"code": "DK0051", "operation": "Nope"}, 400, "'Nope' is not an operation"),
        ("/delays", {"seconds": 1000}, 400, "/seconds: Input should be less than or equal to 120"),
        ("/outages", {"status": 200}, 400, "/status: Input should be greater than or equal to 400"),
    ],
)
def test_hostile_control_requests_get_precise_problems(
    digimelding_stub: StubHandle, nhr: ReverseMapping, case: tuple[str, Any, int, str]
) -> None:
    path, body, status, detail = case
    request = report(nhr)
    run(client(digimelding_stub.url).annotatie_toevoegen(request))
    target = f"/control{path.format(uuid=request.root_uuid)}"
    if isinstance(body, str):
        answer = httpx.post(
            digimelding_stub.server.url(target),
            content=body,
            headers={"content-type": "application/json"},
        )
    else:
        answer = httpx.post(digimelding_stub.server.url(target), json=body)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status
    assert detail in problem["detail"]
    assert run(client(digimelding_stub.url).echo("nog hier")) == "nog hier"


def test_control_wants_json(digimelding_stub: StubHandle) -> None:
    answer = httpx.post(digimelding_stub.server.url("/control/faults"), content=b"code=DK0051")
    assert answer.status_code == 415


# --- secure profiles ----------------------------------------------------------------------


def test_mutual_tls_to_the_stub(pki: LocalPki) -> None:
    tls = {
        "ssl_certfile": str(pki.server_certificate),
        "ssl_keyfile": str(pki.server_key),
        "ssl_keyfile_password": SERVER_KEY_PASSWORD,
        "ssl_ca_certs": str(pki.ca_bundle),
        "ssl_cert_reqs": 2,  # ssl.CERT_REQUIRED
    }
    with running_stub(**tls) as stub:
        with_cert = ClientTls(
            certificate=pki["nhr"].certificate, key=pki["nhr"].key, trusted_cas=pki.ca_bundle
        )
        assert run(client(stub.url, tls=with_cert).echo("2W-be")) == "2W-be"
        without = ClientTls(trusted_cas=pki.ca_bundle)
        with pytest.raises(DigimeldingUnavailable):
            run(client(stub.url, tls=without).echo("x"))


def test_signed_requests_carry_a_verifiable_signature(
    digimelding_stub: StubHandle, nhr: ReverseMapping, pki: LocalPki
) -> None:
    signer = EnvelopeSigner(pki["nhr"].credentials)
    request = report(nhr)
    run(client(digimelding_stub.url, signer=signer).annotatie_toevoegen(request))
    (received,) = digimelding_stub.received("AnnotatieToevoegen")
    envelope = etree.fromstring(received["xml"].encode())
    verified = verify_envelope(
        envelope, trust=pki.trust(), now=datetime.now(UTC), max_skew=timedelta(minutes=5)
    )
    assert verified.oin == pki["nhr"].oin
    digimelding_stub.received_bodies("AnnotatieToevoegen")


# --- the command --------------------------------------------------------------------------


def test_digimelding_stub_command_serves_soap(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "digibridge", "digimelding-stub", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/dmks"

        def answers() -> bool:
            try:
                return httpx.get(f"{url}?wsdl").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=20, what="the stub command")
        assert run(client(url).echo("cli")) == "cli"
    finally:
        process.terminate()
        process.wait(10)


def test_a_stub_that_wants_signatures_refuses_unsigned_requests(
    nhr: ReverseMapping, pki: LocalPki
) -> None:
    stub = DigimeldingStub(signature_trust=pki.trust())
    server = LoopbackServer(stub.app)
    server.start()
    try:
        url = server.url("/dmks")
        with pytest.raises(DigimeldingFault) as caught:
            run(client(url).annotatie_toevoegen(report(nhr)))
        assert (caught.value.code, caught.value.retryable) == ("DK0002", False)
        assert "no wsse:Security header" in caught.value.faultstring
        signer = EnvelopeSigner(pki["brp"].credentials)
        request = report(nhr)
        assert run(client(url, signer=signer).annotatie_toevoegen(request)).annotatie_uuid == (
            request.root_uuid
        )
    finally:
        server.stop()

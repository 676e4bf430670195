"""`/v1/terugmeldingen` on a running gateway: the resource, Idempotency-Key, owner isolation,
paging and filters, and a precise problem+json for every hostile body (the process keeps
serving). DigiMelding is F's stub on loopback; the flow through it is in tests/e2e."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.digimelding import StubHandle, running_stub
from tests.support.events import check_webhook
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.sinks import ScriptedSink

PROBLEM = "application/problem+json"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TRANSPORT = "nl.digibridge.terugmelding.transportstatus-gewijzigd"
ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"
OPERATOR = "operator-key-0123456789abcdef"
OIN = "00000001001234567000"
NHR_OIN = "00000001003214345000"
#: The body cap of the test gateway: 4 MiB, so 2 MB in one field passes it and meets the field's.
MAX_BYTES = 4 * 1024 * 1024

PDF_BYTES = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
PDF = base64.b64encode(PDF_BYTES).decode()


def melding(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "registratie": "NHR",
        "objectSleutel": "12345678",
        "attributen": [
            {
                "naam": "handelsnaam",
                "betwijfeldeWaarde": "Bakkerij De Korenaar",
                "voorgesteldeWaarde": "Bakkerij De Korenaer",
            }
        ],
        "peildatum": "2026-10-01",
        "toelichting": "Gevelbord en KvK-uittreksel verschillen.",
        "referentiekenmerk": "ZK-2026-001",
        "contact": {
            "naam": "J. de Vries",
            "email": "j.devries@gemeente.nl",
            "telefoon": "+31 20 555 0100",
        },
        "bijlagen": [{"bestandsnaam": "foto.pdf", "mimeType": "application/pdf", "data": PDF}],
    }
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def stub() -> Iterator[StubHandle]:
    with running_stub() as handle:
        yield handle


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, stub: StubHandle) -> Iterator[GatewayProcess]:
    endpoints = {"NHR": {"url": stub.url}, "BRP": {"url": stub.url, "sign": False}}
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"),
        env={
            "DIGIBRIDGE_API_KEYS": f"alice:{ALICE},bob:{BOB},{OPERATOR}",
            "DIGIBRIDGE_OIN": OIN,
            "DIGIBRIDGE_DIGIMELDING": json.dumps(endpoints),
            "DIGIBRIDGE_TERUGMELDING_MAX_BYTES": str(MAX_BYTES),
            "DIGIBRIDGE_TERUGMELDING_MAX_ATTACHMENT_BYTES": str(64 * 1024),
        },
    ).start()
    yield process
    process.stop()


def client(gateway: GatewayProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{gateway.url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


@pytest.fixture
def alice(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with client(gateway, ALICE) as api:
        yield api


@pytest.fixture
def bob(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with client(gateway, BOB) as api:
        yield api


def assert_problem(response: httpx.Response, status: int, name: str | None, *mentions: str) -> None:
    """A problem+json with `status`; for a 400, `name` is the (only) invalid parameter."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["instance"].startswith("/v1/terugmeldingen")
    if name is not None:
        assert [param["name"] for param in body["invalidParams"]] == [name], body
    for mention in mentions:
        assert mention in body["detail"], body["detail"]


def test_create_answers_201_with_location_and_the_resource(alice: httpx.Client) -> None:
    created = alice.post("/terugmeldingen", json=melding())
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/v1/terugmeldingen/{body['id']}"
    assert body["status"] == "ontvangen"
    assert body["dmksStatus"] is None
    assert body["oinMelder"] == OIN
    assert body["oinBasisregistratie"] == NHR_OIN
    assert body["bijlagen"] == [
        {
            "bestandsnaam": "foto.pdf",
            "mimeType": "application/pdf",
            "grootte": len(PDF_BYTES),
            "beschrijving": None,
        }
    ]
    assert "data" not in json.dumps(body["bijlagen"])
    assert [(h["kind"], h["status"]) for h in body["history"]] == [("transport", "ontvangen")]
    read = alice.get(body["_links"]["self"]["href"].removeprefix("/v1"))
    assert read.status_code == 200
    assert read.json()["id"] == body["id"]
    assert read.json()["annotatieUuid"] == body["annotatieUuid"]


def test_the_reporting_oin_never_comes_from_the_body(alice: httpx.Client) -> None:
    assert_problem(
        alice.post("/terugmeldingen", json=melding(oinMelder="00000001999999999000")),
        400,
        "oinMelder",
        "Extra inputs",
    )
    other = alice.post("/terugmeldingen", json=melding(oinBasisregistratie="00000001001172773000"))
    assert_problem(other, 400, "oinBasisregistratie", "not the OIN of NHR")


def test_idempotency_key_same_body_replays_other_body_conflicts(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    headers = {"Idempotency-Key": "zaak-4711"}
    first = alice.post("/terugmeldingen", json=melding(), headers=headers)
    assert first.status_code == 201, first.text
    again = alice.post("/terugmeldingen", json=melding(), headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = alice.post("/terugmeldingen", json=melding(toelichting="anders"), headers=headers)
    assert_problem(other, 409, None, "zaak-4711")
    # Keys are per consumer: Bob's zaak-4711 is his own.
    bobs = bob.post("/terugmeldingen", json=melding(), headers=headers)
    assert bobs.status_code == 201
    assert bobs.json()["id"] != first.json()["id"]
    bad_key = alice.post(
        "/terugmeldingen", json=melding(), headers={"Idempotency-Key": "two words"}
    )
    assert_problem(bad_key, 400, "Idempotency-Key")


def test_another_consumer_gets_404(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayProcess
) -> None:
    mine = alice.post("/terugmeldingen", json=melding()).json()
    assert_problem(bob.get(f"/terugmeldingen/{mine['id']}"), 404, None, mine["id"])
    assert_problem(bob.post(f"/terugmeldingen/{mine['id']}/intrekken"), 404, None)
    assert mine["id"] not in [
        t["id"] for t in bob.get("/terugmeldingen?limit=1000").json()["terugmeldingen"]
    ]
    assert_problem(alice.get("/terugmeldingen/does-not-exist"), 404, None)
    with client(gateway, OPERATOR) as operator:
        assert operator.get(f"/terugmeldingen/{mine['id']}").status_code == 200


def test_paging_and_status_filter(bob: httpx.Client, stub: StubHandle) -> None:
    made = [
        bob.post("/terugmeldingen", json=melding(referentiekenmerk=f"P-{n}")).json()
        for n in range(3)
    ]
    ids = {m["id"] for m in made}

    def all_sent() -> bool:
        page = bob.get("/terugmeldingen", params={"status": "verzonden", "limit": 1000}).json()
        return ids <= {t["id"] for t in page["terugmeldingen"]}

    wait_until(all_sent, timeout=15, what="the outbox sent them")
    assert not ids & {
        t["id"]
        for t in bob.get("/terugmeldingen", params={"status": "mislukt"}).json()["terugmeldingen"]
    }
    seen: list[str] = []
    href: str | None = "/v1/terugmeldingen?limit=2"
    while href is not None:
        page = bob.get(href.removeprefix("/v1")).json()
        assert len(page["terugmeldingen"]) <= 2
        seen += [t["id"] for t in page["terugmeldingen"]]
        href = page["_links"].get("next", {}).get("href")
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))
    assert_problem(bob.get("/terugmeldingen", params={"status": "weg"}), 400, "status")
    assert_problem(bob.get("/terugmeldingen", params={"dmksStatus": "gemeld"}), 400, "dmksStatus")
    assert_problem(bob.get("/terugmeldingen", params={"after": "nonsense"}), 400, "after")


@pytest.mark.parametrize(
    ("changes", "name", "mention"),
    [
        ({"registratie": "XYZ"}, "registratie", "no registry 'XYZ'"),
        ({"attributen": []}, "attributen", "at least 1"),
        ({"attributen": [{"naam": "handelsnaam"}]}, "attributen.0", "betwijfeldeWaarde"),
        (
            {"attributen": [{"naam": "kleur", "voorgesteldeWaarde": "rood"}]},
            "attributen.0.naam",
            "no attribute 'kleur'",
        ),
        ({"objectSleutel": "1234"}, "objectSleutel", "KvK number"),
        ({"peildatum": "2026-02-30"}, "peildatum", "date"),
        ({"peildatum": 1767225600}, "peildatum", "YYYY-MM-DD"),
        ({"referentiekenmerk": "ZK-2026-00001"}, "referentiekenmerk", "at most 12"),
        ({"contact": {"naam": "J", "email": "geen-adres"}}, "contact.email", "e-mail"),
        (
            {"contact": {"naam": "J", "email": "j@x.nl", "telefoon": "bel me"}},
            "contact.telefoon",
            "telephone",
        ),
        ({"toelichting": 42}, "toelichting", "string"),
        ({"extra": True}, "extra", "Extra inputs"),
        (
            {
                "bijlagen": [
                    {"bestandsnaam": "a.pdf", "mimeType": "application/pdf", "data": "not base64!"}
                ]
            },
            "bijlagen.0.data",
            "base64",
        ),
        (
            {
                "bijlagen": [
                    {"bestandsnaam": "a.exe", "mimeType": "application/x-msdownload", "data": PDF}
                ]
            },
            "bijlagen.0.mimeType",
            "does not accept",
        ),
        (
            {
                "bijlagen": [
                    {"bestandsnaam": "../a.pdf", "mimeType": "application/pdf", "data": PDF}
                ]
            },
            "bijlagen.0.bestandsnaam",
            "not a path",
        ),
        (
            {
                "bijlagen": [{"bestandsnaam": "a.pdf", "mimeType": "application/pdf", "data": PDF}]
                * 6
            },
            "bijlagen",
            "at most 5",
        ),
        (
            {
                "bijlagen": [
                    {
                        "bestandsnaam": "a.pdf",
                        "mimeType": "application/pdf",
                        "data": base64.b64encode(b"x" * 70_000).decode(),
                    }
                ]
            },
            "bijlagen.0.data",
            "larger than 65536 bytes",
        ),
        (
            # One byte over the cap: its base64 is as long as the cap's, so it is decoded first.
            {
                "bijlagen": [
                    {
                        "bestandsnaam": "a.pdf",
                        "mimeType": "application/pdf",
                        "data": base64.b64encode(b"x" * 65_537).decode(),
                    }
                ]
            },
            "bijlagen.0.data",
            "larger than 65536 bytes",
        ),
        (
            {
                "registratie": "BRP",
                "objectSleutel": "999990019",
                "attributen": [{"naam": "geslachtsnaam", "voorgesteldeWaarde": "Jansen"}],
            },
            "bijlagen",
            "BRP accepts no attachments",
        ),
        # Unicode: what XML cannot carry is refused, naming the field and the character.
        ({"toelichting": "nul\u0000byte"}, "toelichting", "U+0000"),
        ({"toelichting": "\ufffe"}, "toelichting", "U+FFFE"),
        ({"contact": {"naam": "\u0007bel", "email": "j@x.nl"}}, "contact.naam", "U+0007"),
        ({"referentiekenmerk": "🦆" * 13}, "referentiekenmerk", "at most 12"),
    ],
)
def test_hostile_bodies_get_a_precise_problem(
    alice: httpx.Client, changes: dict[str, Any], name: str, mention: str
) -> None:
    assert_problem(alice.post("/terugmeldingen", json=melding(**changes)), 400, name, mention)


def test_every_problem_is_reported_in_one_answer(alice: httpx.Client) -> None:
    body = melding(
        objectSleutel="1",
        contact={"naam": "J", "email": "nope"},
        bijlagen=[{"bestandsnaam": "a.pdf", "mimeType": "image/gif", "data": "%%%"}],
    )
    answer = alice.post("/terugmeldingen", json=body)
    assert answer.status_code == 400
    names = sorted(param["name"] for param in answer.json()["invalidParams"])
    assert names == [
        "bijlagen.0.data",
        "bijlagen.0.mimeType",
        "contact.email",
        "objectSleutel",
    ]


def test_two_megabytes_in_a_field_and_a_body_over_the_cap(alice: httpx.Client) -> None:
    big = alice.post("/terugmeldingen", json=melding(toelichting="a" * 2_000_000))
    assert_problem(big, 400, "toelichting", "at most 4000 characters")
    over = alice.post(
        "/terugmeldingen",
        content=b'{"toelichting": "' + b"a" * MAX_BYTES + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(over, 413, None, f"larger than {MAX_BYTES} bytes")

    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b" " * (1024 * 1024)

    streamed = alice.post(
        "/terugmeldingen", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(streamed, 413, None)


def test_bad_json_wrong_media_type_and_unicode_that_is_kept(alice: httpx.Client) -> None:
    broken = alice.post(
        "/terugmeldingen", content=b'{"registratie": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(broken, 400, None, "JSON")
    listed = alice.post(
        "/terugmeldingen", content=b"[]", headers={"Content-Type": "application/json"}
    )
    assert_problem(listed, 400, None)
    text = alice.post(
        "/terugmeldingen", content=json.dumps(melding()), headers={"Content-Type": "text/plain"}
    )
    assert_problem(text, 415, None)
    # Astral characters, combining accents and right-to-left text are data like any other.
    unusual = "Zoë 🍞 e\u0301 \u05e9\u05dc\u05d5\u05dd"
    kept = alice.post(
        "/terugmeldingen",
        json=melding(toelichting=unusual, referentiekenmerk="🦆" * 12),
    )
    assert kept.status_code == 201, kept.text
    again = alice.get(f"/terugmeldingen/{kept.json()['id']}").json()
    assert (again["toelichting"], again["referentiekenmerk"]) == (unusual, "🦆" * 12)


def test_withdrawing_twice_is_a_conflict(alice: httpx.Client) -> None:
    made = alice.post("/terugmeldingen", json=melding()).json()
    first = alice.post(f"/terugmeldingen/{made['id']}/intrekken", json={"toelichting": "dubbel"})
    assert first.status_code == 202, first.text
    assert first.json()["intrekkingStatus"] == "ontvangen"
    assert_problem(alice.post(f"/terugmeldingen/{made['id']}/intrekken"), 409, None, "already")
    bad = alice.post(f"/terugmeldingen/{made['id']}/intrekken", json={"reden": "x"})
    assert_problem(bad, 400, "reden")


def test_without_a_key_or_with_unconfigured_registry(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    anonymous = httpx.post(f"{gateway.url}/v1/terugmeldingen", json=melding(), timeout=10)
    assert anonymous.status_code == 401
    bag = alice.post(
        "/terugmeldingen",
        json=melding(registratie="BAG", objectSleutel="0363010000000001", bijlagen=[]),
    )
    assert_problem(bag, 503, None, "no DigiMelding endpoint is configured for BAG")
    assert alice.get("/terugmeldingen").status_code == 200


def test_events_go_only_to_the_submitters_subscriptions(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayProcess
) -> None:
    sinks = {name: ScriptedSink() for name in ("alice", "bob")}
    for sink in sinks.values():
        sink.start()
    try:
        subscriptions = {}
        for name, api in (("alice", alice), ("bob", bob)):
            made = api.post(
                "/subscriptions",
                json={
                    "sink": sinks[name].url(),
                    "types": [TRANSPORT],
                    "delivery": {"secret": SECRET},
                },
            )
            assert made.status_code == 201, made.text
            subscriptions[name] = made.json()["id"]
        mine = alice.post("/terugmeldingen", json=melding()).json()

        def alices_event() -> list[dict[str, Any]]:
            documents = [check_webhook(r, SECRET) for r in sinks["alice"].posts()]
            return [d for d in documents if d["subject"] == mine["id"]]

        (event,) = wait_until(alices_event, timeout=15, what="alice's transport event")
        # Deliveries are made in the transaction that stores the event: Bob's has none of it.
        with client(gateway, OPERATOR) as operator:
            listed = operator.get(
                "/deliveries", params={"subscription": subscriptions["bob"], "limit": 1000}
            )
        assert listed.status_code == 200, listed.text
        assert event["id"] not in [d["eventId"] for d in listed.json()["deliveries"]]
    finally:
        for sink in sinks.values():
            sink.stop()

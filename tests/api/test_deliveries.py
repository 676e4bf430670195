"""The delivery log, operator actions and the new subscription options on a running gateway,
and `digibridge deliveries` talking to it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from digibridge.delivery.signing import generate_secret
from digibridge.wus.devcerts import DevCa
from tests.support.gateway import GatewayProcess, send_message
from tests.support.net import wait_until
from tests.support.sinks import Reply, ScriptedSink

PROBLEM = "application/problem+json"


@pytest.fixture
def api(shared_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{shared_gateway.url}/v1", timeout=10) as client:
        yield client


def subscribe(api: httpx.Client, sink: str, **delivery: object) -> str:
    body = {"sink": sink, "delivery": {"secret": generate_secret(), **delivery}}
    created = api.post("/subscriptions", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def deliveries(api: httpx.Client, **query: str) -> list[dict[str, object]]:
    page = api.get("/deliveries", params=query)
    assert page.status_code == 200, page.text
    items: list[dict[str, object]] = page.json()["deliveries"]
    return items


def test_dead_letter_is_listed_shown_and_retried(
    api: httpx.Client, shared_gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    receiver.script("/dead", Reply(400, body=b'{"title":"nope"}'))
    sub = subscribe(api, receiver.url("/dead"))
    [event_id, *_] = send_message(shared_gateway)

    wait_until(lambda: deliveries(api, status="dead", subscription=sub), what="a dead letter")
    [dead] = deliveries(api, status="dead", subscription=sub)[:1]
    assert dead["eventId"] == event_id
    shown = api.get(f"/deliveries/{dead['id']}").json()
    [attempt] = shown["attempts"]
    assert (attempt["statusCode"], attempt["error"]) == (400, "400 Bad Request")
    assert attempt["responseExcerpt"] == '{"title":"nope"}'
    assert attempt["durationMs"] > 0

    retried = api.post(f"/deliveries/{dead['id']}/retry")
    assert retried.status_code == 202, retried.text
    wait_until(
        lambda: api.get(f"/deliveries/{dead['id']}").json()["status"] == "succeeded",
        what="the retried delivery succeeded",
    )
    assert api.get(f"/deliveries/{dead['id']}").json()["attemptCount"] == 2


def test_replay_resends_delivered_events_and_paging_follows_next(
    api: httpx.Client, shared_gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    sub = subscribe(api, receiver.url("/replay"))
    ids = send_message(shared_gateway) + send_message(shared_gateway)
    receiver.wait_for_posts(len(ids))

    replayed = api.post(f"/subscriptions/{sub}/replay", json={"from": "2000-01-01T00:00:00Z"})
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["deliveriesCreated"] >= len(ids)
    receiver.wait_for_posts(2 * len(ids))

    seen: list[str] = []
    href: str | None = f"/v1/deliveries?subscription={sub}&limit=1"
    while href:
        page = httpx.get(f"{shared_gateway.url}{href}").json()
        seen += [item["id"] for item in page["deliveries"]]
        href = page["_links"].get("next", {}).get("href")
    assert len(seen) == len(set(seen)) >= 2 * len(ids)


def test_enable_brings_a_gone_subscription_back(
    api: httpx.Client, shared_gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    receiver.script("/gone", Reply(410))
    sub = subscribe(api, receiver.url("/gone"))
    send_message(shared_gateway)
    wait_until(
        lambda: api.get(f"/subscriptions/{sub}").json()["status"] == "disabled",
        what="the subscription disabled",
    )
    assert api.get(f"/subscriptions/{sub}").json()["statusReason"] == "410 Gone from sink"

    enabled = api.post(f"/subscriptions/{sub}/enable")
    assert enabled.status_code == 200
    assert (enabled.json()["status"], enabled.json().get("statusReason")) == ("active", None)


@pytest.mark.parametrize(
    ("sink", "mention"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://10.0.0.8/hook", "private"),
        ("https://[fe80::1]/hook", "link-local"),
        ("http://9.9.9.9/hook", "https://"),
    ],
)
def test_ssrf_sinks_are_refused_with_problem_json(
    api: httpx.Client, sink: str, mention: str
) -> None:
    response = api.post("/subscriptions", json={"sink": sink})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert mention in response.json()["detail"]
    assert response.json()["invalidParams"][0]["name"] == "sink"


def test_new_delivery_options_round_trip_and_secrets_stay_write_only(api: httpx.Client) -> None:
    client = DevCa.create().client("00000099000000000002")
    body = {
        "sink": "https://9.9.9.9/hook",
        "delivery": {
            "handshake": "none",  # nothing listens at 9.9.9.9: agreed out of band
            "signature": "v1a",
            "mode": "binary",
            "ordered": True,
            "timeout": 2.5,
            "retry4xx": True,
            "oauth": {
                "tokenUrl": "https://9.9.9.9/token",
                "clientId": "gemeente",
                "clientSecret": "very-secret",
                "scope": "notificaties",
            },
            "tls": {
                "clientCertificate": client.certificate_pem().decode(),
                "clientKey": client.key_pem().decode(),
            },
        },
    }
    created = api.post("/subscriptions", json=body)
    assert created.status_code == 201, created.text
    delivery = created.json()["delivery"]
    assert delivery["signature"] == "v1a"
    assert delivery["publicKey"].startswith("whpk_")
    assert "secret" not in delivery
    assert (delivery["mode"], delivery["ordered"], delivery["timeout"]) == ("binary", True, 2.5)
    assert delivery["retry4xx"] is True
    assert delivery["oauth"] == {
        "tokenUrl": "https://9.9.9.9/token",
        "clientId": "gemeente",
        "scope": "notificaties",
    }
    assert delivery["tls"] == {"clientCertificate": True, "caCertificates": False}
    assert "very-secret" not in created.text
    assert "PRIVATE KEY" not in created.text
    sub = created.json()["id"]
    assert api.get(f"/subscriptions/{sub}").json()["delivery"] == delivery

    rotated = api.post(f"/subscriptions/{sub}/rotate-secret", json={"gracePeriod": 60})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["signature"] == "v1a"
    assert rotated.json()["publicKey"] != delivery["publicKey"]
    assert api.delete(f"/subscriptions/{sub}").status_code == 204


@pytest.mark.parametrize(
    ("delivery", "mention"),
    [
        ({"xSignature": True, "signature": "v1a"}, "xSignature"),
        ({"batch": {"maxEvents": 5}}, "batch"),
        ({"timeout": 600}, "timeout"),
        ({"tls": {"clientCertificate": "x", "clientKey": "y"}}, "delivery.tls"),
        (
            {"tls": {"clientCertificate": "x", "clientKey": "y", "caCertificates": "\u00ca"}},
            "PEM text",
        ),
    ],
)
def test_inconsistent_delivery_options_are_refused(
    api: httpx.Client, delivery: dict[str, object], mention: str
) -> None:
    response = api.post("/subscriptions", json={"sink": "https://9.9.9.9/", "delivery": delivery})
    assert response.status_code == 400, response.text
    assert mention in response.text


def test_unknown_ids_and_bad_cursors_are_problems(api: httpx.Client) -> None:
    assert api.get("/deliveries/nope").status_code == 404
    assert api.post("/deliveries/nope/retry").status_code == 404
    assert api.post("/subscriptions/nope/replay", json={}).status_code == 404
    assert api.post("/subscriptions/nope/enable").status_code == 404
    bad = api.get("/deliveries", params={"after": "not-a-cursor"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == PROBLEM
    assert api.get("/deliveries", params={"status": "lost"}).status_code == 400


def test_the_cli_lists_shows_and_retries(
    api: httpx.Client, shared_gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    receiver.script("/cli", Reply(422))
    sub = subscribe(api, receiver.url("/cli"))
    send_message(shared_gateway)
    wait_until(lambda: deliveries(api, status="dead", subscription=sub), what="a dead letter")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "digibridge", "deliveries", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DIGIBRIDGE_URL": shared_gateway.url},
            check=False,
        )

    listed = cli("list", "--status", "dead", "--subscription", sub)
    assert listed.returncode == 0, listed.stderr
    delivery_id = listed.stdout.split()[0]
    assert "422 Unprocessable" in listed.stdout
    shown = cli("show", delivery_id)
    assert '"statusCode": 422' in shown.stdout
    retried = cli("retry", delivery_id)
    assert retried.stdout.startswith(f"{delivery_id} queued again")
    missing = cli("show", "nope")
    assert missing.returncode == 1
    assert "404" in missing.stderr

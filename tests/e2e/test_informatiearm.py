"""Notification forms end to end: one message, a subscription per form, each gets its form,
signed; the informatiearm event's `dataref` leads back to the full event."""

from __future__ import annotations

import httpx

from digibridge.delivery.signing import generate_secret
from tests.support.events import check_webhook
from tests.support.gateway import GatewayProcess
from tests.support.sinks import ScriptedSink
from tests.support.soap import post_levering, sample


def _subscribe(gateway: GatewayProcess, sink: str, form: str) -> str:
    secret = generate_secret()
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": sink, "delivery": {"secret": secret, "form": form}},
    )
    assert response.status_code == 201, response.text
    assert response.json()["delivery"]["form"] == form
    return secret


def test_each_subscription_gets_its_form(gateway: GatewayProcess, receiver: ScriptedSink) -> None:
    rich_secret = _subscribe(gateway, receiver.url("/rijk"), "informatierijk")
    arm_secret = _subscribe(gateway, receiver.url("/arm"), "informatiearm")
    brp_ids = post_levering(gateway.wus_url, sample("brp-verhuizing.xml"))
    nhr_ids = post_levering(gateway.wus_url, sample("nhr-nieuwe-inschrijving.xml"))
    receiver.wait_for_posts(4)

    rich = {d["id"]: d for d in (check_webhook(p, rich_secret) for p in receiver.posts("/rijk"))}
    arm = {d["id"]: d for d in (check_webhook(p, arm_secret) for p in receiver.posts("/arm"))}
    assert set(rich) == set(arm) == {*brp_ids, *nhr_ids}

    (brp,) = brp_ids
    assert "dataref" not in rich[brp]
    assert rich[brp]["data"]["nieuwAdres"]["postcode"] == "3011AB"
    assert arm[brp]["data"] == {"bsn": "999993653"}
    assert arm[brp]["dataref"] == f"{gateway.url}/v1/events/{brp}"
    assert arm[brp]["dataschema"] == f"{rich[brp]['dataschema']}?form=informatiearm"
    # Following the dataref gives the full event, exactly as the informatierijk subscriber got it.
    full = httpx.get(arm[brp]["dataref"])
    assert full.status_code == 200
    assert full.json() == rich[brp]
    assert httpx.get(arm[brp]["dataschema"]).json()["required"] == ["bsn"]

    (nhr,) = nhr_ids
    assert arm[nhr]["dataref"] == "https://api.kvk.nl/api/v1/basisprofielen/99012345"
    assert arm[nhr]["data"] == {
        "kvkNummer": "99012345",
        "vestiging": {"vestigingsnummer": "990000123456"},
    }
    assert arm[nhr]["subject"] == rich[nhr]["subject"] == "99012345"

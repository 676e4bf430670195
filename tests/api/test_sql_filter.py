"""The `sql` (CloudEvents SQL) filter dialect through a running gateway: real SOAP messages in,
only the matching events out to a real receiver; bad expressions refused as problem+json."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from digibridge.delivery.signing import generate_secret
from tests.support.gateway import GatewayProcess
from tests.support.sinks import ScriptedSink
from tests.support.soap import post_levering, sample, with_kenmerk

PROBLEM = "application/problem+json"


@pytest.fixture
def api(shared_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{shared_gateway.url}/v1", timeout=10) as client:
        yield client


def subscribe(api: httpx.Client, sink: str, expression: str) -> str:
    response = api.post(
        "/subscriptions",
        json={
            "sink": sink,
            "filters": [{"sql": expression}],
            "delivery": {"secret": generate_secret()},
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["filters"] == [{"sql": expression}]
    return str(response.json()["id"])


def delivered_event_ids(api: httpx.Client, subscription_id: str) -> list[str]:
    page = api.get("/deliveries", params={"subscription": subscription_id, "limit": 100})
    assert page.status_code == 200, page.text
    return [d["eventId"] for d in page.json()["deliveries"]]


def test_only_matching_events_are_delivered(
    api: httpx.Client, shared_gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    moved = subscribe(api, receiver.url("/moved"), "type = 'nl.brp.persoon-verhuisd'")
    panden = subscribe(
        api,
        receiver.url("/panden"),
        "type LIKE 'nl.bag.%' AND LEFT(subject, 4) = '0599' AND SUBSTRING(subject, 5, 2) = '10'",
    )
    # BRP events have no subject: `subject = 'nobody'` is a missingAttribute error there, and an
    # expression that met an error never matches, even where `type = ...` holds.
    erring = subscribe(
        api, receiver.url("/erring"), "subject = 'nobody' OR type = 'nl.brp.persoon-overleden'"
    )
    sent: dict[str, list[str]] = {}
    for name in ("brp-verhuizing", "brp-overlijden", "bag-gewijzigd"):
        sent[name] = post_levering(shared_gateway.wus_url, with_kenmerk(sample(f"{name}.xml")))
    assert [len(ids) for ids in sent.values()] == [1, 1, 3]

    # Deliveries are created in the transaction that precedes the acknowledgement, so the log
    # is complete now; the webhooks themselves follow.
    assert delivered_event_ids(api, moved) == sent["brp-verhuizing"]
    assert delivered_event_ids(api, panden) == [sent["bag-gewijzigd"][0]]
    assert delivered_event_ids(api, erring) == []

    receiver.wait_for_posts(2)
    moved_posts, pand_posts = receiver.posts("/moved"), receiver.posts("/panden")
    assert [json.loads(p.body)["type"] for p in moved_posts] == ["nl.brp.persoon-verhuisd"]
    assert [json.loads(p.body)["subject"] for p in pand_posts] == ["0599100000999001"]
    assert receiver.posts("/erring") == []
    for subscription_id in (moved, panden, erring):
        assert api.delete(f"/subscriptions/{subscription_id}").status_code == 204


@pytest.mark.parametrize(
    ("filters", "pointer", "mention"),
    [
        ([{"sql": "type = "}], "/filters/0/sql", "end of expression at column 8"),
        ([{"sql": "type LIKE 'nl.%' AND (source = 'x'"}], "/filters/0/sql", "to close the '('"),
        ([{"sql": "FOO(type)"}], "/filters/0/sql", "no function FOO"),
        ([{"sql": "LENGTH(type)"}], "/filters/0/sql", "yields Integer"),
        ([{"sql": ["type = 'x'"]}], "/filters/0/sql", "as a string"),
        ([{"sql": "(" * 5000 + "TRUE" + ")" * 5000}], "/filters/0/sql", "longer than"),
        ([{"sql": "(" * 60 + "TRUE" + ")" * 60}], "/filters/0/sql", "nests deeper"),
        ([{"sql": "caf\u00e9 = '\u20ac'"}], "/filters/0/sql", "unexpected character '\u00e9'"),
        ([{"any": [{"exact": {"type": "x"}}, {"sql": "'x"}]}], "/filters/0/any/1/sql", "closed"),
        ([{"cesql": "type = 'x'"}], "/filters/0", "'cesql' is not supported"),
    ],
)
def test_invalid_sql_and_unknown_dialects_are_problems_pointing_at_the_filter(
    api: httpx.Client, filters: list[object], pointer: str, mention: str
) -> None:
    response = api.post("/subscriptions", json={"sink": "https://9.9.9.9/h", "filters": filters})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 400
    assert isinstance(problem["title"], str)
    assert mention in problem["detail"]
    assert problem["invalidParams"] == [{"name": pointer, "reason": problem["detail"]}]


def test_the_gateway_keeps_serving_after_hostile_expressions(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    for text in ("NOT " * 20_000 + "TRUE", "'" + "\\" * 3000, "%" * 4000, "\x00"):
        response = api.post(
            "/subscriptions", json={"sink": "https://9.9.9.9/h", "filters": [{"sql": text}]}
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == PROBLEM
    ok = subscribe(api, receiver.url(), "EXISTS subject AND subject LIKE '0599%'")
    assert api.get(f"/subscriptions/{ok}").json()["filters"] == [
        {"sql": "EXISTS subject AND subject LIKE '0599%'"}
    ]
    assert api.delete(f"/subscriptions/{ok}").status_code == 204

"""`GET /v1/events`: the pull feed, paged by cursors, with `sequence` per source.

All tests share one gateway; each starts from the feed's end as it finds it, so events other
tests stored do not matter.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.events import ack_duplicate
from tests.support.gateway import GatewayProcess
from tests.support.soap import envelope, headers_for, post_levering, sample, with_kenmerk
from tests.support.sse import SseStream

SAMPLES = (
    "brp-verhuizing.xml",
    "bag-ingetrokken.xml",
    "nhr-nieuwe-inschrijving.xml",
    "brp-overlijden.xml",
    "nhr-update.xml",
    "bag-pand-nieuw.xml",
)


def feed(gateway: GatewayProcess, **params: Any) -> httpx.Response:
    return httpx.get(f"{gateway.url}/v1/events", params=params, timeout=10)


def end_of_feed(gateway: GatewayProcess) -> str:
    """The cursor after the last stored event."""
    response = feed(gateway, limit=1000)
    while "next" in response.json()["_links"]:
        response = httpx.get(gateway.url + response.json()["_links"]["next"]["href"])
    cursor: str = response.json()["nextCursor"]
    return cursor


def post_new(gateway: GatewayProcess, *names: str) -> list[str]:
    """Post each sample as a new message; the event ids in the order they were stored."""
    return [i for name in names for i in post_levering(gateway.wus_url, with_kenmerk(sample(name)))]


def assert_problem(response: httpx.Response, status: int, name: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    if name is not None:
        assert [param["name"] for param in problem["invalidParams"]] == [name]


def test_paging_through_the_feed_gives_every_new_event_once_in_store_order(
    shared_gateway: GatewayProcess,
) -> None:
    start = end_of_feed(shared_gateway)
    posted = post_new(shared_gateway, *SAMPLES)

    seen: list[str] = []
    pages = 0
    response = feed(shared_gateway, after=start, limit=3)
    while True:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        page = response.json()
        assert set(page) == {"events", "nextCursor", "_links"}
        assert len(page["events"]) <= 3
        seen += [event["id"] for event in page["events"]]
        pages += 1
        if "next" not in page["_links"]:
            break
        assert page["_links"]["next"]["href"] == f"/v1/events?after={page['nextCursor']}&limit=3"
        response = httpx.get(shared_gateway.url + page["_links"]["next"]["href"])

    assert seen == posted
    assert pages == -(-len(posted) // 3)
    # At the end: an empty page that hands back the same cursor, to poll with later.
    last = response.json()["nextCursor"]
    empty = feed(shared_gateway, after=last).json()
    assert empty["events"] == []
    assert empty["nextCursor"] == last
    assert empty["_links"] == {"self": {"href": f"/v1/events?after={last}&limit=100"}}


def test_the_feed_serves_events_as_stored(shared_gateway: GatewayProcess) -> None:
    start = end_of_feed(shared_gateway)
    (event_id,) = post_new(shared_gateway, "brp-verhuizing.xml")

    (event,) = feed(shared_gateway, after=start).json()["events"]

    single = httpx.get(f"{shared_gateway.url}/v1/events/{event_id}")
    assert single.json() == event
    assert event["specversion"] == "1.0"
    assert event["type"] == "nl.brp.persoon-verhuisd"
    assert event["data"]["nieuwAdres"]["postcode"] == "3011AB"


def test_sequence_is_gap_free_per_source_zero_padded_and_ordered(
    shared_gateway: GatewayProcess,
) -> None:
    post_new(shared_gateway, *SAMPLES, *SAMPLES)
    by_source: dict[str, list[str]] = defaultdict(list)
    response = feed(shared_gateway, limit=1000)
    while True:
        for event in response.json()["events"]:
            by_source[event["source"]].append(event["sequence"])
        if "next" not in response.json()["_links"]:
            break
        response = httpx.get(shared_gateway.url + response.json()["_links"]["next"]["href"])

    assert len(by_source) >= 3
    for source, sequences in by_source.items():
        assert all(len(s) == 20 and s.isdigit() for s in sequences), source
        # 1, 2, 3, … in store order: a consumer can tell a gap, and text order is number order.
        assert [int(s) for s in sequences] == list(range(1, len(sequences) + 1)), source
        assert sorted(sequences) == sequences


def test_a_duplicate_message_adds_no_events_and_no_sequence_numbers(
    shared_gateway: GatewayProcess,
) -> None:
    document = with_kenmerk(sample("nhr-update.xml"))
    (first_id,) = post_levering(shared_gateway.wus_url, document)
    after_first = end_of_feed(shared_gateway)

    # The same kenmerk under a new MessageID: a re-sent message.
    again = httpx.post(
        shared_gateway.wus_url,
        content=envelope(document, to=shared_gateway.wus_url),
        headers=headers_for(document),
    )
    assert again.status_code == 200
    assert ack_duplicate(again.content)
    assert feed(shared_gateway, after=after_first).json()["events"] == []

    (next_id,) = post_new(shared_gateway, "nhr-update.xml")
    first = httpx.get(f"{shared_gateway.url}/v1/events/{first_id}").json()
    following = httpx.get(f"{shared_gateway.url}/v1/events/{next_id}").json()
    assert following["source"] == first["source"]
    assert int(following["sequence"]) == int(first["sequence"]) + 1


def test_types_and_source_narrow_the_feed(shared_gateway: GatewayProcess) -> None:
    start = end_of_feed(shared_gateway)
    posted = post_new(shared_gateway, *SAMPLES)
    events = feed(shared_gateway, after=start).json()["events"]
    assert [event["id"] for event in events] == posted
    verhuisd = [e["id"] for e in events if e["type"] == "nl.brp.persoon-verhuisd"]
    overleden = [e["id"] for e in events if e["type"] == "nl.brp.persoon-overleden"]
    nhr_source = next(e["source"] for e in events if e["type"].startswith("nl.nhr."))
    from_nhr = [e["id"] for e in events if e["source"] == nhr_source]
    assert verhuisd
    assert overleden
    assert from_nhr

    def ids(**params: Any) -> list[str]:
        response = feed(shared_gateway, after=start, **params)
        assert response.status_code == 200, response.text
        return [event["id"] for event in response.json()["events"]]

    both = [i for i in posted if i in verhuisd + overleden]
    assert ids(types="nl.brp.persoon-verhuisd") == verhuisd
    assert ids(types="nl.brp.persoon-verhuisd,nl.brp.persoon-overleden") == both
    assert ids(types=["nl.brp.persoon-verhuisd", "nl.brp.persoon-overleden"]) == both
    assert ids(source=nhr_source) == from_nhr
    assert ids(source=nhr_source, types="nl.brp.persoon-verhuisd") == []
    assert ids(types="nl.nergens") == []
    # The filters stay in the links.
    response = feed(shared_gateway, after=start, types="nl.brp.persoon-verhuisd", limit=1)
    if len(verhuisd) > 1:
        href = response.json()["_links"]["next"]["href"]
        assert "types=nl.brp.persoon-verhuisd" in href


def test_a_filtered_poll_moves_past_events_it_does_not_want(shared_gateway: GatewayProcess) -> None:
    start = end_of_feed(shared_gateway)
    post_new(shared_gateway, "nhr-update.xml", "bag-ingetrokken.xml")

    empty = feed(shared_gateway, after=start, types="nl.brp.persoon-verhuisd").json()
    assert empty["events"] == []
    assert empty["nextCursor"] == end_of_feed(shared_gateway) != start

    (verhuisd,) = post_new(shared_gateway, "brp-verhuizing.xml")
    page = feed(shared_gateway, after=empty["nextCursor"], types="nl.brp.persoon-verhuisd")
    assert [event["id"] for event in page.json()["events"]] == [verhuisd]


@pytest.mark.parametrize(
    ("limit", "ok"), [("1", True), ("1000", True), ("0", False), ("1001", False), ("-1", False)]
)
def test_limit_bounds(shared_gateway: GatewayProcess, limit: str, ok: bool) -> None:
    response = feed(shared_gateway, limit=limit)
    if ok:
        assert response.status_code == 200
        assert len(response.json()["events"]) <= int(limit)
    else:
        assert_problem(response, 400, "limit")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "!!!!",
        "a" * 65,
        "abc",  # base64url, but not of a cursor
        _b64(b"v1:-1"),
        _b64(b"v1:01"),
        _b64(b"v2:1"),
        _b64(b"v1:1") + "=",
        _b64(b"v1:99999999999999999999"),
        _b64("v1:\u0661".encode()),  # a digit, but not an ASCII one
    ],
)
def test_a_cursor_we_did_not_give_out_is_a_400(shared_gateway: GatewayProcess, cursor: str) -> None:
    assert_problem(feed(shared_gateway, after=cursor), 400, "after")
    assert feed(shared_gateway, limit=1).status_code == 200


def test_a_cursor_beyond_the_end_is_a_400(shared_gateway: GatewayProcess) -> None:
    assert_problem(feed(shared_gateway, after=_b64(b"v1:999999999")), 400, "after")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"type": "nl.brp.persoon-verhuisd"}, "type"),
        ({"cursor": "djE6MA"}, "cursor"),
        ({"types": ""}, "types"),
        ({"types": "nl.a,,nl.b"}, "types"),
        ({"types": ",".join(f"nl.t{n}" for n in range(51))}, "types"),
        ({"types": "nl." + "x" * 300}, "types"),
        ({"limit": "tien"}, "limit"),
        ({"source": "urn:" + "x" * 1100}, "source"),
    ],
)
def test_hostile_query_parameters_are_400(
    shared_gateway: GatewayProcess, params: dict[str, str], name: str
) -> None:
    assert_problem(feed(shared_gateway, **params), 400, name)
    assert feed(shared_gateway, limit=1).status_code == 200


def test_other_methods_are_405(shared_gateway: GatewayProcess) -> None:
    response = httpx.post(f"{shared_gateway.url}/v1/events", json={})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


def test_the_feed_and_the_stream_need_api_access(tmp_path: Path) -> None:
    key = "feed-test-key-0123456789abcdef"
    gateway = GatewayProcess(tmp_path / "gateway", env={"DIGIBRIDGE_API_KEYS": key}).start()
    try:
        for path in ("/v1/events", "/v1/events/stream"):
            refused = httpx.get(f"{gateway.url}{path}")
            assert_problem(refused, 401)
            assert refused.headers["www-authenticate"].startswith("Bearer")
        allowed = httpx.get(f"{gateway.url}/v1/events", headers={"Authorization": f"Bearer {key}"})
        assert allowed.status_code == 200
        with SseStream(
            f"{gateway.url}/v1/events/stream", headers={"Authorization": f"Bearer {key}"}
        ) as stream:
            assert stream.response.status_code == 200
    finally:
        gateway.stop()

"""Every `/v1/subscriptions` route on a running gateway with API keys: the resource's life
(create, list, read, replace, patch, delete, test), paging, filters, write-only fields,
ownership between consumers, and problem+json for hostile input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from digibridge.delivery.signing import generate_secret
from tests.support.events import check_webhook
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.sinks import Reply, ScriptedSink
from tests.support.soap import post_levering, sample, with_kenmerk

KEY_A = "key-of-gemeente-a-0123456789"
KEY_B = "key-of-gemeente-b-0123456789"
OPERATOR = "operator-key-0123456789abcdef"
TOKEN = "t0ken-never-answered"
PROBLEM = "application/problem+json"
MERGE_PATCH = {"content-type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    keys = f"gemeente-a:{KEY_A},gemeente-b:{KEY_B},{OPERATOR}"
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"), env={"DIGIBRIDGE_API_KEYS": keys}
    ).start()
    yield process
    process.stop()


def client(gateway: GatewayProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{gateway.url}/v1", timeout=30, headers={"Authorization": f"Bearer {key}"}
    )


@pytest.fixture
def api(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with client(gateway, KEY_A) as a:
        yield a


@pytest.fixture
def other(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with client(gateway, KEY_B) as b:
        yield b


@pytest.fixture
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with client(gateway, OPERATOR) as operator:
        yield operator


def problem(response: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert (body["status"], body["type"]) == (status, "about:blank")
    assert body["title"]
    assert body["detail"]
    for mention in mentions:
        assert mention in body["detail"] or mention in str(body.get("invalidParams")), body
    return body


def create(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/subscriptions", json=fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def agreed(path: str = "/x", **fields: Any) -> dict[str, Any]:
    """A subscription to a sink agreed out of band (nothing listens there; not checked)."""
    delivery = {"handshake": "none", **fields.pop("delivery", {})}
    return {"sink": f"http://127.0.0.1:9{path}", "delivery": delivery, **fields}


@pytest.fixture
def cleanup(admin: httpx.Client) -> Iterator[None]:
    """Delete every subscription after the test (the gateway is shared by the module)."""
    yield
    for item in admin.get("/subscriptions", params={"pageSize": 100}).json():
        admin.delete(f"/subscriptions/{item['id']}")


def nested(depth: int) -> dict[str, Any]:
    """A filter `depth` times negated: walked recursively, it would exhaust the stack."""
    expression: dict[str, Any] = {"exact": {"type": "nl.x"}}
    for _ in range(depth):
        expression = {"not": expression}
    return expression


def links(response: httpx.Response) -> dict[str, str]:
    return {
        rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["link"])
    }


# -- the resource -------------------------------------------------------------------------------


@pytest.mark.usefixtures("cleanup")
def test_create_assigns_the_id_and_answers_the_resource(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    response = api.post(
        "/subscriptions",
        json={
            "id": "mine",
            "sink": receiver.url(),
            "types": ["nl.brp.persoon-verhuisd"],
            "source": "urn:nld:oin:00000001823288444000:systeem:BRP",
            "filters": [{"prefix": {"type": "nl.brp."}}],
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] != "mine"
    assert response.headers["location"] == f"/v1/subscriptions/{body['id']}"
    assert body["delivery"]["secret"].startswith("whsec_")  # generated: shown this once
    assert body["protocol"] == "HTTP"
    assert body["status"] == "active"
    read = api.get(f"/subscriptions/{body['id']}").json()
    del body["delivery"]["secret"]
    assert read == body


@pytest.mark.usefixtures("cleanup")
def test_put_replaces_the_whole_but_keeps_the_write_only_fields(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    secret = generate_secret()
    sub = create(
        api,
        sink=receiver.url("/one"),
        types=["nl.brp.persoon-verhuisd"],
        filters=[{"exact": {"source": "urn:nld:x"}}],
        sinkcredential={"credentialtype": "ACCESSTOKEN", "accesstoken": TOKEN},
        delivery={"secret": secret, "mode": "binary"},
    )["id"]

    replaced = api.put(
        f"/subscriptions/{sub}", json={"id": "ignored", "sink": receiver.url("/one")}
    )

    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert body["id"] == sub
    assert (body["types"], body["filters"], body["delivery"]["mode"]) == ([], [], "structured")
    # the kept credential and secret still go out with every request
    assert api.post(f"/subscriptions/{sub}/test").json()["status"] == 204
    [sent] = receiver.posts("/one")
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    check_webhook(sent, secret)


@pytest.mark.usefixtures("cleanup")
def test_put_with_a_null_credential_removes_it(api: httpx.Client, receiver: ScriptedSink) -> None:
    sub = create(
        api,
        sink=receiver.url("/two"),
        sinkcredential={"credentialtype": "ACCESSTOKEN", "accesstoken": TOKEN},
    )["id"]
    body = {"sink": receiver.url("/two"), "sinkcredential": None}
    assert api.put(f"/subscriptions/{sub}", json=body).status_code == 200
    api.post(f"/subscriptions/{sub}/test")
    [sent] = receiver.posts("/two")
    assert "authorization" not in sent.headers


@pytest.mark.usefixtures("cleanup")
def test_patch_merges_and_validates_the_merged_whole(api: httpx.Client) -> None:
    created = create(
        api,
        **agreed(
            "/p",
            types=["nl.a"],
            source="urn:nld:s",
            delivery={"mode": "batch", "batch": {"maxEvents": 5}, "timeout": 3},
        ),
    )
    sub = created["id"]

    patched = api.patch(
        f"/subscriptions/{sub}",
        json={"id": "x", "types": ["nl.b", "nl.c"], "source": None, "delivery": {"ordered": True}},
        headers=MERGE_PATCH,
    )

    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["id"] == sub
    assert body["types"] == ["nl.b", "nl.c"]
    assert body.get("source") is None
    delivery = body["delivery"]
    assert (delivery["mode"], delivery["ordered"], delivery["timeout"]) == ("batch", True, 3)
    assert delivery["batch"] == {"maxEvents": 5, "maxBytes": 1024 * 1024}
    # leaving batch mode drops its limits when the patch does not name them
    moved = api.patch(
        f"/subscriptions/{sub}", json={"delivery": {"mode": "binary"}}, headers=MERGE_PATCH
    )
    assert moved.status_code == 200, moved.text
    assert "batch" not in moved.json()["delivery"]

    unchanged = api.get(f"/subscriptions/{sub}").json()
    wrong = api.patch(f"/subscriptions/{sub}", json={"types": "nl.b"}, headers=MERGE_PATCH)
    problem(wrong, 400, "types")
    assert api.get(f"/subscriptions/{sub}").json() == unchanged


@pytest.mark.usefixtures("cleanup")
def test_patch_keeps_the_oauth_client_secret_it_cannot_see(api: httpx.Client) -> None:
    oauth = {"tokenUrl": "http://127.0.0.1:9/token", "clientId": "c", "clientSecret": "s3cret"}
    sub = create(api, **agreed("/o", delivery={"oauth": oauth}))["id"]
    patched = api.patch(
        f"/subscriptions/{sub}",
        json={"delivery": {"oauth": {"scope": "notificaties"}}},
        headers=MERGE_PATCH,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["delivery"]["oauth"] == {
        "tokenUrl": "http://127.0.0.1:9/token",
        "clientId": "c",
        "scope": "notificaties",
    }
    assert "s3cret" not in patched.text


@pytest.mark.usefixtures("cleanup")
def test_write_only_fields_are_never_answered(api: httpx.Client, admin: httpx.Client) -> None:
    secret = generate_secret()
    fields = agreed(
        "/w",
        sinkcredential={"credentialtype": "ACCESSTOKEN", "accesstoken": TOKEN},
        delivery={"secret": secret},
    )
    created = api.post("/subscriptions", json=fields)
    sub = created.json()["id"]
    answers = [
        created,
        api.get(f"/subscriptions/{sub}"),
        api.get("/subscriptions"),
        admin.get("/subscriptions"),
        api.put(f"/subscriptions/{sub}", json=fields),
        api.patch(f"/subscriptions/{sub}", json={"types": ["nl.x"]}, headers=MERGE_PATCH),
        api.post(f"/subscriptions/{sub}/test"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert TOKEN not in answer.text
        assert secret not in answer.text
        assert "sinkcredential" not in answer.text


@pytest.mark.usefixtures("cleanup")
def test_changed_types_decide_the_next_event(
    api: httpx.Client, gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    sub = create(api, sink=receiver.url("/types"), types=["nl.brp.overlijden"])["id"]

    def deliveries() -> list[dict[str, Any]]:
        # made in the ingest's transaction, before the acknowledgement: no waiting needed
        page = api.get("/deliveries", params={"subscription": sub})
        assert page.status_code == 200, page.text
        found: list[dict[str, Any]] = page.json()["deliveries"]
        return found

    post_levering(gateway.wus_url, with_kenmerk(sample("brp-verhuizing.xml")))
    assert deliveries() == []

    patch = {"types": ["nl.brp.persoon-verhuisd"]}
    assert api.patch(f"/subscriptions/{sub}", json=patch, headers=MERGE_PATCH).status_code == 200
    [event_id] = post_levering(gateway.wus_url, with_kenmerk(sample("brp-verhuizing.xml")))

    assert [delivery["eventId"] for delivery in deliveries()] == [event_id]
    [sent] = receiver.wait_for_posts(1)
    assert sent.headers["webhook-id"] == event_id


@pytest.mark.usefixtures("cleanup")
def test_delete_removes_it(api: httpx.Client) -> None:
    sub = create(api, **agreed("/d"))["id"]
    deleted = api.delete(f"/subscriptions/{sub}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    problem(api.get(f"/subscriptions/{sub}"), 404, sub)
    problem(api.delete(f"/subscriptions/{sub}"), 404, sub)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/subscriptions/nope"),
        ("PUT", "/subscriptions/nope"),
        ("PATCH", "/subscriptions/nope"),
        ("DELETE", "/subscriptions/nope"),
        ("POST", "/subscriptions/nope/test"),
    ],
)
def test_unknown_ids_are_404(api: httpx.Client, method: str, path: str) -> None:
    body = {"sink": "http://127.0.0.1:9/x"} if method in ("PUT", "PATCH") else None
    headers = MERGE_PATCH if method == "PATCH" else {}
    problem(api.request(method, path, json=body, headers=headers), 404, "nope")


# -- listing ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("cleanup")
def test_listing_pages_with_links_and_a_total(api: httpx.Client) -> None:
    made = [create(api, **agreed(f"/page{n}"))["id"] for n in range(5)]

    first = api.get("/subscriptions", params={"pageSize": 2})
    assert first.status_code == 200
    assert [item["id"] for item in first.json()] == made[:2]
    assert first.headers["x-total-count"] == "5"
    assert set(links(first)) == {"first", "next", "last"}
    assert links(first)["last"] == "/v1/subscriptions?page=3&pageSize=2"

    seen: list[str] = []
    url: str | None = "/subscriptions?pageSize=2"
    while url is not None:
        page = api.get(url)
        seen += [item["id"] for item in page.json()]
        following = links(page).get("next")
        url = None if following is None else following.removeprefix("/v1")
    assert seen == made

    middle = api.get("/subscriptions", params={"page": 2, "pageSize": 2})
    assert set(links(middle)) == {"first", "prev", "next", "last"}
    beyond = api.get("/subscriptions", params={"page": 9, "pageSize": 2})
    assert beyond.json() == []
    assert links(beyond)["prev"] == "/v1/subscriptions?page=3&pageSize=2"


@pytest.mark.usefixtures("cleanup")
def test_listing_filters_by_sink_and_types(api: httpx.Client) -> None:
    both = create(api, **agreed("/f1", types=["nl.a", "nl.b"]))["id"]
    only_a = create(api, **agreed("/f2", types=["nl.a"]))["id"]
    create(api, **agreed("/f3"))

    def ids(**params: Any) -> list[str]:
        response = api.get("/subscriptions", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == str(len(response.json()))
        return [item["id"] for item in response.json()]

    assert ids(sink="http://127.0.0.1:9/f2") == [only_a]
    assert ids(types="nl.a") == [both, only_a]
    assert ids(types="nl.a,nl.b") == [both]
    assert ids(types=["nl.a", "nl.b"]) == [both]
    assert ids(types="nl.z") == []
    filtered = api.get("/subscriptions", params={"types": "nl.a", "pageSize": 1})
    assert links(filtered)["next"] == "/v1/subscriptions?types=nl.a&page=2&pageSize=1"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 101}, "pageSize"),
        ({"sink": ""}, "sink"),
        ({"types": ",".join(f"nl.t{n}" for n in range(21))}, "types"),
    ],
)
def test_bad_listing_keys_are_problems(
    api: httpx.Client, params: dict[str, object], name: str
) -> None:
    body = problem(api.get("/subscriptions", params=params), 400, name)
    assert body["invalidParams"][0]["name"] == name


# -- ownership ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("cleanup")
def test_other_consumers_get_404_and_an_admin_sees_all(
    api: httpx.Client, other: httpx.Client, admin: httpx.Client
) -> None:
    mine = create(api, **agreed("/a"))["id"]
    theirs = create(other, **agreed("/b"))["id"]

    assert [item["id"] for item in api.get("/subscriptions").json()] == [mine]
    assert api.get("/subscriptions").headers["x-total-count"] == "1"
    assert [item["id"] for item in other.get("/subscriptions").json()] == [theirs]
    assert [item["id"] for item in admin.get("/subscriptions").json()] == [mine, theirs]
    for method, path, body in (
        ("GET", "", None),
        ("PUT", "", {"sink": "http://127.0.0.1:9/z", "delivery": {"handshake": "none"}}),
        ("PATCH", "", {"types": ["nl.x"]}),
        ("POST", "/test", None),
        ("POST", "/replay", {}),
        ("DELETE", "", None),
    ):
        headers = MERGE_PATCH if method == "PATCH" else {}
        answer = other.request(method, f"/subscriptions/{mine}{path}", json=body, headers=headers)
        problem(answer, 404, mine)
    assert admin.get(f"/subscriptions/{mine}").json()["sink"] == "http://127.0.0.1:9/a"
    assert api.get(f"/subscriptions/{mine}").status_code == 200


# -- the test endpoint --------------------------------------------------------------------------


@pytest.mark.usefixtures("cleanup")
def test_test_endpoint_sends_a_signed_event_and_answers_what_the_sink_said(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    secret = generate_secret()
    sub = create(api, sink=receiver.url("/t"), delivery={"secret": secret})["id"]
    reply = Reply(202, {"content-type": "text/plain", "x-internal": "no"}, b"thanks" * 200)
    receiver.script("/t", reply)

    answer = api.post(f"/subscriptions/{sub}/test")

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["outcome"], result["status"], result["error"]) == ("succeeded", 202, None)
    assert result["headers"]["content-type"] == "text/plain"
    assert "x-internal" not in result["headers"]
    assert result["body"] == ("thanks" * 200)[:512]
    assert result["durationMs"] > 0
    [sent] = receiver.posts("/t")
    event = check_webhook(sent, secret)
    assert event["id"] == result["eventId"]
    assert (event["type"], event["source"]) == (
        "nl.digibridge.subscription.test",
        "urn:nld:digibridge",
    )
    assert event["subject"] == sub
    log = api.get("/deliveries", params={"subscription": sub}).json()["deliveries"]
    assert log == []  # not stored as a delivery


@pytest.mark.usefixtures("cleanup")
def test_test_endpoint_uses_the_subscriptions_encoding(
    api: httpx.Client, receiver: ScriptedSink
) -> None:
    sub = create(api, sink=receiver.url("/bin"), delivery={"mode": "binary"})["id"]
    receiver.script("/bin", Reply(400, body=b'{"title":"no"}'))
    result = api.post(f"/subscriptions/{sub}/test").json()
    assert (result["outcome"], result["status"]) == ("failed", 400)
    assert result["error"] == "400 Bad Request"
    [sent] = receiver.posts("/bin")
    assert sent.headers["ce-type"] == "nl.digibridge.subscription.test"


@pytest.mark.usefixtures("cleanup")
def test_test_endpoint_reports_a_sink_that_does_not_answer(api: httpx.Client) -> None:
    sink = f"http://127.0.0.1:{free_port()}/gone"
    sub = create(api, sink=sink, delivery={"handshake": "none"})["id"]
    result = api.post(f"/subscriptions/{sub}/test").json()
    assert (result["outcome"], result["status"]) == ("retryable", None)
    assert "ConnectError" in result["error"]


# -- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"sink": "http://127.0.0.1:9/x", "colour": "blue"}, "colour"),
        ({"sink": 42}, "sink"),
        ({"sink": "http://127.0.0.1:9/" + "x" * 3000}, "sink"),
        ({"sink": "http://127.0.0.1:9/x", "delivery": {"rate": 0}}, "delivery.rate"),
        ({"sink": "http://127.0.0.1:9/x", "delivery": {"rate": "fast"}}, "delivery.rate"),
        ({"sink": "http://127.0.0.1:9/x", "delivery": {"handshake": "maybe"}}, "handshake"),
        ({"sink": "http://127.0.0.1:9/x", "types": [1]}, "types"),
        ({"sink": "http://127.0.0.1:9/x", "filters": [{"regex": {"type": "x"}}]}, "/filters/0"),
        ({"sink": "http://127.0.0.1:9/x", "filters": [nested(400)]}, "nested deeper"),
        ({"sink": "http://127.0.0.1:9/x", "types": ["nl.\udb61"]}, "lone surrogate"),
        (
            {
                "sink": "http://127.0.0.1:9/x",
                "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": "t\u00f8ken"},
            },
            "accesstoken",
        ),
        (
            {"sink": "http://127.0.0.1:9/x", "protocolsettings": {"headers": {"X-A": "\u00e9"}}},
            "printable ASCII",
        ),
    ],
)
def test_hostile_bodies_for_create_and_put(
    api: httpx.Client, admin: httpx.Client, body: dict[str, Any], name: str
) -> None:
    # ASCII-escaped JSON: it can carry what a UTF-8 body cannot (lone surrogates)
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    problem(api.post("/subscriptions", content=content, headers=headers), 400, name)
    sub = create(admin, **agreed("/h"))["id"]
    try:
        answer = admin.put(f"/subscriptions/{sub}", content=content, headers=headers)
        problem(answer, 400, name)
    finally:
        admin.delete(f"/subscriptions/{sub}")


@pytest.mark.parametrize(
    ("content", "status", "mention"),
    [
        (b'{"types": ', 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"delivery": {"mode": "pigeon"}}', 400, "delivery.mode"),
        (b'{"delivery": {"secret": "plain"}}', 400, "whsec_"),
        (b'{"sink": "ftp://127.0.0.1/x"}', 400, "sink"),
        (b'{"types": ["\\udb61"]}', 400, "lone surrogate"),
        (b'{"x": ' * 40 + b"1" + b"}" * 40, 400, "deeper"),
        (b'{"types": ["' + b"x" * (1024 * 1024) + b'"]}', 413, "larger than"),
    ],
)
@pytest.mark.usefixtures("cleanup")
def test_hostile_merge_patches(
    api: httpx.Client, gateway: GatewayProcess, content: bytes, status: int, mention: str
) -> None:
    sub = create(api, **agreed("/m"))
    answer = api.patch(f"/subscriptions/{sub['id']}", content=content, headers=MERGE_PATCH)
    problem(answer, status, mention)
    assert api.get(f"/subscriptions/{sub['id']}").json() == {
        key: value for key, value in sub.items() if key != "delivery"
    } | {"delivery": {k: v for k, v in sub["delivery"].items() if k != "secret"}}
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


@pytest.mark.usefixtures("cleanup")
def test_a_patch_that_is_not_json_is_415(api: httpx.Client) -> None:
    sub = create(api, **agreed("/ct"))["id"]
    answer = api.patch(
        f"/subscriptions/{sub}", content=b"types=nl.a", headers={"content-type": "text/plain"}
    )
    problem(answer, 415, "merge-patch+json")

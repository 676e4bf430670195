"""`GET /metrics` on a running gateway: counters move as messages flow, queue gauges come from
the store, labels never carry ids, and the endpoint is outside the API's keys and document."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from digibridge.delivery.signing import generate_secret
from digibridge.metrics import DMKS, MAX_LABEL_VALUES, OTHER, TRANSPORT, BoundedLabel, Metrics
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_until
from tests.support.sinks import Reply, ScriptedSink
from tests.support.soap import envelope, headers_for, post_levering, sample, with_kenmerk

KEY = "metrics-test-operator-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
#: Every label name the gateway may use: none of them holds an id.
LABELS = {"registry", "result", "fault_code", "type", "status_class", "mode", "state"}
LABELS |= {"kind", "status", "operation", "version", "le"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """API keys configured (so `/v1` needs one) and a slow second attempt (a failed delivery
    stays pending for a minute)."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("metrics"),
        env={"DIGIBRIDGE_API_KEYS": KEY, "DIGIBRIDGE_RETRY_SCHEDULE": "0,60"},
    ).start()
    yield process
    process.stop()


def scrape(gateway: GatewayProcess) -> Samples:
    response = httpx.get(f"{gateway.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def subscribe(gateway: GatewayProcess, sink: str, types: list[str]) -> str:
    response = httpx.post(
        f"{gateway.url}/v1/subscriptions",
        json={"sink": sink, "types": types, "delivery": {"secret": generate_secret()}},
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def unsubscribe(gateway: GatewayProcess, subscription_id: str) -> None:
    response = httpx.delete(f"{gateway.url}/v1/subscriptions/{subscription_id}", headers=AUTH)
    assert response.status_code == 204


def test_counters_move_as_a_message_is_accepted_and_delivered(
    gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    subscription = subscribe(gateway, receiver.url(), ["nl.brp.persoon-verhuisd"])
    before = scrape(gateway)
    (event_id,) = post_levering(gateway.wus_url, with_kenmerk(sample("brp-verhuizing.xml")))
    receiver.wait_for_posts(1)
    after = wait_until(
        lambda: (
            s
            if value(s := scrape(gateway), "digibridge_deliveries_total", **DELIVERED)
            > value(before, "digibridge_deliveries_total", **DELIVERED)
            else None
        ),
        what="the delivery counted",
    )
    unsubscribe(gateway, subscription)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    accepted = {"registry": "BRP", "result": "accepted", "fault_code": ""}
    assert moved("digibridge_inbound_messages_total", **accepted) == 1
    assert moved("digibridge_ingest_duration_seconds_count", result="accepted") == 1
    assert moved("digibridge_events_total", type="nl.brp.persoon-verhuisd") == 1
    assert moved("digibridge_deliveries_total", **DELIVERED) == 1
    assert moved("digibridge_delivery_duration_seconds_count", result="succeeded") == 1
    assert moved("digibridge_store_operation_duration_seconds_count", operation="ingest") == 1
    assert moved("digibridge_store_operation_duration_seconds_count", operation="claim_due") >= 1
    assert value(after, "digibridge_ready") == 1
    assert value(after, "digibridge_circuits", state="closed") >= 1
    assert not any(event_id in str(key) for key in after)


DELIVERED = {"result": "succeeded", "status_class": "2xx", "mode": "structured"}


def test_a_duplicate_and_refusals_are_counted_by_result_and_fault_code(
    gateway: GatewayProcess,
) -> None:
    before = scrape(gateway)
    document = with_kenmerk(sample("nhr-update.xml"))
    post_levering(gateway.wus_url, document)
    post_levering(gateway.wus_url, document)  # the same kenmerk again: a duplicate
    garbage = httpx.post(
        gateway.wus_url, content=b"<not-soap/>", headers={"Content-Type": "text/xml"}
    )
    assert garbage.status_code == 500
    oversize = httpx.post(
        gateway.wus_url,
        content=envelope(document, to=gateway.wus_url) + b" " * (6 * 1024 * 1024),
        headers=headers_for(document),
    )
    assert oversize.status_code == 413
    after = scrape(gateway)

    def moved(**labels: str) -> float:
        name = "digibridge_inbound_messages_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(registry="NHR", result="accepted", fault_code="") == 1
    assert moved(registry="NHR", result="duplicate", fault_code="") == 1
    assert moved(registry="unknown", result="refused", fault_code="0001") == 2


def test_queue_dead_letter_and_pending_gauges_come_from_the_store(
    gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    receiver.script("/dead", Reply(400))
    receiver.script("/later", Reply(503))
    dead = subscribe(gateway, receiver.url("/dead"), ["nl.bag.pand-ingetrokken"])
    later = subscribe(gateway, receiver.url("/later"), ["nl.bag.pand-ingetrokken"])
    before = scrape(gateway)
    post_levering(gateway.wus_url, with_kenmerk(sample("bag-ingetrokken.xml")))
    after = wait_until(
        lambda: (
            s
            if value(s := scrape(gateway), "digibridge_deliveries_total", result="retry", **R503)
            > value(before, "digibridge_deliveries_total", result="retry", **R503)
            and value(s, "digibridge_dead_letters") > value(before, "digibridge_dead_letters")
            else None
        ),
        what="a dead letter and a retry counted",
    )
    unsubscribe(gateway, dead)
    unsubscribe(gateway, later)
    dead_count = value(after, "digibridge_deliveries_total", result="dead", **R400)
    assert dead_count > value(before, "digibridge_deliveries_total", result="dead", **R400)
    assert value(after, "digibridge_delivery_queue", state="pending") >= 1
    assert value(after, "digibridge_delivery_oldest_pending_age_seconds") > 0


R400 = {"status_class": "4xx", "mode": "structured"}
R503 = {"status_class": "5xx", "mode": "structured"}


def test_labels_are_bounded_and_hold_no_ids(
    gateway: GatewayProcess, receiver: ScriptedSink
) -> None:
    subscription = subscribe(gateway, receiver.url(), ["nl.brp.persoon-verhuisd"])
    post_levering(gateway.wus_url, with_kenmerk(sample("brp-verhuizing.xml")))
    receiver.wait_for_posts(1)
    page = httpx.get(
        f"{gateway.url}/v1/deliveries", params={"subscription": subscription}, headers=AUTH
    ).json()
    ids = {subscription} | {
        str(item[key]) for item in page["deliveries"] for key in ("id", "eventId")
    }
    assert len(ids) >= 3
    samples = scrape(gateway)
    unsubscribe(gateway, subscription)
    names = {name for _sample, labels in samples for name, _value in labels}
    values = {label_value for _sample, labels in samples for _name, label_value in labels}
    assert names <= LABELS
    assert not ids & values
    assert all(len(label_value) <= 64 for label_value in values)


def test_metrics_need_no_api_key_and_stay_out_of_the_openapi_document(
    gateway: GatewayProcess,
) -> None:
    assert httpx.get(f"{gateway.url}/v1/subscriptions").status_code == 401
    assert httpx.get(f"{gateway.url}/metrics").status_code == 200
    document = httpx.get(f"{gateway.url}/v1/openapi.json").json()
    assert "/metrics" not in document["paths"]


def test_openmetrics_is_served_when_the_scraper_asks_for_it(gateway: GatewayProcess) -> None:
    response = httpx.get(
        f"{gateway.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_a_problem_and_the_gateway_keeps_serving(
    gateway: GatewayProcess, method: str
) -> None:
    response = httpx.request(method, f"{gateway.url}/metrics", content=b"{bad json")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 405
    assert httpx.get(f"{gateway.url}/metrics?name[]=x&format=json").status_code == 200


def test_an_outside_label_value_is_capped_and_the_rest_count_as_other() -> None:
    label = BoundedLabel(limit=3)
    assert [label(f"R{n}") for n in range(5)] == ["R0", "R1", "R2", OTHER, OTHER]
    assert label("R1") == "R1"
    assert label("") == "unknown"
    metrics = Metrics()
    for n in range(MAX_LABEL_VALUES + 50):
        metrics.inbound_message(registry=f"X{n}", result="refused", seconds=0.01, fault_code="0050")
    registries = {
        sample.labels["registry"]
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        if family.name == "digibridge_inbound_messages"
        for sample in family.samples
    }
    assert len(registries) == MAX_LABEL_VALUES + 1
    assert OTHER in registries


def test_terugmelding_statuses_are_counted_by_kind_with_unknown_ones_as_other() -> None:
    metrics = Metrics()
    metrics.terugmelding_status(TRANSPORT, "verzonden")
    metrics.terugmelding_status(DMKS, "In behandeling")
    metrics.terugmelding_status(DMKS, "zelfverzonnen-status")
    with pytest.raises(ValueError, match="kind"):
        metrics.terugmelding_status("other-kind", "verzonden")
    counted = {
        (sample.labels["kind"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        if family.name == "digibridge_terugmeldingen"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert counted == {
        ("transport", "verzonden"): 1,
        ("dmks", "In behandeling"): 1,
        ("dmks", OTHER): 1,
    }


def test_two_apps_in_one_process_have_their_own_registries() -> None:
    first, second = Metrics(), Metrics()
    first.events_stored(["nl.brp.persoon-verhuisd"])
    assert b'type="nl.brp.persoon-verhuisd"' in first.render()[0]
    assert b'type="nl.brp.persoon-verhuisd"' not in second.render()[0]

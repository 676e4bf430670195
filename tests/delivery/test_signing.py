"""Standard Webhooks `v1` signing: the published vectors, and the reference library agrees."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from digibridge.delivery.signing import (
    SignatureError,
    generate_secret,
    sign,
    verify,
    webhook_headers,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "conformance" / "standard-webhooks-vectors.json").read_text()
)
POSITIVE: list[dict[str, Any]] = VECTORS["positive"]


def at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def vector_headers(vector: dict[str, Any], signature: str) -> dict[str, str]:
    return {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        "webhook-signature": signature,
    }


@pytest.mark.parametrize("vector", POSITIVE, ids=lambda v: v["name"])
def test_sign_matches_published_vector(vector: dict[str, Any]) -> None:
    body = vector["payload"].encode()

    assert (
        sign(vector["secret"], vector["msg_id"], vector["timestamp"], body)
        == vector["expected_signature"]
    )
    verify(
        vector["secret"],
        vector_headers(vector, vector["expected_signature"]),
        body,
        now=at(vector["timestamp"]),
    )


@pytest.mark.parametrize("case", VECTORS["negative"], ids=lambda c: c["name"])
def test_negative_vectors_are_rejected(case: dict[str, Any]) -> None:
    vector = POSITIVE[1] if "rust" in case["name"] else POSITIVE[0]

    with pytest.raises(SignatureError, match="no webhook-signature entry matches"):
        verify(
            vector["secret"],
            vector_headers(vector, case["signature"]),
            vector["payload"].encode(),
            now=at(vector["timestamp"]),
        )


def test_any_one_valid_v1_entry_suffices_and_header_names_ignore_case() -> None:
    vector = POSITIVE[0]
    entries = " ".join(c["signature"] for c in VECTORS["negative"])
    headers = {
        k.upper(): v
        for k, v in vector_headers(vector, f"{entries} {vector['expected_signature']}").items()
    }

    verify(vector["secret"], headers, vector["payload"].encode(), now=at(vector["timestamp"]))


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"]
)
def test_secret_prefix_is_optional_and_padding_may_be_left_out(secret: str) -> None:
    vector = POSITIVE[0]
    body = vector["payload"].encode()
    signature = sign(secret, vector["msg_id"], vector["timestamp"], body)

    assert Webhook(secret).sign(vector["msg_id"], at(vector["timestamp"]), vector["payload"]) == (
        signature
    )


@pytest.mark.parametrize("secret", ["", "whsec_"])
def test_empty_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        sign(secret, "msg", 1, b"{}")


@pytest.mark.parametrize(("skew", "message"), [(301, "too old"), (-301, "too new")])
def test_timestamp_outside_tolerance_is_rejected(skew: int, message: str) -> None:
    vector = POSITIVE[0]
    headers = vector_headers(vector, vector["expected_signature"])

    with pytest.raises(SignatureError, match=message):
        verify(
            vector["secret"],
            headers,
            vector["payload"].encode(),
            now=at(vector["timestamp"] + skew),
        )


@pytest.mark.parametrize(
    ("drop", "replace", "message"),
    [
        ("webhook-id", None, "missing header.*webhook-id"),
        ("webhook-signature", None, "missing header.*webhook-signature"),
        (None, ("webhook-timestamp", "yesterday"), "not unix seconds"),
    ],
)
def test_missing_or_malformed_headers_are_rejected(
    drop: str | None, replace: tuple[str, str] | None, message: str
) -> None:
    vector = POSITIVE[0]
    headers = vector_headers(vector, vector["expected_signature"])
    if drop:
        del headers[drop]
    if replace:
        headers[replace[0]] = replace[1]

    with pytest.raises(SignatureError, match=message):
        verify(vector["secret"], headers, vector["payload"].encode(), now=at(vector["timestamp"]))


def test_our_headers_pass_the_reference_library() -> None:
    secret = generate_secret()
    body = '{"specversion":"1.0","id":"ev-1","data":{"naam":"Zoë"}}'.encode()
    now = int(datetime.now(UTC).timestamp())

    headers = webhook_headers(secret, "ev-1", now, body)

    assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_generated_secret_is_32_random_bytes_with_prefix() -> None:
    first, second = generate_secret(), generate_secret()

    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert first != second

"""Standard Webhooks `v1` signatures (HMAC-SHA256) for what we send and what `receive` checks.

Signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact bytes sent; the key is
the base64 part of a `whsec_` secret. Behaviour follows the reference library (standard-webhooks):
prefix optional, unpadded base64 accepted, any one matching `v1` entry in a space-separated
`webhook-signature` suffices, other versions are skipped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime

from digibridge.errors import DigibridgeError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme prefix, not a secret
#: Receivers accept timestamps this many seconds either side of their clock.
DEFAULT_TOLERANCE = 300


class SignatureError(DigibridgeError, ValueError):
    """A webhook's Standard Webhooks headers are missing, stale or do not match its body."""


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Extra padding is ignored by the decoder, so unpadded secrets work (as in the reference).
        key = base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError) as error:
        raise ValueError("webhook secret is not valid base64") from error
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def generate_secret() -> str:
    """A new signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one webhook."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check a received webhook; raise `SignatureError` saying what is wrong."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", signatures),
        )
        if not value
    ]
    if msg_id is None or stamp is None or signatures is None or missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"webhook-timestamp is not unix seconds: {stamp!r}") from None
    skew = now.timestamp() - timestamp
    if skew > tolerance:
        raise SignatureError(f"webhook-timestamp is too old ({int(skew)} s)")
    if skew < -tolerance:
        raise SignatureError(f"webhook-timestamp is too new ({int(-skew)} s ahead)")
    expected = sign(secret, msg_id, timestamp, body).encode()
    for entry in signatures.split():
        version, _, _value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(entry.encode(), expected):
            return
    raise SignatureError("no webhook-signature entry matches (wrong secret or altered body)")

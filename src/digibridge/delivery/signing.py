"""Standard Webhooks signatures for what we send and what `receive` checks.

Signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact bytes sent.
- `v1`: HMAC-SHA256; the key is the base64 part of a `whsec_` secret.
- `v1a`: Ed25519; we sign with a `whsk_` secret key (base64 of the 32-byte seed; a 64-byte
  seed+public form is accepted too), receivers verify with the `whpk_` public key (base64 of the
  32 raw bytes).
During key rotation `webhook-signature` carries one entry per key, space-separated. Verification
follows the reference library (standard-webhooks): `whsec_` prefix optional, unpadded base64
accepted, any one matching entry suffices, other versions are skipped.

`X-Signature: sha256=<hex>` (an option per subscription) is the plain HMAC-SHA256 of the body
alone, keyed with the same `whsec_` key bytes, which many existing receivers check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from digibridge.errors import DigibridgeError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme prefix, not a secret
SECRET_KEY_PREFIX = "whsk_"  # noqa: S105 - the scheme prefix, not a secret
PUBLIC_KEY_PREFIX = "whpk_"
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


def _raw(encoded: str, what: str) -> bytes:
    try:
        return base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{what} is not valid base64") from error


def _private_key(secret: str) -> Ed25519PrivateKey:
    raw = _raw(secret.removeprefix(SECRET_KEY_PREFIX), "whsk_ key")
    if len(raw) not in (32, 64):
        raise ValueError("a whsk_ key holds a 32-byte Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(raw[:32])


def _public_key(key: str) -> Ed25519PublicKey:
    raw = _raw(key.removeprefix(PUBLIC_KEY_PREFIX), "whpk_ key")
    if len(raw) != 32:
        raise ValueError("a whpk_ key holds a 32-byte Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def is_asymmetric(secret: str) -> bool:
    """True for a `whsk_` (Ed25519, `v1a`) key, False for a `whsec_` (HMAC, `v1`) secret."""
    return secret.startswith(SECRET_KEY_PREFIX)


def check_key(secret: str) -> None:
    """Raise ValueError unless `secret` is a usable `whsec_` or `whsk_` key."""
    if is_asymmetric(secret):
        _private_key(secret)
    else:
        _key(secret)


def generate_secret() -> str:
    """A new signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def generate_key_pair() -> tuple[str, str]:
    """A new Ed25519 key pair: (`whsk_` secret key, `whpk_` public key)."""
    seed = secrets.token_bytes(32)
    secret = SECRET_KEY_PREFIX + base64.b64encode(seed).decode()
    return secret, public_key(secret)


def public_key(secret: str) -> str:
    """The `whpk_` public key of a `whsk_` secret key (safe to show; receivers verify with it)."""
    raw = _private_key(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The signature of one webhook: `v1,<base64>` for a `whsec_` secret, `v1a,<base64>` for a
    `whsk_` key."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    if is_asymmetric(secret):
        return "v1a," + base64.b64encode(_private_key(secret).sign(content)).decode()
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    secret: str, msg_id: str, timestamp: int, body: bytes, previous: Iterable[str] = ()
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt; `previous` keys (being rotated out)
    sign too, after the current one."""
    keys = [secret, *previous]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(key, msg_id, timestamp, body) for key in keys),
    }


def x_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>` with a `whsec_` secret's key bytes."""
    return "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check a received webhook with a `whsec_` secret (`v1`) or a `whpk_` public key (`v1a`);
    raise `SignatureError` saying what is wrong."""
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
    if secret.startswith(PUBLIC_KEY_PREFIX):
        content = f"{msg_id}.{timestamp}.".encode() + body
        key = _public_key(secret)
        for entry in signatures.split():
            version, _, value = entry.partition(",")
            if version != "v1a":
                continue
            try:
                key.verify(base64.b64decode(value), content)
            except (InvalidSignature, binascii.Error, ValueError):
                continue
            return
        raise SignatureError("no v1a webhook-signature entry matches (wrong key or altered body)")
    expected = sign(secret, msg_id, timestamp, body).encode()
    for entry in signatures.split():
        version, _, _value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(entry.encode(), expected):
            return
    raise SignatureError("no webhook-signature entry matches (wrong secret or altered body)")

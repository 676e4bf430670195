"""Delivery settings to and from the `options` JSON column (shared by the store backends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from digibridge.store.types import ClientTls, DeliverySettings, OAuthClient, PreviousKey


def options_json(settings: DeliverySettings) -> str:
    """The options beyond the plain columns (secret, mode, ordered, form), as JSON text."""
    options: dict[str, Any] = {
        "timeout": settings.timeout,
        "retry_4xx": settings.retry_4xx,
        "previous_secrets": [
            {"secret": key.secret, "until": key.until.astimezone(UTC).isoformat()}
            for key in settings.previous_secrets
        ],
        "x_signature": settings.x_signature,
        "batch_max_events": settings.batch_max_events,
        "batch_max_bytes": settings.batch_max_bytes,
        "handshake": settings.handshake,
        "rate": settings.rate,
        "allowed_rate": settings.allowed_rate,
    }
    if settings.oauth is not None:
        oauth = settings.oauth
        options["oauth"] = {
            "token_url": oauth.token_url,
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            "scope": oauth.scope,
            "audience": oauth.audience,
        }
    if settings.tls is not None:
        tls = settings.tls
        options["tls"] = {"certificate": tls.certificate, "key": tls.key, "ca": tls.ca}
    return json.dumps(options)


def settings_from(
    *, secret: str, mode: str, ordered: bool, form: str, options: str
) -> DeliverySettings:
    values: dict[str, Any] = json.loads(options or "{}")
    oauth = values.get("oauth")
    tls = values.get("tls")
    defaults = DeliverySettings(secret=secret)
    return DeliverySettings(
        secret=secret,
        mode=mode,
        ordered=ordered,
        form=form,
        timeout=values.get("timeout"),
        retry_4xx=bool(values.get("retry_4xx", False)),
        previous_secrets=tuple(
            PreviousKey(key["secret"], datetime.fromisoformat(key["until"]))
            for key in values.get("previous_secrets", ())
        ),
        x_signature=bool(values.get("x_signature", False)),
        oauth=None if oauth is None else OAuthClient(**oauth),
        tls=None if tls is None else ClientTls(**tls),
        batch_max_events=int(values.get("batch_max_events", defaults.batch_max_events)),
        batch_max_bytes=int(values.get("batch_max_bytes", defaults.batch_max_bytes)),
        handshake=str(values.get("handshake", defaults.handshake)),
        rate=_int_or_none(values.get("rate")),
        allowed_rate=_int_or_none(values.get("allowed_rate")),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)

"""The `delivery` options of a subscription beyond secret/mode/ordered/form: their request and
response shapes (lowerCamelCase, secrets write-only) and their conversion to the store's
`DeliverySettings`."""

from __future__ import annotations

import base64
import binascii
import ssl
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from digibridge.delivery.clients import ssl_context
from digibridge.delivery.dispatcher import MAX_SUBSCRIPTION_TIMEOUT
from digibridge.delivery.signing import check_key, is_asymmetric, public_key
from digibridge.store.types import ClientTls, DeliverySettings, OAuthClient

if TYPE_CHECKING:
    from digibridge.api._subscription_models import DeliveryIn

MAX_TIMEOUT = MAX_SUBSCRIPTION_TIMEOUT


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OAuthIn(_Strict):
    """OAuth 2.0 client credentials: digibridge fetches a token and sends it as bearer."""

    tokenUrl: str = Field(min_length=1, max_length=2048)  # noqa: N815 - NL API Design Rules
    clientId: str = Field(min_length=1, max_length=512)  # noqa: N815
    clientSecret: str = Field(min_length=1, max_length=4096, description="write-only")  # noqa: N815
    scope: str | None = Field(default=None, max_length=1024)
    audience: str | None = Field(default=None, max_length=2048)


class OAuthOut(BaseModel):
    tokenUrl: str  # noqa: N815
    clientId: str  # noqa: N815
    scope: str | None = None
    audience: str | None = None


class TlsIn(_Strict):
    """Mutual TLS: the client certificate digibridge presents to the sink."""

    clientCertificate: str = Field(min_length=1, max_length=65536, description="PEM")  # noqa: N815
    clientKey: str = Field(  # noqa: N815
        min_length=1, max_length=65536, description="PEM private key; write-only"
    )
    caCertificates: str | None = Field(  # noqa: N815
        default=None,
        max_length=262144,
        description="PEM CA certificates for the sink's certificate (default: system roots)",
    )


class TlsOut(BaseModel):
    clientCertificate: bool = True  # noqa: N815
    caCertificates: bool = False  # noqa: N815


class BatchIn(_Strict):
    maxEvents: int = Field(default=100, ge=1, le=1000)  # noqa: N815
    maxBytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)  # noqa: N815


def check_signing_key(value: str) -> str:
    """A `whsec_` secret of 24 to 64 bytes, or a `whsk_` Ed25519 key; ValueError otherwise."""
    if value.startswith("whsec_"):
        try:
            raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the part after whsec_ is not valid base64") from None
        if not 24 <= len(raw) <= 64:
            raise ValueError("the secret must be 24 to 64 random bytes")
        return value
    if value.startswith("whsk_"):
        check_key(value)
        return value
    raise ValueError(
        "must be a Standard Webhooks key: whsec_<base64> (v1) or whsk_<base64> (v1a, Ed25519)"
    )


def client_tls(tls: TlsIn | None) -> ClientTls | None:
    """The mTLS settings, checked by loading them; ValueError saying what is wrong."""
    if tls is None:
        return None
    settings = ClientTls(tls.clientCertificate, tls.clientKey, tls.caCertificates)
    try:
        ssl_context(settings)
    except (ssl.SSLError, ValueError) as error:
        raise ValueError(
            f"the certificate, key or CA certificates cannot be used: {error}"
        ) from None
    return settings


def delivery_settings(delivery: DeliveryIn, secret: str) -> DeliverySettings:
    oauth = delivery.oauth
    batch = delivery.batch or BatchIn()
    return DeliverySettings(
        secret=secret,
        mode=delivery.mode,
        ordered=delivery.ordered,
        form=delivery.form,
        timeout=delivery.timeout,
        retry_4xx=delivery.retry4xx,
        x_signature=delivery.xSignature,
        oauth=None
        if oauth is None
        else OAuthClient(
            token_url=oauth.tokenUrl,
            client_id=oauth.clientId,
            client_secret=oauth.clientSecret,
            scope=oauth.scope,
            audience=oauth.audience,
        ),
        tls=client_tls(delivery.tls),
        batch_max_events=batch.maxEvents,
        batch_max_bytes=batch.maxBytes,
    )


def signature_of(settings: DeliverySettings) -> tuple[str, str | None]:
    """("v1", None) or ("v1a", the `whpk_` public key receivers verify with)."""
    if is_asymmetric(settings.secret):
        return "v1a", public_key(settings.secret)
    return "v1", None


def oauth_out(settings: DeliverySettings) -> OAuthOut | None:
    oauth = settings.oauth
    if oauth is None:
        return None
    return OAuthOut(
        tokenUrl=oauth.token_url,
        clientId=oauth.client_id,
        scope=oauth.scope,
        audience=oauth.audience,
    )


def tls_out(settings: DeliverySettings) -> TlsOut | None:
    if settings.tls is None:
        return None
    return TlsOut(caCertificates=settings.tls.ca is not None)

"""The configured Digikoppeling security, built once from the settings at start.

Every combination that cannot work is refused here, naming the setting, so a gateway never
starts half-secured: TLS without trusted CAs, a proxy header without trusted proxies,
registries without any way to learn a sender's OIN, WS-Security without a key to answer with.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.types import Scope

from digibridge.clock import Clock
from digibridge.config import ConfigError, Settings
from digibridge.wus.access import InboundSecurity, RegistryRule
from digibridge.wus.certificates import (
    KeyMaterialError,
    SigningCredentials,
    TrustStore,
    read_password,
)
from digibridge.wus.tls import (
    ClientIdentification,
    PeerIdentity,
    TlsHttpProtocol,
    server_context,
)
from digibridge.wus.wsse import EnvelopeSigner


@dataclass(frozen=True)
class WusSecurity:
    inbound: InboundSecurity
    identification: ClientIdentification | None = None
    #: The server TLS context when digibridge terminates TLS itself.
    server_tls: ssl.SSLContext | None = None

    @property
    def identify(self) -> Callable[[Scope], PeerIdentity] | None:
        """How the WUS endpoint learns a request's client certificate (None: it does not)."""
        return self.identification.identify if self.identification is not None else None

    def uvicorn_options(self) -> dict[str, Any]:
        """What `serve` adds to `uvicorn.run`: our TLS context, and the protocol that hands
        client certificates and the TCP peer to the app (see `wus/tls.py`)."""
        options: dict[str, Any] = {}
        context = self.server_tls
        if context is not None:
            options["ssl_context_factory"] = lambda _config, _default: context
        if self.identification is not None:
            options["http"] = TlsHttpProtocol
        return options

    def summary(self) -> list[str]:
        """One line per configured protection, for the start-up banner."""
        lines = []
        if self.server_tls is not None:
            lines.append("TLS 1.2+, client certificate required on the WUS endpoint")
        elif self.identification is not None:
            lines.append("client certificate from a trusted TLS-terminating proxy")
        lines.extend(self.inbound.summary())
        return lines or ["none (profile 2W-be expected from a TLS-terminating proxy)"]


def password(value: SecretStr | None, file: Path | None, setting: str) -> bytes | None:
    try:
        return read_password(value.get_secret_value() if value else None, file)
    except KeyMaterialError as exc:
        raise ConfigError(f"{setting}: {exc}") from None


def configure(settings: Settings, clock: Clock) -> WusSecurity:
    """The security parts `settings` ask for; ConfigError naming the setting if unusable."""
    rules = {
        name: RegistryRule(frozenset(access.oins), access.ws_security)
        for name, access in settings.registries.items()
    }
    terminates_tls = settings.tls_certificate is not None
    behind_proxy = settings.tls_client_cert_header is not None
    if (terminates_tls or behind_proxy) and settings.tls_trusted_cas is None:
        raise ConfigError(
            "tls_trusted_cas: the CA bundle client certificates must chain to is required "
            "with tls_certificate or tls_client_cert_header"
        )
    if behind_proxy and not settings.tls_trusted_proxies:
        raise ConfigError(
            "tls_trusted_proxies: name the proxy addresses tls_client_cert_header is believed from"
        )
    if rules and not (terminates_tls or behind_proxy):
        raise ConfigError(
            "registries: authorising OINs needs client certificates: set tls_certificate "
            "(digibridge terminates TLS) or tls_client_cert_header (behind a proxy)"
        )
    try:
        trust = TrustStore.load(settings.tls_trusted_cas) if settings.tls_trusted_cas else None
    except KeyMaterialError as exc:
        raise ConfigError(f"tls_trusted_cas: {exc}") from None
    server_tls = None
    if settings.tls_certificate is not None and settings.tls_trusted_cas is not None:
        key_password = password(
            settings.tls_key_password, settings.tls_key_password_file, "tls_key_password"
        )
        try:
            server_tls = server_context(
                settings.tls_certificate, settings.tls_key, key_password, settings.tls_trusted_cas
            )
        except KeyMaterialError as exc:
            raise ConfigError(f"tls_certificate: {exc}") from None
    signer = None
    if any(rule.ws_security != "off" for rule in rules.values()):
        signer = _answer_signer(settings)
    identification = None
    if terminates_tls or behind_proxy:
        identification = ClientIdentification(
            trust=trust,
            clock=clock,
            header=settings.tls_client_cert_header,
            trusted_proxies=settings.tls_trusted_proxies,
        )
    inbound = InboundSecurity(
        clock=clock,
        rules=rules,
        require_client_certificate=terminates_tls or behind_proxy,
        trust=trust,
        signer=signer,
        max_skew=timedelta(seconds=settings.wss_clock_skew),
    )
    return WusSecurity(inbound, identification, server_tls)


def _answer_signer(settings: Settings) -> EnvelopeSigner:
    if settings.wss_signing_certificate is not None:
        certificate, key = settings.wss_signing_certificate, settings.wss_signing_key
        key_password = password(
            settings.wss_signing_key_password,
            settings.wss_signing_key_password_file,
            "wss_signing_key_password",
        )
        setting = "wss_signing_certificate"
    elif settings.tls_certificate is not None:
        certificate, key = settings.tls_certificate, settings.tls_key
        key_password = password(
            settings.tls_key_password, settings.tls_key_password_file, "tls_key_password"
        )
        setting = "tls_certificate"
    else:
        raise ConfigError(
            "wss_signing_certificate: answers to signed requests are signed; set "
            "wss_signing_certificate and wss_signing_key (or tls_certificate and tls_key)"
        )
    try:
        return EnvelopeSigner(SigningCredentials.load(certificate, key, key_password))
    except KeyMaterialError as exc:
        raise ConfigError(f"{setting}: {exc}") from None

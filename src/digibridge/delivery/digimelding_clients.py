"""One DigiMelding client per registry, from configuration: endpoint, mutual TLS, signing.

The outbox and the status poller only need the two calls below (`DmksClient`), so tests and a
future client can stand in for `DigimeldingClient`. Whether a registry's requests are signed
(2W-be-S) is the endpoint's `sign`, or else what the registry's reverse mapping says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from digibridge.clock import Clock
from digibridge.config import ConfigError, DigimeldingEndpoint, Settings
from digibridge.mapping.reverse import ReverseMappings
from digibridge.mapping.reverse_types import AnnotatieReceipt, AnnotatieToevoegen, StatusEntry
from digibridge.wus.certificates import KeyMaterialError, SigningCredentials, read_password
from digibridge.wus.digimelding import ClientTls, DigimeldingClient
from digibridge.wus.wsse import EnvelopeSigner


class DmksClient(Protocol):
    """What digibridge asks of a DigiMelding endpoint."""

    async def annotatie_toevoegen(self, request: AnnotatieToevoegen) -> AnnotatieReceipt: ...

    async def statusoverzicht(
        self,
        oin_basisregistratie: str,
        *,
        oin_melder: str,
        sinds: datetime | None = None,
        uuids: Sequence[str] = (),
        registratie: str | None = None,
    ) -> list[StatusEntry]: ...


def build_clients(
    settings: Settings, reverse: ReverseMappings, clock: Clock
) -> Mapping[str, DmksClient]:
    """A client per configured registry; ConfigError naming the setting when one is unusable."""
    clients: dict[str, DmksClient] = {}
    for registry, endpoint in settings.digimelding.items():
        where = f"digimelding.{registry}"
        mapping = reverse.get(registry)
        if mapping is None:
            known = ", ".join(reverse.registries()) or "none"
            raise ConfigError(
                f"{where}: no reverse mapping for {registry!r} in {settings.mappings} "
                f"(registries with one: {known})"
            )
        sign = mapping.signed if endpoint.sign is None else endpoint.sign
        try:
            clients[registry] = DigimeldingClient(
                endpoint.url,
                timeout=endpoint.timeout,
                tls=_tls(endpoint),
                signer=_signer(endpoint, where) if sign else None,
                oin=settings.oin,
                clock=clock,
            )
        except (KeyMaterialError, ValueError, OSError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return clients


def _password(endpoint: DigimeldingEndpoint) -> bytes | None:
    value = endpoint.client_key_password
    return read_password(
        value.get_secret_value() if value else None, endpoint.client_key_password_file
    )


def _tls(endpoint: DigimeldingEndpoint) -> ClientTls | None:
    if endpoint.client_certificate is None and endpoint.trusted_cas is None:
        return None
    return ClientTls(
        certificate=endpoint.client_certificate,
        key=endpoint.client_key,
        password=_password(endpoint) if endpoint.client_key is not None else None,
        trusted_cas=endpoint.trusted_cas,
    )


def _signer(endpoint: DigimeldingEndpoint, where: str) -> EnvelopeSigner:
    if endpoint.client_certificate is None or endpoint.client_key is None:
        raise ConfigError(
            f"{where}.sign: signing (2W-be-S) uses the client certificate; set "
            "client_certificate and client_key (or sign = false)"
        )
    credentials = SigningCredentials.load(
        endpoint.client_certificate, endpoint.client_key, _password(endpoint)
    )
    return EnvelopeSigner(credentials)

"""Settings: one TOML file (`--config` / `DIGIBRIDGE_CONFIG`) plus `DIGIBRIDGE_*` variables.

Precedence, highest first: command-line flags, environment variables, the file, defaults.
A bad value stops the process with a message naming the key (see `ConfigError`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from digibridge.errors import DigibridgeError
from digibridge.resources import bundled

DEFAULT_STORE_URL = "sqlite:///./digibridge-data/digibridge.db"
LOOPBACK_ALLOWLIST = ("127.0.0.0/8", "::1/128")


class ConfigError(DigibridgeError):
    """The configuration cannot be used; the message names the key and the file."""


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class RegistryAccess(BaseModel):
    """Who may deliver one basisregistratie over WUS, and with which WS-Security profile."""

    model_config = ConfigDict(extra="forbid")

    #: OINs (client certificate subject serialNumber) allowed to deliver this registry.
    oins: list[str] = Field(min_length=1)
    #: "off": 2W-be (mutual TLS only); "optional"/"required": 2W-be-S signatures verified.
    ws_security: Literal["off", "optional", "required"] = "off"

    @field_validator("oins")
    @classmethod
    def _oins(cls, value: list[str]) -> list[str]:
        for oin in value:
            if len(oin) != 20 or not oin.isdigit():
                raise ValueError(f"{oin!r} is not an OIN (20 digits)")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGIBRIDGE_", extra="forbid")

    store_url: str = DEFAULT_STORE_URL
    mappings: Path = Field(default_factory=lambda: bundled("mappings"))
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: CIDRs webhook sinks may resolve to besides public addresses (SSRF guard).
    sink_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_ALLOWLIST)
    )
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Base URL consumers use to reach this gateway (dataschema links, WSDL address).
    public_url: str | None = None
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_xml_depth: int = Field(default=100, ge=8, le=250)
    #: Delays between delivery attempts in seconds, e.g. "0,5,300"; default: the 72-hour schedule.
    retry_schedule: str | None = None
    delivery_timeout: float = Field(default=10.0, gt=0)
    delivery_concurrency: int = Field(default=16, ge=1, le=1024)
    #: Webhook requests in flight at once to one endpoint (scheme://host:port), all instances.
    delivery_endpoint_concurrency: int = Field(default=8, ge=1, le=1024)
    #: Circuit breaker per endpoint: opens when this share of the outcomes in a window of
    #: `circuit_window` seconds failed (at least `circuit_min_requests` of them), lets one probe
    #: through after `circuit_pause` seconds.
    circuit_failure_ratio: float = Field(default=0.5, gt=0, le=1)
    circuit_min_requests: int = Field(default=5, ge=1)
    circuit_window: float = Field(default=60.0, gt=0)
    circuit_pause: float = Field(default=30.0, gt=0)
    #: An endpoint failing without a success for this many seconds gets its subscriptions
    #: disabled (default 5 days).
    endpoint_disable_after: float = Field(default=5 * 86400.0, gt=0)
    #: Days a delivered event (and its delivery log) is kept; dead letters stay until handled.
    retention_days: float = Field(default=30.0, gt=0)
    #: Seconds between clean-ups of the store.
    cleanup_interval: float = Field(default=3600.0, gt=0)

    # Digikoppeling security (docs/security.md). Mutual TLS terminated by digibridge: its
    # certificate (PEM, may hold the chain), key, key password (environment or file), and the CA
    # bundle client and WS-Security signing certificates must chain to.
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_key_password: SecretStr | None = None
    tls_key_password_file: Path | None = None
    tls_trusted_cas: Path | None = None
    #: Behind a TLS-terminating proxy: the header with the verified client certificate
    #: (URL-encoded PEM), believed only from `tls_trusted_proxies` (CIDRs).
    tls_client_cert_header: str | None = None
    tls_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Per basisregistratie: which OINs may deliver it, and its WS-Security profile.
    registries: dict[str, RegistryAccess] = Field(default_factory=dict)
    #: Allowed distance in seconds between a signed message's wsu:Created and our clock.
    wss_clock_skew: float = Field(default=300.0, gt=0, le=3600)
    #: Key and certificate that sign answers to signed requests (default: the TLS ones).
    wss_signing_certificate: Path | None = None
    wss_signing_key: Path | None = None
    wss_signing_key_password: SecretStr | None = None
    wss_signing_key_password_file: Path | None = None

    @field_validator("api_keys", "sink_allowlist", "tls_trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("sink_allowlist", "tls_trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @property
    def sqlite_path(self) -> Path | None:
        if self.store_url.startswith("sqlite:///"):
            return Path(self.store_url.removeprefix("sqlite:///"))
        return None

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls_certificate else "http"
        return f"{scheme}://{host}:{self.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get("path")
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


# pydantic-settings builds sources from the class; the file to read is passed through here.
_CONFIG_FILE: dict[str, Path | None] = {"path": None}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from file, environment and `overrides` (flags); ConfigError when invalid."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"configuration file {config_file} does not exist")
    _CONFIG_FILE["path"] = config_file
    where = f" in {config_file} or the environment" if config_file else ""
    try:
        settings = Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"invalid configuration{where}: {problems}") from None
    finally:
        _CONFIG_FILE["path"] = None
    if config_file is not None and "sink_allowlist" not in settings.model_fields_set:
        # Loopback sinks are a convenience of the embedded default, not of a configured install.
        settings = settings.model_copy(update={"sink_allowlist": []})
    return settings

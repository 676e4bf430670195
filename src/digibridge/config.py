"""Settings: one TOML or YAML file (`--config` / `DIGIBRIDGE_CONFIG`) plus `DIGIBRIDGE_*`
variables, and secrets from files (`DIGIBRIDGE_<KEY>_FILE`, `<key>_file`; `_config_sources.py`).

Precedence, highest first: command-line flags, environment variables, the file, defaults.
A bad value stops the process with a message naming the key and where it was set (see
`ConfigError`).
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from digibridge._config_sources import (
    ConfigFileSource,
    EnvSecretFileSource,
    SourceError,
    origin_of,
)
from digibridge.errors import DigibridgeError
from digibridge.resources import bundled

DEFAULT_STORE_URL = "sqlite:///./digibridge-data/digibridge.db"
LOOPBACK_ALLOWLIST = ("127.0.0.0/8", "::1/128")
#: Access token signatures accepted: asymmetric only (never `none` or a shared-secret HS*).
JwtAlgorithm = Literal["RS256", "ES256"]
JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("RS256", "ES256")
_DNS_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


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


class DigimeldingEndpoint(BaseModel):
    """Where one registry's terugmeldingen go (DigiMelding, docs/terugmeldingen.md)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://\S+$")
    #: Mutual TLS (2W-be): our client certificate (PEM, may hold the chain) and its key.
    client_certificate: Path | None = None
    client_key: Path | None = None
    client_key_password: SecretStr | None = None
    client_key_password_file: Path | None = None
    #: CA bundle the endpoint's server certificate must chain to (default: the system's).
    trusted_cas: Path | None = None
    #: Sign requests with WS-Security (2W-be-S) with the client key; None: as the registry's
    #: reverse mapping says (`signed`).
    sign: bool | None = None
    #: Seconds one call may take, connection to last byte.
    timeout: float = Field(default=30.0, gt=0, le=300)

    @model_validator(mode="after")
    def _key_pair(self) -> DigimeldingEndpoint:
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGIBRIDGE_", extra="forbid")

    store_url: str = DEFAULT_STORE_URL
    #: PostgreSQL: connections this instance keeps at most (shared by SOAP requests, the API and
    #: the workers), and seconds to wait for one (connecting at start, or a free one later).
    store_pool_size: int = Field(default=10, ge=1, le=1000)
    store_connect_timeout: float = Field(default=10.0, gt=0, le=300)
    mappings: Path = Field(default_factory=lambda: bundled("mappings"))
    #: REST API keys: `key` (all scopes) or `name:key` (the consumer scopes); docs/security.md.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: TOML, YAML or JSON file of named API keys with their scopes and rate (docs/security.md).
    api_keys_file: Path | None = None
    #: OAuth 2.0 JWT access tokens: the issuer (`iss`) and audience (`aud`) they must carry, and
    #: where the issuer's signing keys are (a JWKS URL, https except on loopback, or a file).
    oauth_issuer: str | None = None
    oauth_audience: str | None = None
    oauth_jwks_url: str | None = None
    oauth_jwks_file: Path | None = None
    oauth_algorithms: Annotated[list[JwtAlgorithm], NoDecode] = Field(
        default_factory=lambda: list(JWT_ALGORITHMS), min_length=1
    )
    #: Seconds of clock difference allowed on `exp`, `nbf` and `iat`.
    oauth_leeway: float = Field(default=30.0, ge=0, le=300)
    #: Seconds the JWKS is kept before it is fetched again.
    oauth_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    #: A token with an unknown `kid` refreshes the JWKS at most once per this many seconds.
    oauth_jwks_refresh_interval: float = Field(default=30.0, ge=0)
    #: Requests per second per consumer (token bucket refill; 0: no limit), and the burst.
    rate_limit: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    #: CIDRs webhook sinks may resolve to besides public addresses (SSRF guard).
    sink_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_ALLOWLIST)
    )
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Seconds a stop (SIGTERM) gives SOAP requests and webhook sends in flight; sends still
    #: running then are cancelled and go back to the queue (docs/operations.md).
    shutdown_timeout: float = Field(default=10.0, gt=0, le=600)
    #: OpenTelemetry: send spans over OTLP/HTTP to this URL (e.g. http://collector:4318/v1/traces);
    #: needs the `otel` extra. Off when unset.
    otel_endpoint: str | None = Field(default=None, pattern=r"^https?://\S+$")
    otel_service_name: str = Field(default="digibridge", min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Gateway processes serving one socket (`serve --workers`): one process uses one core
    #: (docs/scaling.md).
    workers: int = Field(default=1, ge=1, le=64)
    #: Seconds a worker of `serve --workers` may go without its event loop turning before the
    #: parent dumps its threads' stacks and replaces it; 0: never (docs/scaling.md).
    worker_timeout: float = Field(default=30.0, ge=0, le=3600)
    #: Base URL consumers use to reach this gateway (dataschema links, WSDL address).
    public_url: str | None = None
    #: `WebHook-Request-Origin` of the validation handshake and of every delivery: the DNS name
    #: receivers know this gateway by. Default: the host of `public_url`, else the FQDN.
    webhook_origin: str | None = Field(default=None, min_length=1, max_length=253)
    #: Who answers for this API: `info.contact` of the OpenAPI and AsyncAPI documents
    #: (docs/api.md). The url defaults to `public_url`; set the e-mail for production.
    api_contact_name: str = Field(default="digibridge beheer", min_length=1)
    api_contact_email: str = Field(default="beheer@digibridge.invalid", pattern=r"^[^@\s]+@\S+$")
    api_contact_url: str | None = None
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_xml_depth: int = Field(default=100, ge=8, le=250)
    #: Delays between delivery attempts in seconds, e.g. "0,5,300"; default: the 72-hour schedule.
    retry_schedule: str | None = None
    delivery_timeout: float = Field(default=10.0, gt=0)
    delivery_concurrency: int = Field(default=16, ge=1, le=1024)
    #: Webhook requests in flight at once to one endpoint (scheme://host:port), all instances.
    delivery_endpoint_concurrency: int = Field(default=8, ge=1, le=1024)
    #: Seconds a claimed delivery stays leased to this instance; when an instance dies, another
    #: takes its claims over after this long (docs/scaling.md). Default: 4 times the longest
    #: request timeout plus 5 s; a shorter lease caps every request at a quarter of it.
    delivery_lease: float | None = Field(default=None, ge=1, le=3600)
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
    #: Event streams (`GET /v1/events/stream`, docs/feed.md): seconds of silence before a
    #: heartbeat comment; seconds between looks at the store for events stored elsewhere (other
    #: instances) when nothing woke the stream; and how many streams one process serves at once.
    sse_heartbeat: float = Field(default=15.0, gt=0, le=300)
    sse_poll_interval: float = Field(default=2.0, gt=0, le=300)
    sse_max_streams: int = Field(default=100, ge=1, le=10000)

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

    # Terugmeldingen to DigiMelding (docs/terugmeldingen.md).
    #: OIN of the reporting organisation (`GeannoteerdDoor/Oin`); needed to accept terugmeldingen.
    oin: str | None = Field(default=None, pattern=r"^[0-9]{20}$")
    #: Per registry code (`BRP`, `NHR`, ...): its DigiMelding endpoint.
    digimelding: dict[str, DigimeldingEndpoint] = Field(default_factory=dict)
    #: Delays between attempts to hand a request to DigiMelding, e.g. "0,30s,5m"; default: the
    #: 72-hour webhook schedule.
    digimelding_retry_schedule: str | None = None
    #: Seconds between `Statusoverzicht` polls per registry; after a failed poll the wait doubles
    #: up to `digimelding_poll_max_backoff`.
    digimelding_poll_interval: float = Field(default=300.0, gt=0)
    digimelding_poll_max_backoff: float = Field(default=3600.0, gt=0)
    #: Bytes of a `POST /v1/terugmeldingen` body, refused unread beyond (attachments as base64).
    terugmelding_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: Bytes of one decoded attachment, whatever a registry's mapping allows.
    terugmelding_max_attachment_bytes: int = Field(default=5 * 1024 * 1024, ge=1)

    @field_validator(
        "api_keys", "sink_allowlist", "tls_trusted_proxies", "oauth_algorithms", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("sink_allowlist", "tls_trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("worker_timeout")
    @classmethod
    def _worker_timeout(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (never) or at least 1 second")
        return value

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("oauth_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
            return value
        raise ValueError("must be an https:// URL (http:// only on loopback)")

    @model_validator(mode="after")
    def _oauth_complete(self) -> Settings:
        if not self.oauth_enabled:
            return self
        missing = [
            name
            for name, value in (
                ("oauth_issuer", self.oauth_issuer),
                ("oauth_audience", self.oauth_audience),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"OAuth tokens need {' and '.join(missing)} as well")
        if (self.oauth_jwks_url is None) == (self.oauth_jwks_file is None):
            raise ValueError("OAuth tokens need exactly one of oauth_jwks_url and oauth_jwks_file")
        return self

    @property
    def oauth_enabled(self) -> bool:
        """Any OAuth setting given: then all the required ones must be."""
        return any(
            value is not None
            for value in (
                self.oauth_issuer,
                self.oauth_audience,
                self.oauth_jwks_url,
                self.oauth_jwks_file,
            )
        )

    @property
    def api_access_configured(self) -> bool:
        """Keys or OAuth configured; without, the REST API answers loopback only."""
        return bool(self.api_keys or self.api_keys_file or self.oauth_enabled)

    @property
    def sqlite_path(self) -> Path | None:
        if self.store_url.startswith("sqlite:///"):
            return Path(self.store_url.removeprefix("sqlite:///"))
        return None

    @field_validator("webhook_origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        # It travels in a header: a DNS name keeps it free of anything a header cannot hold.
        if value is not None and not set(value.lower()) <= _DNS_CHARACTERS:
            raise ValueError("must be a DNS name (letters, digits, '-' and '.')")
        return value

    @property
    def request_origin(self) -> str:
        """The origin digibridge names in webhook requests (see `webhook_origin`)."""
        if self.webhook_origin:
            return self.webhook_origin
        host = urlsplit(self.public_url).hostname if self.public_url else None
        return host or socket.getfqdn()

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
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            EnvSecretFileSource(settings_cls),
        ]
        config_file = _CONFIG_FILE.get("path")
        if config_file is not None:
            sources.append(ConfigFileSource(settings_cls, config_file))
        return tuple(sources)


# pydantic-settings builds sources from the class; the file to read is passed through here.
_CONFIG_FILE: dict[str, Path | None] = {"path": None}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from file, environment and `overrides` (flags); ConfigError when invalid."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"configuration file {config_file} does not exist")
    _CONFIG_FILE["path"] = config_file
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    except ValidationError as exc:
        problems = "; ".join(_problem(error, config_file, given) for error in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
    finally:
        _CONFIG_FILE["path"] = None
    if config_file is not None and "sink_allowlist" not in settings.model_fields_set:
        # Loopback sinks are a convenience of the embedded default, not of a configured install.
        settings = settings.model_copy(update={"sink_allowlist": []})
    return settings


def _problem(error: Any, config_file: Path | None, flags: dict[str, Any]) -> str:
    """One validation error as `where: what`, naming the key and the variable or file."""
    location = [str(part) for part in error["loc"]]
    if not location:
        return str(error["msg"])
    key = location[0]
    if key in flags:
        where = f"--{key.replace('_', '-')} (command line)"
    else:
        where = origin_of(key, config_file)
    path = ".".join(location[1:])
    if path:
        where = f"{where}, at {path}"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"

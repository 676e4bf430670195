"""Settings: one TOML file (`--config` / `DIGIBRIDGE_CONFIG`) plus `DIGIBRIDGE_*` variables.

Precedence, highest first: command-line flags, environment variables, the file, defaults.
A bad value stops the process with a message naming the key (see `ConfigError`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
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

    @field_validator("api_keys", "sink_allowlist", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("sink_allowlist")
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
        return f"http://{host}:{self.port}"

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

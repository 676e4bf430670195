"""`digibridge config show|check`: the effective configuration with secrets masked, and a
configuration file checked the way `serve` would check it, without starting anything."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import yaml
from pydantic import BaseModel, SecretStr

from digibridge.clock import SystemClock
from digibridge.config import ConfigError, Settings, load_settings

MASK = "********"
#: Settings whose values are secrets, by name (SecretStr fields are masked by their type too).
_SECRET_NAME = re.compile(r"(password|secret|credential|token|private_key|api_keys)$")
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")


def mask_url(url: str) -> str:
    """`url` with the password of its user part masked (`postgresql://user:…@host/db`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def _mask_entry(entry: str) -> str:
    """An API key entry: `name:key` keeps its name, a bare key is hidden whole."""
    name, separator, _key = entry.partition(":")
    return f"{name}:{MASK}" if separator else MASK


def masked(name: str, value: Any) -> Any:
    """`value` of setting `name` as safe to print: secrets masked, paths as text."""
    if isinstance(value, BaseModel):
        value = {key: getattr(value, key) for key in type(value).model_fields}
    if isinstance(value, dict):
        return {str(key): masked(str(key), item) for key, item in value.items()}
    secret = bool(_SECRET_NAME.search(name))
    if isinstance(value, list | tuple):
        return [_mask_entry(str(item)) if secret else masked(name, item) for item in value]
    if isinstance(value, SecretStr) or (secret and value is not None):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return _WEBHOOK_SECRET.sub(f"whsec_{MASK}", mask_url(value))
    return value


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting with its effective value, secrets masked."""
    return {key: masked(key, getattr(settings, key)) for key in Settings.model_fields}


def _load(file: Path | None) -> Settings:
    try:
        return load_settings(file)
    except ConfigError as exc:
        click.echo(f"digibridge: {exc}", err=True)
        sys.exit(2)


@click.group("config")
def config() -> None:
    """Show or check the configuration (file, DIGIBRIDGE_* variables, secret files)."""


@config.command("show")
@click.option(
    "--config",
    "file",
    type=click.Path(path_type=Path),
    envvar="DIGIBRIDGE_CONFIG",
    help="TOML or YAML configuration file (or set DIGIBRIDGE_CONFIG).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
def show(file: Path | None, output: str) -> None:
    """Print the effective configuration, secrets masked; exit 2 if it is invalid."""
    values = effective(_load(file))
    if output == "json":
        click.echo(json.dumps(values, indent=2, ensure_ascii=False))
    else:
        click.echo(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), nl=False)


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> None:
    """Check FILE (with the DIGIBRIDGE_* variables set now) as `serve` would: every key and
    value, the secret files, the key and certificate files, the store URL. Exit 2 on a
    problem, naming the key and the file."""
    from digibridge.api.auth import Authenticator  # noqa: PLC0415 - reads API key files
    from digibridge.app import open_store  # noqa: PLC0415
    from digibridge.wus.security import configure  # noqa: PLC0415 - reads certificates

    settings = _load(file)
    try:
        configure(settings, SystemClock())
        Authenticator.from_settings(settings)
        open_store(settings, SystemClock())
    except ConfigError as exc:
        click.echo(f"digibridge: {file}: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{file}: configuration ok")

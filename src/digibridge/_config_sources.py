"""Where settings come from besides plain `DIGIBRIDGE_*` variables: the configuration file (TOML
or YAML) and secret files.

A secret need not sit in the file or the environment: `DIGIBRIDGE_<KEY>_FILE` (environment) or
`<key>_file` (configuration file) names a file whose content is the value, as container
platforms mount secrets. It works for every setting that has no `<key>_file` setting of its own
(those, like `tls_key_password_file`, are read by the setting itself). Errors are `ConfigError`s
that name the key and the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from digibridge.errors import DigibridgeError

ENV_PREFIX = "DIGIBRIDGE_"
FILE_SUFFIX = "_file"
SUFFIXES = (".toml", ".yaml", ".yml")


class SourceError(DigibridgeError):
    """A configuration source cannot be read (the loader turns it into a ConfigError)."""


def read_secret(path: Path, key: str) -> str:
    """The content of a secret file, without the line end editors and `echo` leave."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourceError(f"{key}: cannot read secret file {path}: {reason}") from None


def _secret_target(key: str, fields: Collection[str]) -> str | None:
    """The setting `key` (`<name>_file`) supplies from a file, when it is that kind of key."""
    if not key.endswith(FILE_SUFFIX) or key in fields:
        return None
    name = key.removesuffix(FILE_SUFFIX)
    return name if name in fields else None


def parse_config_file(path: Path) -> dict[str, Any]:
    """The top-level table of a TOML (`.toml`) or YAML (`.yaml`, `.yml`) configuration file."""
    if path.suffix not in SUFFIXES:
        raise SourceError(f"{path}: use a .toml, .yaml or .yml configuration file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourceError(f"{path}: cannot read: {reason}") from None
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{path}: not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise SourceError(f"{path}: the top level must be a table (mapping) of settings")
    return data


class ConfigFileSource(PydanticBaseSettingsSource):
    """The configuration file, with its `<key>_file` entries read."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        fields = settings_cls.model_fields
        data = parse_config_file(path)
        for key in list(data):
            target = _secret_target(key, fields)
            if target is None:
                continue
            if target in data:
                raise SourceError(f"{path}: give {target} or {key}, not both")
            secret_path = data.pop(key)
            if not isinstance(secret_path, str):
                raise SourceError(f"{key} in {path}: must be a file path (a string)")
            data[target] = read_secret(Path(secret_path), f"{key} in {path}")
        self.data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class EnvSecretFileSource(PydanticBaseSettingsSource):
    """`DIGIBRIDGE_<KEY>_FILE` variables: the named file's content is the value of `key`."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(settings_cls)
        environ = os.environ if environ is None else environ
        fields = settings_cls.model_fields
        upper = {name.upper(): value for name, value in environ.items()}
        self.data: dict[str, Any] = {}
        for name, value in upper.items():
            if not name.startswith(ENV_PREFIX):
                continue
            key = name.removeprefix(ENV_PREFIX).lower()
            target = _secret_target(key, fields)
            if target is None:
                continue
            if f"{ENV_PREFIX}{target.upper()}" in upper:
                raise SourceError(f"set {ENV_PREFIX}{target.upper()} or {name}, not both")
            self.data[target] = read_secret(Path(value), name)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def env_name(key: str) -> str:
    return f"{ENV_PREFIX}{key.upper()}"


def origin_of(key: str, config_file: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """Where the value of `key` came from, for error messages: the variable, or the file."""
    environ = os.environ if environ is None else environ
    names = {name.upper() for name in environ}
    for name in (env_name(key), env_name(key + FILE_SUFFIX)):
        if name in names:
            return f"{key} ({name} in the environment)"
    if config_file is not None:
        return f"{key} in {config_file}"
    return key

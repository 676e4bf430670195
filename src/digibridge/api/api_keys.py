"""API keys: from `DIGIBRIDGE_API_KEYS` (`key` or `name:key`) and the `api_keys_file`.

Keys are held only as SHA-256 digests and a presented key is compared with every one of them
(`hmac.compare_digest`, no early exit), so neither the answer time nor memory gives a key away.

- a bare `key` (as before keys had names): consumer `key-<first 12 hex of its SHA-256>`, every
  scope; these are operator keys.
- `name:key`: consumer `name`, the consumer scopes (all but `deliveries:admin`).
- the keys file (TOML `[[keys]]`, or YAML/JSON: a list or `{keys: [...]}`): per key `name`, `key`
  or `sha256` (hex digest of the key), `scopes`, and optionally its own `rate` and `burst`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from digibridge.api.consumers import ALL_SCOPES, CONSUMER_SCOPES, Consumer
from digibridge.api.ratelimit import Rate
from digibridge.config import ConfigError

FINGERPRINT_PREFIX = "key-"
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def fingerprint(key: str) -> str:
    """The consumer id of a bare key: short, stable, and not the key."""
    return FINGERPRINT_PREFIX + digest(key).hex()[:12]


@dataclass(frozen=True)
class ApiKey:
    consumer: Consumer
    digest: bytes
    #: The key's own rate limit; None: the gateway's default.
    rate: Rate | None = None


class _FileKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME_PATTERN)
    key: str | None = Field(default=None, min_length=16, max_length=512)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    scopes: list[str] = Field(default_factory=lambda: sorted(CONSUMER_SCOPES))
    rate: float | None = Field(default=None, ge=0)
    burst: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_key(self) -> _FileKey:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of key and sha256")
        unknown = sorted(set(self.scopes) - ALL_SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; known: {sorted(ALL_SCOPES)}")
        if self.name.startswith(FINGERPRINT_PREFIX):
            raise ValueError(f"names starting with {FINGERPRINT_PREFIX!r} are for bare keys")
        return self


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[_FileKey]


class KeyRing:
    """The configured API keys; `find` answers which one a presented key is."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = keys

    def __bool__(self) -> bool:
        return bool(self._keys)

    def find(self, presented: str) -> ApiKey | None:
        wanted = digest(presented)
        found = None
        for key in self._keys:
            if hmac.compare_digest(wanted, key.digest):
                found = key
        return found

    @classmethod
    def configured(
        cls, entries: list[str], file: Path | None, default_rate: Rate | None = None
    ) -> KeyRing:
        """Keys from the environment entries and the file; ConfigError naming the bad one."""
        keys = [_from_entry(entry) for entry in entries]
        if file is not None:
            keys.extend(_from_file(file, default_rate))
        seen: set[bytes] = set()
        for key in keys:
            if key.digest in seen:
                raise ConfigError(f"api keys: the key of {key.consumer.id!r} is given twice")
            seen.add(key.digest)
        return cls(keys)


def _from_entry(entry: str) -> ApiKey:
    name, separator, key = entry.partition(":")
    if not separator:
        return ApiKey(Consumer(fingerprint(entry), ALL_SCOPES), digest(entry))
    if not key or not re.match(_NAME_PATTERN, name) or name.startswith(FINGERPRINT_PREFIX):
        raise ConfigError(
            f"api_keys: entry {name!r}:… is not name:key (name: letters, digits, . _ @ -; "
            f"not starting with {FINGERPRINT_PREFIX!r})"
        )
    return ApiKey(Consumer(name, CONSUMER_SCOPES), digest(key))


def _parse(file: Path) -> Any:
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".toml":
        return tomllib.loads(text)
    if file.suffix in (".yaml", ".yml"):
        return yaml.safe_load(text)
    if file.suffix == ".json":
        return json.loads(text)
    raise ConfigError(f"api_keys_file {file}: use a .toml, .yaml, .yml or .json file")


def _from_file(file: Path, default_rate: Rate | None) -> list[ApiKey]:
    try:
        raw = _parse(file)
    except OSError as exc:
        raise ConfigError(f"api_keys_file {file}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError, UnicodeError) as exc:
        raise ConfigError(f"api_keys_file {file}: not valid {file.suffix[1:]}: {exc}") from None
    try:
        parsed = _KeyFile.model_validate({"keys": raw} if isinstance(raw, list) else raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"api_keys_file {file}: {problems}") from None
    keys = []
    for entry in parsed.keys:
        rate = None
        if entry.rate is not None or entry.burst is not None:
            base = default_rate or Rate(per_second=0, burst=1)
            rate = Rate(
                per_second=base.per_second if entry.rate is None else entry.rate,
                burst=base.burst if entry.burst is None else entry.burst,
            )
        key_digest = digest(entry.key) if entry.key else bytes.fromhex(entry.sha256 or "")
        keys.append(ApiKey(Consumer(entry.name, frozenset(entry.scopes)), key_digest, rate))
    return keys

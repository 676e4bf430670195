"""Configuration as operators meet it: a TOML or YAML file, `DIGIBRIDGE_*` variables over it,
secrets from files, `digibridge config show` (masked) and `digibridge config check FILE`; every
bad configuration a clear message naming the key and the file, and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from digibridge.cli import main

SECRETS = ("ops-key-9f8e7d6c", "pw-tls-4a5b6c", "pw-dmks-1d2e3f", "pg-pass-7a8b")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """The command in this process (click's runner sets and restores the environment)."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def shown(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    values: dict[str, Any] = yaml.safe_load(result.stdout)
    return values


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("unknown.toml", 'store_urll = "sqlite:///x.db"\n', "store_urll in {file}: unknown key"),
        ("unknown.yaml", "store_urll: sqlite:///x.db\n", "store_urll in {file}: unknown key"),
        ("type.toml", 'port = "eighty"\n', "port in {file}: Input should be a valid integer"),
        ("range.yaml", "port: 70000\n", "port in {file}: Input should be less than"),
        (
            "timeout.toml",
            "worker_timeout = 0.5\n",
            "worker_timeout in {file}: must be 0 (never) or at least 1 second",
        ),
        (
            "nested.toml",
            '[registries.BRP]\noins = ["123"]\n',
            "registries in {file}, at BRP.oins: '123' is not an OIN",
        ),
        ("syntax.toml", "port = = 1\n", "{file}: not valid TOML"),
        ("syntax.yaml", "port: [1\n", "{file}: not valid YAML"),
        ("list.yaml", "- port: 1\n", "{file}: the top level must be a table"),
        ("config.ini", "port = 1\n", "{file}: use a .toml, .yaml or .yml configuration file"),
        ("secret.toml", 'oin_file = "/nonexistent/oin"\n', "oin_file in {file}: cannot read"),
        (
            "twice.toml",
            'oin = "00000001823288444000"\noin_file = "/x"\n',
            "give oin or oin_file, not both",
        ),
    ],
)
def test_a_bad_file_names_the_key_and_the_file_and_exits_2(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    config = write(tmp_path / name, text)
    for args in (("config", "check", str(config)), ("config", "show", "--config", str(config))):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("digibridge: ")
        assert says.format(file=config) in result.stderr


def test_serve_refuses_a_bad_yaml_file_with_exit_2_as_a_process(tmp_path: Path) -> None:
    config = write(tmp_path / "digibridge.yaml", "delivery_timeout: soon\n")
    result = subprocess.run(
        [sys.executable, "-m", "digibridge", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"delivery_timeout in {config}: Input should be a valid number" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_secret_file_named_by_a_variable_exits_2() -> None:
    result = run("config", "show", env={"DIGIBRIDGE_OIN_FILE": "/nonexistent/oin"})
    assert result.exit_code == 2
    assert "DIGIBRIDGE_OIN_FILE: cannot read secret file /nonexistent/oin" in result.stderr


def test_a_value_and_its_secret_file_together_are_refused(tmp_path: Path) -> None:
    secret = write(tmp_path / "oin", "00000001823288444000\n")
    env = {"DIGIBRIDGE_OIN": "00000001823288444000", "DIGIBRIDGE_OIN_FILE": str(secret)}
    result = run("config", "show", env=env)
    assert result.exit_code == 2
    assert "set DIGIBRIDGE_OIN or DIGIBRIDGE_OIN_FILE, not both" in result.stderr


def test_a_bad_variable_is_named_as_the_variable() -> None:
    result = run("config", "show", env={"DIGIBRIDGE_SHUTDOWN_TIMEOUT": "-1"})
    assert result.exit_code == 2
    assert "shutdown_timeout (DIGIBRIDGE_SHUTDOWN_TIMEOUT in the environment)" in result.stderr


def test_environment_overrides_the_file_and_the_file_the_defaults(tmp_path: Path) -> None:
    config = write(tmp_path / "digibridge.yaml", "port: 8100\nlog_level: warning\n")
    values = shown(run("config", "show", "--config", str(config), env={"DIGIBRIDGE_PORT": "8200"}))
    assert values["port"] == 8200
    assert values["log_level"] == "warning"
    assert values["shutdown_timeout"] == 10.0
    toml = write(tmp_path / "digibridge.toml", "port = 8300\n")
    from_variable = run("config", "show", "--format", "json", env={"DIGIBRIDGE_CONFIG": str(toml)})
    assert json.loads(from_variable.stdout)["port"] == 8300


def test_secret_files_supply_values_from_the_file_and_the_environment(tmp_path: Path) -> None:
    oin = write(tmp_path / "oin.txt", "00000001823288444000\n")
    url = write(tmp_path / "store-url", "sqlite:///from-a-secret-file.db\r\n")
    config = write(tmp_path / "digibridge.toml", f'store_url_file = "{url}"\n')
    values = shown(
        run("config", "show", "--config", str(config), env={"DIGIBRIDGE_OIN_FILE": str(oin)})
    )
    assert values["oin"] == "00000001823288444000"
    assert values["store_url"] == "sqlite:///from-a-secret-file.db"


def test_config_show_masks_every_secret(tmp_path: Path) -> None:
    ops, tls_password, dmks_password, pg_password = SECRETS
    password_file = write(tmp_path / "tls-password", tls_password)
    config = write(
        tmp_path / "digibridge.yaml",
        yaml.safe_dump(
            {
                "store_url": f"postgresql://digibridge:{pg_password}@db.example:5432/digibridge",
                "api_keys": [f"ops:{ops}"],
                "digimelding": {
                    "BRP": {
                        "url": "https://digimelding.example/dmks",
                        "client_key_password": dmks_password,
                    }
                },
            }
        ),
    )
    env = {"DIGIBRIDGE_TLS_KEY_PASSWORD_FILE": str(password_file)}
    result = run("config", "show", "--config", str(config), env=env)
    values = shown(result)
    for secret in SECRETS:
        assert secret not in result.output
    assert values["api_keys"] == ["ops:********"]
    assert values["store_url"] == "postgresql://digibridge:********@db.example:5432/digibridge"
    assert values["digimelding"]["BRP"]["client_key_password"] == "********"
    assert values["tls_key_password_file"] == str(password_file)  # a path, not the secret
    as_json = run("config", "show", "--config", str(config), "--format", "json", env=env)
    assert all(secret not in as_json.output for secret in SECRETS)


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    config = write(tmp_path / "digibridge.toml", 'port = 8100\nlog_format = "json"\n')
    result = run("config", "check", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{config}: configuration ok\n"


def test_config_check_reads_the_files_the_configuration_names(tmp_path: Path) -> None:
    config = write(
        tmp_path / "digibridge.toml",
        f'tls_certificate = "{tmp_path / "none.pem"}"\n'
        f'tls_key = "{tmp_path / "none.key"}"\n'
        f'tls_trusted_cas = "{tmp_path / "none-ca.pem"}"\n',
    )
    result = run("config", "check", str(config))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"digibridge: {config}: tls_")


def test_config_check_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run("config", "check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml does not exist" in result.stderr


def test_the_config_commands_have_help() -> None:
    for args in (("config", "--help"), ("config", "show", "--help"), ("config", "check", "--help")):
        result = run(*args)
        assert result.exit_code == 0
        assert "Usage: " in result.stdout


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own DIGIBRIDGE_* variables must not change what these tests see."""
    for name in list(os.environ):
        if name.startswith("DIGIBRIDGE_"):
            monkeypatch.delenv(name)

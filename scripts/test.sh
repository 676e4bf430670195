#!/usr/bin/env bash
# Installs the test dependencies into .venv and runs every check: lint, types, the test suite.
# This is the README's test command and exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
install() { .venv/bin/python -m pip install --quiet -e ".[test]"; }
# xmlsec (the tests' independent WS-Security implementation) ships manylinux wheels; where none
# fits, pip builds it from source, which needs libxmlsec1-dev. Installed only when needed.
if ! install || ! .venv/bin/python -c "import xmlsec" 2>/dev/null; then
  echo "== installing libxmlsec1-dev for the xmlsec package"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq libxmlsec1-dev pkg-config
  install
fi

echo "== ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"

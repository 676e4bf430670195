"""Node tools the document tests run (`npx --yes <package> …`); skipped only without Node.

The first run downloads the package into npm's cache, so the timeout is generous.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

NPX_TIMEOUT = 600.0
#: Set in CI (.ci/run): there a missing Node.js fails the document tests instead of skipping.
REQUIRE_NODE = "DIGIBRIDGE_TEST_REQUIRE_NODE"


def npx(package: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`npx --yes package args…`, output captured; the test is skipped when npx is absent."""
    executable = shutil.which("npx")
    if executable is None:
        message = f"npx (Node.js) is not installed, so {package} cannot run"
        if os.environ.get(REQUIRE_NODE):
            pytest.fail(f"{message}; CI must have Node.js ({REQUIRE_NODE} is set)")
        pytest.skip(message)
    return subprocess.run(
        [executable, "--yes", package, *args],
        capture_output=True,
        text=True,
        timeout=NPX_TIMEOUT,
        check=False,
        # The AsyncAPI CLI reports usage metrics unless told not to.
        env={**os.environ, "ASYNCAPI_METRICS": "false", "NO_UPDATE_NOTIFIER": "1"},
    )

"""Where the files digibridge ships (WSDL/XSD, sample mappings) are found.

In a wheel they are bundled under `digibridge/_bundled/`; in a source checkout (editable
install) they stand at the repository root. One lookup, used everywhere.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The shipped folder `name` (`wsdl`, `mappings`, `samples`)."""
    packaged = _PACKAGE / "_bundled" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parents[1] / name

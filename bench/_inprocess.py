"""The inbound endpoint in the benchmark's own process, on a fresh SQLite store: for figures
of the gateway's own cost without HTTP in between."""

from __future__ import annotations

from pathlib import Path

from digibridge.clock import Clock, SystemClock
from digibridge.config import load_settings
from digibridge.runtime import load_checked_mappings
from digibridge.store.sqlite import SqliteStore
from digibridge.wus.access import InboundSecurity
from digibridge.wus.inbound import DigileveringEndpoint
from digibridge.wus.security import configure as configure_security


async def endpoint_on(
    folder: Path,
    *,
    clock: Clock | None = None,
    security: InboundSecurity | None = None,
) -> tuple[DigileveringEndpoint, SqliteStore]:
    """The endpoint with the bundled mappings and the embedded defaults' security (or
    `security`), on an opened store in `folder`; the caller closes the store."""
    clock = clock or SystemClock()
    settings = load_settings(None, store_url=f"sqlite:///{folder / 'bench.db'}")
    store = SqliteStore(folder / "bench.db", clock=clock)
    await store.open()
    mappings = load_checked_mappings(settings)
    endpoint = DigileveringEndpoint(
        store=store,
        mappings=lambda: mappings,
        clock=clock,
        on_stored=lambda: None,
        max_body_bytes=settings.max_body_bytes,
        max_depth=settings.max_xml_depth,
        security=security or configure_security(settings, clock).inbound,
    )
    return endpoint, store

"""Liveness, readiness and Prometheus metrics (outside `/v1`: no API key needed, and not in the
public OpenAPI document)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from digibridge.runtime import Runtime
from digibridge.store.types import StoreError

router = APIRouter(tags=["health"])
#: Readiness answers within this even when the store hangs (a database that went away makes a
#: connection attempt wait for its own timeout); a store that takes longer is not ready.
STORE_PING_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers and the mappings are loaded (and not draining)."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    checks = {
        "started": bool(runtime and runtime.ready),
        "store": bool(runtime and await _store_answers(runtime)),
        "mappings": bool(runtime and runtime.mappings.event_types),
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _store_answers(runtime: Runtime) -> bool:
    try:
        return await asyncio.wait_for(runtime.store.ping(), STORE_PING_TIMEOUT)
    except TimeoutError:
        return False


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus exposition; queue, dead-letter and circuit gauges are read from the store now
    (left at their last values when it does not answer)."""
    runtime: Runtime = request.app.state.runtime
    try:
        stats = await runtime.store.queue_stats(now=runtime.clock.now())
    except StoreError:
        pass
    else:
        runtime.metrics.set_queue(stats, runtime.clock.now())
    body, content_type = runtime.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)

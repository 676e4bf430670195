"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from digibridge.runtime import Runtime

router = APIRouter(tags=["health"])


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
        "store": bool(runtime and await runtime.store.ping()),
        "mappings": bool(runtime and runtime.mappings.event_types),
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )

"""`/v1/admin`: operator actions on the running gateway.

`POST /v1/admin/reload` reads the mapping folder again and swaps it in only when it passes
`digibridge check` (the same as `SIGHUP`); a refused set leaves the loaded one in place.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from digibridge.api.problems import Problem
from digibridge.runtime import MappingsRefused, Runtime

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class ReloadOut(BaseModel):
    status: str
    mappings: str
    files: list[str]
    eventTypes: list[str]  # noqa: N815 - lowerCamelCase per the NL API Design Rules


@router.post(
    "/reload",
    responses={409: {"description": "The mappings do not pass check; the loaded set stays"}},
)
async def reload_mappings(request: Request) -> ReloadOut:
    """Reload the mapping files; refused (409, with every problem) when they do not pass check."""
    runtime: Runtime = request.app.state.runtime
    try:
        mappings = await runtime.reload_mappings(trigger="api")
    except MappingsRefused as exc:
        raise Problem(
            409,
            f"the mappings in {runtime.settings.mappings} do not pass check; "
            f"the loaded set stays in use ({len(exc.problems)} problem(s))",
            title="Mappings Refused",
            invalid_params=[
                {"name": problem.location, "reason": problem.message} for problem in exc.problems
            ],
        ) from None
    return ReloadOut(
        status="reloaded",
        mappings=str(runtime.settings.mappings),
        files=[path.name for path in mappings.files],
        eventTypes=[info.type for info in mappings.event_types],
    )

"""The stub's control API: request bodies, scripted trouble, problem+json answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digibridge.wus.digimelding import OPERATIONS
from digibridge.wus.dmks_faults import TIME_OUT

#: A control request body is small; more is refused unread.
MAX_CONTROL_BYTES = 64 * 1024


@dataclass
class Scripted:
    """Trouble to hand out `count` more times, to one operation or to all."""

    count: int
    operation: str | None

    def take(self, operation: str) -> bool:
        if self.count > 0 and self.operation in (None, operation):
            self.count -= 1
            return True
        return False


@dataclass
class FaultScript(Scripted):
    code: str = TIME_OUT
    client: bool = False


@dataclass
class DelayScript(Scripted):
    seconds: float = 0.0


@dataclass
class OutageScript(Scripted):
    status: int = 503


class Body(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)


class StatusChange(Body):
    status: str
    toelichting: str | None = pydantic.Field(default=None, max_length=4000)


class FaultRequest(Body):
    code: str = pydantic.Field(pattern=r"^[A-Z]{2}[0-9]{4}$")
    count: int = pydantic.Field(default=1, ge=1, le=1000)
    operation: str | None = None
    #: A Server fault (else Client); default: Server for DK0050/DK0051, Client otherwise.
    server: bool | None = None


class DelayRequest(Body):
    seconds: float = pydantic.Field(gt=0, le=120)
    count: int = pydantic.Field(default=1, ge=1, le=1000)
    operation: str | None = None


class OutageRequest(Body):
    status: int = pydantic.Field(ge=400, le=599)
    count: int = pydantic.Field(default=1, ge=1, le=1000)


M = TypeVar("M", bound=Body)
OPERATION_NAMES = {op.name for op in OPERATIONS.values()}


def problem(status: int, detail: str, **extra: Any) -> Response:
    titles = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 415: "Unsupported Media Type"}
    body = {"type": "about:blank", "title": titles.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def unknown_operation(operation: str | None) -> Response | None:
    if operation is None or operation in OPERATION_NAMES:
        return None
    return problem(
        400,
        f"{operation!r} is not an operation",
        field="/operation",
        allowed=sorted(OPERATION_NAMES),
    )


async def parse_body(request: Request, model: type[M]) -> M | Response:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return problem(415, "send application/json")
    data = await request.body()
    if len(data) > MAX_CONTROL_BYTES:
        return problem(400, "a control request is at most 64 KiB")
    try:
        return model.model_validate_json(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = "/" + "/".join(str(p) for p in first["loc"])
        return problem(400, f"{where}: {first['msg']}", field=where)

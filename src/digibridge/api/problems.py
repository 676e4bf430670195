"""RFC 9457 problem+json for every error the REST API gives, including the framework's own.

The one place API errors take their shape: routes raise `Problem`; FastAPI's validation errors,
404/405 from routing and unexpected exceptions are converted here too, so no framework default
error body ever leaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match

from digibridge.errors import DigibridgeError

PROBLEM_JSON = "application/problem+json"
#: RFC 3986 characters allowed unencoded in a path (pchar and "/").
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
log = structlog.get_logger("digibridge.api")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(DigibridgeError):
    """An API error answered as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        invalid_params: Sequence[dict[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.invalid_params = list(invalid_params)
        self.headers = headers or {}


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        # Percent-encoded: a URI reference even when the path held other characters.
        "instance": quote(request.url.path, safe=_PATH_SAFE),
    }
    if problem.invalid_params:
        body["invalidParams"] = problem.invalid_params
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def _location(loc: Sequence[int | str]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts at this path. Starlette's own `Allow` names only the
    methods of the first route that matched the path, and several routes may share it."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install(app: FastAPI) -> None:
    """Register the exception handlers that give every error its problem+json shape."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)  # noqa: S101 - registered for Problem only
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
        params = [
            {"name": _location(error["loc"]), "reason": str(error["msg"])} for error in exc.errors()
        ]
        detail = "; ".join(f"{param['name']}: {param['reason']}" for param in params)
        return problem_response(Problem(400, detail, invalid_params=params), request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
        elif exc.status_code == 404 and detail == "Not Found":  # the router's own 404
            detail = f"there is no resource at {request.url.path}"
        return problem_response(Problem(exc.status_code, detail, headers=headers), request)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api_error", path=request.url.path)
        # Answered outside the middleware stack (by ServerErrorMiddleware), so the header the
        # middleware adds to every other response is added here.
        problem = Problem(500, "an unexpected error occurred", headers={"API-Version": app.version})
        return problem_response(problem, request)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)

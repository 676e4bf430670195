"""Request bodies of the REST API must be JSON, said so by their `Content-Type`.

FastAPI reads a body with another media type as raw bytes and then reports a validation error
about the body's shape, or, for some types, parses it as JSON anyway; a client that sent the
wrong format should instead learn exactly that: 415 Unsupported Media Type.
"""

from __future__ import annotations

from starlette.requests import Request

from digibridge.api.problems import Problem

JSON = "application/json"
MERGE_PATCH_JSON = "application/merge-patch+json"
_WITH_BODY = ("POST", "PUT", "PATCH")


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


async def require_json_body(request: Request) -> None:
    """Dependency of every REST route: a POST, PUT or PATCH that carries a body must label it
    `application/json` (a PATCH may also use `application/merge-patch+json`)."""
    if request.method not in _WITH_BODY or not _has_body(request):
        return
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    accepted = (JSON, MERGE_PATCH_JSON) if request.method == "PATCH" else (JSON,)
    if media_type in accepted:
        return
    headers = {"Accept-Patch": ", ".join(accepted)} if request.method == "PATCH" else None
    given = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
    raise Problem(
        415,
        f"the request body must be {' or '.join(accepted)}; got {given}",
        headers=headers,
    )

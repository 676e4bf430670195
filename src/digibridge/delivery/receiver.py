"""`digibridge receive`: a local webhook sink that checks signatures and prints each CloudEvent.

It is the consumer's side of our own contract, so it uses independent code where it can: the
cloudevents SDK (2.x `cloudevents.core`) parses the request, in structured or binary mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digibridge.clock import Clock, SystemClock
from digibridge.delivery.signing import SignatureError, verify


def create_receiver_app(
    secret: str | None,
    out: Callable[[str], None] = print,
    *,
    clock: Clock | None = None,
) -> Starlette:
    """An ASGI app taking POSTed CloudEvents on any path: verify, print via `out`, answer 204.

    Without a secret, signatures are not checked. `OPTIONS` grants the CloudEvents webhook
    validation handshake to any origin (this is a developer's tool).
    """
    now = (clock or SystemClock()).now
    event_format = JSONFormat()

    async def handle(request: Request) -> Response:
        if request.method == "OPTIONS":
            return _handshake(request)
        body = await request.body()
        if secret:
            try:
                verify(secret, request.headers, body, now=now())
            except SignatureError as error:
                return PlainTextResponse(f"signature check failed: {error}\n", status_code=401)
        try:
            event = from_http(HTTPMessage(headers=dict(request.headers), body=body), event_format)
        except (BaseCloudEventException, ValueError, TypeError, KeyError) as error:
            return PlainTextResponse(f"not a CloudEvent: {error}\n", status_code=400)
        document = json.loads(event_format.write(event))
        out(json.dumps(document, indent=2, ensure_ascii=False))
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", handle, methods=["POST", "OPTIONS"])])


def _handshake(request: Request) -> Response:
    headers = {"Allow": "POST, OPTIONS"}
    origin = request.headers.get("webhook-request-origin")
    if origin:
        headers["WebHook-Allowed-Origin"] = origin
        rate = request.headers.get("webhook-request-rate")
        if rate:
            headers["WebHook-Allowed-Rate"] = rate
    return Response(status_code=200, headers=headers)

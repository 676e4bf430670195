"""The HTTP side of `/wus/digilevering`: POST in plain ASGI, GET (`?wsdl`, `?xsd=`) as a route.

A SOAP message is the gateway's hot path, and the web framework's layers (routing, dependency
solving, request and response objects, each middleware's wrapper) cost it more CPU than its own
XML parsing. `InboundSoap` therefore sits in front of the framework and answers a POST to the
endpoint itself; everything else, including the WSDL, goes on to the application. What the
framework's layers gave the POST, it does here: the request's `traceparent`, the `API-Version`
header, and a body read against the size cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from digibridge.tracing import of_request
from digibridge.wus.digilevering import schema_document, wsdl_document
from digibridge.wus.envelope import version_from_content_type
from digibridge.wus.faults import DkCode, SoapFault
from digibridge.wus.inbound import DigileveringEndpoint, SoapAnswer, fault_answer
from digibridge.wus.tls import NO_PEER, PeerIdentity

log = structlog.get_logger("digibridge.wus")


class BodyTooLarge(Exception):
    """The request body passed the configured cap while it was being read."""


async def read_capped(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The request body, refusing (without reading it all) anything over `limit` bytes;
    `declared` is its Content-Length header, if any."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_answer(
    send: Send, answer: SoapAnswer, api_version: str, *, close: bool = False
) -> None:
    body = answer.body
    headers = [
        (b"content-type", answer.content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        (b"api-version", api_version.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class InboundSoap:
    """ASGI middleware: POST `path` is a DigiLevering message for `endpoint`, answered here;
    any other request goes on to `app`. Install it outermost (inside only the framework's
    server-error handler, which still answers an unexpected exception)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        endpoint: DigileveringEndpoint,
        api_version: str,
        identify: Callable[[Scope], PeerIdentity] | None = None,
    ) -> None:
        self.app = app
        self._path = path
        self._endpoint = endpoint
        self._api_version = api_version
        self._identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self._path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = self._endpoint
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        content_type = _text(headers.get(b"content-type"))
        try:
            data = await read_capped(
                receive, headers.get(b"content-length"), endpoint.max_body_bytes
            )
        except BodyTooLarge:
            fault = SoapFault(
                DkCode.INVALID_ENVELOPE,
                f"the message is larger than {endpoint.max_body_bytes} bytes",
                http_status=413,
            )
            log.warning("soap_refused", code=fault.code.value, reason=fault.reason)
            endpoint.refused(fault, started)
            answer = fault_answer(fault, version_from_content_type(content_type))
            # The rest of the body is not read: the connection cannot carry another request.
            await send_answer(send, answer, self._api_version, close=True)
            return
        except ClientDisconnect:
            return  # nobody to answer; nothing was accepted
        answer = await endpoint.handle(
            data,
            content_type=content_type,
            soap_action=_text(headers.get(b"soapaction")),
            peer=self._identify(scope) if self._identify else NO_PEER,
            trace=of_request(scope),
            started=started,
        )
        await send_answer(send, answer, self._api_version)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def service_url(request: Request, public_url: str | None) -> str:
    if public_url:
        return f"{public_url.rstrip('/')}{request.url.path}"
    return str(request.url.replace(query=""))


class WsdlRoute:
    """`GET /wus/digilevering?wsdl` (and `?xsd=NAME`): the service description, its addresses
    pointing at this gateway (or `public_url`)."""

    def __init__(self, public_url: str | None) -> None:
        self._public_url = public_url

    async def get(self, request: Request) -> Response:
        url = service_url(request, self._public_url)
        if "wsdl" in request.query_params or "WSDL" in request.query_params:
            return Response(wsdl_document(url), media_type="text/xml; charset=utf-8")
        name = request.query_params.get("xsd")
        if name is not None:
            document = schema_document(name, url)
            if document is not None:
                return Response(document, media_type="text/xml; charset=utf-8")
        return Response(
            "Use POST for SOAP requests, ?wsdl for the service description.",
            status_code=404,
            media_type="text/plain; charset=utf-8",
        )

"""The baselines' servers, each in its own process: what the simplest possible program does.

    python -m bench._bare ingest PORT          # parse the SOAP body with lxml, answer 204
    python -m bench._bare bridge PORT SINK     # parse, POST a minimal event to SINK, answer 204

No validation, no mapping, no store, no durability: the ceiling digibridge is measured against.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
import uvicorn
from lxml import etree

from digibridge.mapping.engine import event_id

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_KENMERK = etree.XPath("string(//*[local-name()='kenmerkDigilevering'])")


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def ingest(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    etree.fromstring(await _body(receive), _PARSER)
    await _answer(send, 204)


def bridge(sink: str) -> Any:
    """Parse, find the kenmerk, POST `{"id": <the event id digibridge would give>}` on: the
    least a bridge must do for the receiver to know which message arrived. It posts with
    aiohttp on keep-alive connections, as digibridge does: httpx costs several times its CPU
    per request, and would make the ceiling lower than it is."""
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        if session is None:  # inside the running loop, as aiohttp wants
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                timeout=aiohttp.ClientTimeout(total=30),
                skip_auto_headers=("Accept-Encoding",),
            )
        root = etree.fromstring(await _body(receive), _PARSER)
        kenmerk = str(_KENMERK(root))
        event = json.dumps({"id": event_id(kenmerk, "persoon-verhuisd", 0)}).encode()
        async with session.post(sink, data=event) as response:
            await response.read()
            status = 204 if response.ok else 502
        await _answer(send, status)

    return app


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    app = ingest if kind == "ingest" else bridge(argv[2])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off"
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main(sys.argv[1:])

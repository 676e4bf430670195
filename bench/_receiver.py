"""A minimal webhook receiver for the benchmarks, in its own process: answers every POST with
204 on each of the given ports (one uvicorn server per port, one event loop), grants the
CloudEvents validation handshake (`OPTIONS`), and, with `--record`, notes each event's id and
arrival time, served as JSON at `GET /_stats` (for end-to-end latency); `GET /_stats?count`
answers only how many have arrived, cheap enough to poll.

    python -m bench._receiver PORT[,PORT...] [--record]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvicorn

#: Event id -> arrival (wall clock, seconds): only with --record.
ARRIVALS: dict[str, float] = {}
RECORD = False


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    method = scope["method"]
    headers: list[tuple[bytes, bytes]] = []
    status, body = 204, b""
    if method == "OPTIONS":
        origin = dict(scope["headers"]).get(b"webhook-request-origin", b"*")
        headers = [(b"webhook-allowed-origin", origin), (b"webhook-allowed-rate", b"*")]
        status = 200
    elif method == "GET" and scope["path"] == "/_stats":
        stats = (
            {"count": len(ARRIVALS)}
            if scope["query_string"] == b"count"
            else {"arrivals": ARRIVALS}
        )
        status, body = 200, json.dumps(stats).encode()
        headers = [(b"content-type", b"application/json")]
    elif RECORD and method == "POST":
        arrived = time.time()
        document = json.loads(b"".join(chunks))
        for event in document if isinstance(document, list) else [document]:
            ARRIVALS.setdefault(event["id"], arrived)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def main(ports: list[int]) -> None:
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="error",
                access_log=False,
                lifespan="off",
            )
        )
        for port in ports
    ]
    await asyncio.gather(*(server.serve() for server in servers))


if __name__ == "__main__":
    RECORD = "--record" in sys.argv[2:]
    asyncio.run(main([int(port) for port in sys.argv[1].split(",")]))

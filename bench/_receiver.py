"""A minimal webhook receiver for the delivery benchmark, in its own process: answers every
POST with 204 on each of the given ports (one uvicorn server per port, one event loop)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


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
    asyncio.run(main([int(port) for port in sys.argv[1].split(",")]))

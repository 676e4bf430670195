"""The load generator: a lean HTTP/1.1 client on loopback (`bench/_http.py`), bounded in count
and in time.

It runs in the benchmark's own process; what it loads (the gateway, a baseline server) runs in
another, so the two do not share an event loop. On two cores the load generator shares the
machine with what it measures, so it must cost little: an httpx client spent 4-5 ms of CPU per
request here, more than a bare server spends answering it; `_http.py` spends a tenth of that.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from tests.support.soap import envelope, headers_for, sample, with_kenmerk

from bench._http import LeanClient
from digibridge.mapping.engine import event_id

MESSAGE = "brp-verhuizing.xml"
#: The rule the BRP move maps by: its event ids are known before sending.
RULE = "persoon-verhuisd"
SOAP_HEADERS = headers_for(sample(MESSAGE))
#: No run may take longer than this, whatever the counts.
TIME_LIMIT = 120.0


@dataclass(frozen=True)
class Request:
    body: bytes
    #: The id of the event the gateway makes of it.
    event_id: str


def requests(count: int, *, padding: int = 0) -> list[Request]:
    """`count` distinct BRP move messages (new kenmerk and MessageID each), with `padding`
    bytes of extra (unmapped) payload each."""
    built = []
    document = sample(MESSAGE)
    if padding:
        document = padded(document, padding)
    for _ in range(count):
        kenmerk = f"{uuid.uuid4()}@digilevering.nl"
        built.append(Request(envelope(with_kenmerk(document, kenmerk)), event_id(kenmerk, RULE, 0)))
    return built


def padded(document: bytes, size: int) -> bytes:
    """The BRP move with an extra LO GBA category 99 of `size` bytes of elements: valid, and
    ignored by the mapping, so only the cost of carrying it is measured."""
    element = b'<gba:element nummer="9999">' + b"x" * 90 + b"</gba:element>"
    count = max(1, size // len(element))
    category = b'<gba:categorie nummer="99">' + element * count + b"</gba:categorie>"
    marker = b"</gba:gv01>"
    if marker not in document:
        raise ValueError("the sample has no </gba:gv01> to pad before")
    return document.replace(marker, category + marker, 1)


async def post_all(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    headers: dict[str, str] | None = None,
    expect: int | None = 200,
) -> float:
    """Seconds to POST every body with `concurrency` in flight; every answer must be `expect`
    (None: any 2xx)."""
    headers = headers if headers is not None else SOAP_HEADERS
    queue = iter(bodies)
    async with LeanClient(url, headers, connections=concurrency) as client:

        async def worker() -> None:
            for body in queue:
                status, answer = await client.post(body)
                if status != expect if expect is not None else not 200 <= status < 300:
                    raise RuntimeError(f"{url} answered {status}: {answer[:300]!r}")

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), TIME_LIMIT)
        return time.perf_counter() - started


async def paced(
    url: str, batch: Sequence[Request], *, rate: float, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """Open-loop load: request i starts at t0 + i/rate whatever the answers do; the wall-clock
    send time per event id (for end-to-end latency)."""
    headers = headers if headers is not None else SOAP_HEADERS
    sent: dict[str, float] = {}
    async with LeanClient(url, headers, connections=256) as client:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05

        async def one(number: int, request: Request) -> None:
            await asyncio.sleep(max(0.0, start + number / rate - loop.time()))
            sent[request.event_id] = time.time()
            status, _ = await client.post(request.body)
            if status != 200:
                raise RuntimeError(f"{url} answered {status}")

        await asyncio.wait_for(
            asyncio.gather(*(one(n, r) for n, r in enumerate(batch))), TIME_LIMIT
        )
    return sent

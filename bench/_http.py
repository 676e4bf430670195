"""A lean HTTP/1.1 client for the load generator: keep-alive connections, one request at a time
on each, the request line and headers encoded once, answers read by `Content-Length` (or
chunked). Only what loading a loopback server needs; never used by digibridge itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import urlsplit

#: An answer: status code and body.
Answer = tuple[int, bytes]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; the server's answer to the request in flight completes
    `waiter`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answer = self._answer()
        if answer is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(answer)

    def _answer(self) -> Answer | None:
        """The complete answer at the start of the buffer (removed from it), if there is one."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        status = int(head[9:12])
        lines = head.split(b"\r\n")[1:]
        fields = dict(line.split(b":", 1) for line in lines if b":" in line)
        start = end + 4
        if fields.get(b"transfer-encoding", b"").strip() == b"chunked":
            body = _dechunked(self.buffer, start)
            if body is None:
                return None
            content, consumed = body
        else:
            length = int(fields.get(b"content-length", b"0"))
            if len(self.buffer) < start + length:
                return None
            content, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        if fields.get(b"connection", b"").strip() == b"close":
            self.closed = True
        return status, content

    async def exchange(self, request: bytes) -> Answer:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None


def _dechunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body from `start`, and where it ends; None while incomplete."""
    chunks: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            return (b"".join(chunks), trailer_end + 4) if trailer_end >= 0 else None
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None
        chunks.append(bytes(buffer[chunk_start : chunk_start + size]))
        position = chunk_start + size + 2


class LeanClient:
    """POSTs to one URL over at most `connections` keep-alive connections."""

    def __init__(self, url: str, headers: Mapping[str, str], *, connections: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only plain http URLs: {url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)
        self._open: list[_Connection] = []

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for connection in self._open:
            if connection.transport is not None:
                connection.transport.close()

    async def post(self, body: bytes) -> Answer:
        async with self._slots:
            connection = await self._connection()
            request = self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body
            answer = await connection.exchange(request)
            if not connection.closed:
                self._idle.append(connection)
            return answer

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self._open.append(connection)
        return connection

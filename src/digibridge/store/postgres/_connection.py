"""The connection pool and the one way the PostgreSQL store opens a transaction.

Every store method is one transaction on a pooled connection (autocommit off only inside
`transaction()`). psycopg errors become `StoreError` here, in one place, so callers (the SOAP
endpoint answers Fault 0051 on it) never see a driver exception. The pool checks a connection
before lending it, so after a database restart the instances reconnect by themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeAlias

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from digibridge.store.types import StoreError

Connection: TypeAlias = psycopg.AsyncConnection[DictRow]


def ts(value: datetime) -> datetime:
    """`value` as given to the database: aware, in UTC (a naive datetime is a caller's bug)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime given to the store: {value!r}")
    return value.astimezone(UTC)


def opt_ts(value: datetime | None) -> datetime | None:
    return None if value is None else ts(value)


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://…"
    host, db = info.get("host", "localhost"), info.get("dbname", "")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{db}"


def named(url: str) -> str:
    """`url` with `application_name=digibridge` (seen in `pg_stat_activity`), unless it names
    one itself."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return url  # connecting says what is wrong with it
    if "application_name" in given:
        return url
    return psycopg.conninfo.make_conninfo(url, application_name="digibridge")


async def _configure(connection: Connection) -> None:
    await connection.execute("SET TIME ZONE 'UTC'")


class Database:
    """A pool of connections to one PostgreSQL database (and schema, via `search_path`)."""

    def __init__(self, url: str, *, min_size: int, max_size: int, timeout: float) -> None:
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Connection] | None = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def open(self) -> None:
        if self._pool is not None:
            raise StoreError(f"{redacted(self.url)} is already open")
        # One plain connection first: a bad URL or an unreachable server is reported at once,
        # with libpq's own reason, where the pool would only retry until its timeout.
        try:
            probe = await psycopg.AsyncConnection.connect(
                named(self.url), connect_timeout=max(1, round(self._timeout))
            )
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to {redacted(self.url)}: {error}") from error
        await probe.close()
        pool = AsyncConnectionPool(
            named(self.url),
            connection_class=Connection,
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeout,
            configure=_configure,
            check=AsyncConnectionPool.check_connection,
            name="digibridge",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as error:
            await pool.close()
            raise StoreError(f"cannot connect to {redacted(self.url)}: {error}") from error
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection in autocommit mode (for migrations and `LISTEN`-free reads)."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"{redacted(self.url)} is not open")
        try:
            async with pool.connection() as connection:
                yield connection
        except psycopg.Error as error:
            raise StoreError(f"{redacted(self.url)}: {error}") from error

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[Connection]:
        """One transaction. `durable=False` (claims, outcomes) commits without waiting for the
        WAL flush (`synchronous_commit = off`): a database crash may undo the last such commits,
        which only means a lease or an outcome is lost and a delivery is sent again
        (at-least-once holds). Ingest, the commit before an acknowledgement, is always durable."""
        async with self.connection() as connection, connection.transaction():
            if not durable:
                await connection.execute("SET LOCAL synchronous_commit = off")
            yield connection

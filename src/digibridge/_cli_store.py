"""`digibridge store migrate|verify`: move a SQLite installation onto PostgreSQL, and prove it.

Both stores are opened as the gateway opens them first (pending schema migrations applied; the
SQLite file locked, so no gateway writes to it meanwhile), then the copy runs over plain SQL
(`digibridge.store.transfer`). The target must hold no data: merging two stores would mix two
sets of feed positions, sequences and dedupe keys, and a failed run leaves the target empty, so
running it again needs no clean-up. Exit 0 only when every table matches; 1 when one does not
(nothing is committed); 2 when the copy cannot start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from digibridge._cli_config import mask_url
from digibridge.errors import DigibridgeError
from digibridge.store.sqlite import SqliteStore

# PostgreSQL's driver and the copy itself are imported when a command runs: every other
# command, `serve` above all, starts without them.
if TYPE_CHECKING:
    import psycopg

    from digibridge.store.transfer import TableCheck

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"digibridge: {message}", err=True)
    sys.exit(code)


def _sqlite_path(url: str) -> Path:
    if not url.startswith(SQLITE_PREFIX):
        _fail(f"--from must be sqlite:///PATH, not {mask_url(url)}")
    path = Path(url.removeprefix(SQLITE_PREFIX))
    if not path.is_file():
        _fail(f"no SQLite store at {path}")
    # Opening the store applies its pending migrations: never to a file that is not one.
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
    except sqlite3.Error as error:
        _fail(f"{path} is not a SQLite database: {error}")
    if found is None:
        _fail(f"{path} is not a digibridge store (it has no schema_migrations table)")
    return path


def _postgres_url(url: str) -> str:
    if not url.startswith(POSTGRES_PREFIXES):
        _fail(f"--to must be postgresql://…, not {mask_url(url)}")
    return url


@click.group("store")
def store() -> None:
    """Move a store from SQLite to PostgreSQL, and compare two stores."""


_FROM = click.option("--from", "source", required=True, help="sqlite:///PATH of the store.")
_TO = click.option("--to", "target", required=True, help="postgresql://… of the new store.")


@store.command("migrate")
@_FROM
@_TO
def migrate(source: str, target: str) -> None:
    """Copy everything from a SQLite store into an empty PostgreSQL store, then verify it.

    Stop the gateway first (the SQLite file is locked while it runs). The copy is one
    transaction: it is committed only when every table's row count and SHA-256 match.
    """
    path, url = _sqlite_path(source), _postgres_url(target)
    started = time.monotonic()
    checks = _run(path, url, copy=True)
    _report(checks)
    if not all(check.ok for check in checks):
        _fail("the copy does not match its source; nothing was committed", code=1)
    click.echo(
        f"copied and verified in {time.monotonic() - started:.1f} s: start the gateways with"
        f" DIGIBRIDGE_STORE_URL={mask_url(url)}"
    )


@store.command("verify")
@_FROM
@_TO
def verify(source: str, target: str) -> None:
    """Compare a SQLite store with a PostgreSQL store table by table (counts and SHA-256),
    changing no data. Meaningful before any gateway has used the PostgreSQL store."""
    path, url = _sqlite_path(source), _postgres_url(target)
    checks = _run(path, url, copy=False)
    _report(checks)
    if not all(check.ok for check in checks):
        _fail("the stores differ", code=1)
    click.echo("the stores hold the same data")


def _run(path: Path, url: str, *, copy: bool) -> list[TableCheck]:
    import psycopg  # noqa: PLC0415

    from digibridge.store.transfer import TransferError  # noqa: PLC0415

    try:
        return asyncio.run(_opened(path, url, copy=copy))
    except TransferError as error:
        _fail(str(error))
    except (DigibridgeError, psycopg.Error, sqlite3.Error) as error:
        _fail(f"{type(error).__name__}: {error}")


async def _opened(path: Path, url: str, *, copy: bool) -> list[TableCheck]:
    """Bring both schemas up to date, hold the SQLite lock, and compare (after copying)."""
    import psycopg  # noqa: PLC0415

    from digibridge.store.postgres import PostgresStore  # noqa: PLC0415
    from digibridge.store.transfer import TransferError  # noqa: PLC0415

    sqlite_store = SqliteStore(path)
    await sqlite_store.open()
    try:
        # One plain connection first: a refused one is reported at once, not after the pool's
        # patient retries.
        try:
            await (await psycopg.AsyncConnection.connect(url, connect_timeout=10)).close()
        except psycopg.OperationalError as error:
            raise TransferError(f"cannot connect to {mask_url(url)}: {error}") from None
        postgres_store = PostgresStore(url)
        await postgres_store.open()
        await postgres_store.close()
        with _source(path) as source, psycopg.connect(url) as target:
            return _transfer(source, target, copy=copy)
    finally:
        await sqlite_store.close()


@contextlib.contextmanager
def _source(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection in one read transaction: every table from the same snapshot."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    connection.isolation_level = None
    try:
        connection.execute("BEGIN")
        yield connection
    finally:
        connection.close()


def _transfer(
    source: sqlite3.Connection, target: psycopg.Connection[Any], *, copy: bool
) -> list[TableCheck]:
    import psycopg  # noqa: PLC0415

    from digibridge.store import transfer  # noqa: PLC0415

    # One snapshot of the target for the whole comparison, as the source has.
    target.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    target.execute("SET TIME ZONE 'UTC'")
    plans = transfer.plan(source, target)
    if copy:
        try:
            transfer.lock(target, plans)
        except psycopg.errors.LockNotAvailable:
            raise transfer.TransferError(
                "the PostgreSQL store is in use: stop its gateways"
            ) from None
        occupied = transfer.occupied(target, plans)
        if occupied:
            raise transfer.TransferError(
                "the PostgreSQL store already holds data (in "
                + ", ".join(occupied)
                + "); migrate into a new, empty database or schema"
            )
        transfer.copy(source, target, plans, _progress)
    checks = transfer.compare(source, target, plans)
    if copy and all(check.ok for check in checks):
        target.commit()
    else:
        target.rollback()
    return checks


def _progress(table: str, done: int, total: int) -> None:
    click.echo(f"copying {table}: {done}/{total} rows", err=True)


def _report(checks: list[TableCheck]) -> None:
    click.echo(f"{'table':22} {'source':>9} {'target':>9}  {'sha256 source':16}  {'target':16}")
    for check in checks:
        verdict = "ok" if check.ok else "MISMATCH"
        click.echo(
            f"{check.name:22} {check.source_rows:>9} {check.target_rows:>9}  "
            f"{check.source_digest[:16]:16}  {check.target_digest[:16]:16}  {verdict}"
        )

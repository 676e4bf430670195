"""Versioned schema migrations: numbered SQL files applied once each, recorded in a table.

Files live in `migrations/<dialect>/NNNN_name.sql`; the number is the version. A migration and
its `schema_migrations` row commit together, so a crash mid-migration leaves the old version.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING

from digibridge.store.types import StoreError

if TYPE_CHECKING:
    import psycopg

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""

_POSTGRES_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""
#: Serialises migrating instances per schema (transaction-scoped: a crash releases it).
_POSTGRES_LOCK = "SELECT pg_advisory_xact_lock(hashtext('digibridge.migrate:' || current_schema()))"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations shipped for `dialect` (`sqlite`, `postgres`), in version order."""
    folder = resources.files("digibridge.store").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"duplicate migration versions for {dialect}: {versions}")
    return found


def apply_sqlite(connection: sqlite3.Connection, applied_at: datetime) -> list[int]:
    """Apply the pending SQLite migrations, each in its own transaction; the versions applied.

    `connection` must be in autocommit mode (`isolation_level=None`).
    """
    connection.execute(_SQLITE_TABLE)
    done = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
    applied: list[int] = []
    for migration in load_migrations("sqlite"):
        if migration.version in done:
            continue
        try:
            # executescript commits any open transaction first; our BEGIN keeps the script and
            # its bookkeeping row in one transaction.
            connection.executescript("BEGIN IMMEDIATE;\n" + migration.sql)
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, applied_at.isoformat()),
            )
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StoreError(
                f"migration {migration.version:04d}_{migration.name} failed: {error}"
            ) from error
        applied.append(migration.version)
    return applied


async def apply_postgres(
    connection: psycopg.AsyncConnection[object], applied_at: datetime
) -> list[int]:
    """Apply the pending PostgreSQL migrations, each in its own transaction; the versions applied.

    Every transaction first takes an advisory lock for the schema and then reads what is applied,
    so instances starting together wait for each other and each migration runs once. `connection`
    must be in autocommit mode."""
    import psycopg  # noqa: PLC0415 - the driver only for PostgreSQL

    applied: list[int] = []
    try:
        async with connection.transaction():
            await connection.execute(_POSTGRES_LOCK)
            await connection.execute(_POSTGRES_TABLE)
        for migration in load_migrations("postgres"):
            async with connection.transaction():
                await connection.execute(_POSTGRES_LOCK)
                cursor = await connection.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                )
                if await cursor.fetchone() is not None:
                    continue
                # No parameters: the script may hold several statements.
                await connection.execute(migration.sql.encode())
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, applied_at),
                )
            applied.append(migration.version)
    except psycopg.Error as error:
        raise StoreError(f"PostgreSQL migration failed: {error}") from error
    return applied

"""Copying a SQLite store into an empty PostgreSQL store, and proving the copy complete.

The copy goes table by table in SQLite's insertion order (so PostgreSQL's identity columns give
the claim queues the same order), through `COPY ... FROM STDIN` in one target transaction: a
failed or refused run leaves the target as empty as it was. Leases are not copied (no process
holds them any more). Before the commit every table is read back and compared with the source:
row counts, and a SHA-256 over the rows in primary-key order, each value in one canonical
encoding per column kind (a timestamp as UTC microseconds whether stored as ISO text or as
timestamptz, JSON with sorted keys whether text or jsonb, bytes as hex), so both sides hash the
same bytes exactly when they hold the same data. `verify` repeats that comparison on its own.
"""

from __future__ import annotations

import enum
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from digibridge.errors import DigibridgeError

#: Rows read from SQLite per batch; progress is reported once per batch.
BATCH = 2000


class TransferError(DigibridgeError):
    """The copy cannot start or could not finish; nothing was committed to the target."""


class Kind(enum.Enum):
    """How a column's values are compared: the target's type decides."""

    TEXT = "text"
    INTEGER = "integer"
    REAL = "real"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    JSON = "json"
    BYTES = "bytes"


_KINDS = {
    "text": Kind.TEXT,
    "character varying": Kind.TEXT,
    "integer": Kind.INTEGER,
    "bigint": Kind.INTEGER,
    "smallint": Kind.INTEGER,
    "double precision": Kind.REAL,
    "real": Kind.REAL,
    "boolean": Kind.BOOLEAN,
    "timestamp with time zone": Kind.TIMESTAMP,
    "jsonb": Kind.JSON,
    "json": Kind.JSON,
    "bytea": Kind.BYTES,
}


@dataclass(frozen=True)
class TableSpec:
    """A table copied as is, but for renamed columns and columns not carried over."""

    name: str
    #: SQLite column -> PostgreSQL column.
    renamed: tuple[tuple[str, str], ...] = ()
    #: Written as NULL in the target (and compared as NULL): leases of dead processes.
    cleared: tuple[str, ...] = ()


#: Every table with data, parents before children (foreign keys hold at every row).
TABLES = (
    TableSpec("messages"),
    TableSpec("events", renamed=(("seq", "position"),)),
    TableSpec("source_sequences"),
    TableSpec("subscriptions"),
    TableSpec("deliveries", cleared=("lease_owner", "lease_until")),
    TableSpec("attempts"),
    TableSpec("circuits"),
    TableSpec("terugmeldingen"),
    TableSpec("terugmelding_history"),
    TableSpec("terugmelding_keys"),
    TableSpec("dmks_outbox", cleared=("lease_owner", "lease_until")),
)

#: The feed's counter: the highest position ever given, kept when events are purged.
FEED_HEAD = "feed_position"


@dataclass(frozen=True)
class Column:
    source: str
    target: str
    kind: Kind


@dataclass(frozen=True)
class TablePlan:
    spec: TableSpec
    columns: tuple[Column, ...]
    #: Source names of the primary key, in key order: the order rows are hashed in.
    key: tuple[str, ...]

    def column(self, source: str) -> Column:
        return next(column for column in self.columns if column.source == source)


@dataclass(frozen=True)
class TableCheck:
    """One table (or the feed head) compared: rows and digests on each side."""

    name: str
    source_rows: int
    target_rows: int
    source_digest: str
    target_digest: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_digest == self.target_digest


#: Told (table, rows copied so far, rows in all) after every batch.
Progress = Callable[[str, int, int], None]


def plan(source: sqlite3.Connection, target: psycopg.Connection[Any]) -> list[TablePlan]:
    """How each table's columns map; TransferError when the target cannot hold a source column
    (the schemas are of different versions)."""
    plans = []
    for spec in TABLES:
        renamed = dict(spec.renamed)
        info = source.execute(f"PRAGMA table_info({spec.name})").fetchall()
        if not info:
            raise TransferError(
                f"the SQLite store has no table {spec.name}: not a digibridge store"
            )
        target_types = dict(
            target.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s",
                (spec.name,),
            ).fetchall()
        )
        columns = []
        for _cid, name, _type, _notnull, _default, _pk in info:
            target_name = renamed.get(name, name)
            data_type = target_types.get(target_name)
            if data_type is None:
                raise TransferError(
                    f"the PostgreSQL store has no column {spec.name}.{target_name}"
                    f" for SQLite's {name}: are both at the same digibridge version?"
                )
            kind = _KINDS.get(data_type)
            if kind is None:
                raise TransferError(f"{spec.name}.{target_name}: unexpected type {data_type}")
            columns.append(Column(name, target_name, kind))
        key = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        plans.append(TablePlan(spec, tuple(columns), key))
    return plans


def occupied(target: psycopg.Connection[Any], plans: Sequence[TablePlan]) -> list[str]:
    """The target tables that already hold rows."""
    return [
        table.spec.name
        for table in plans
        if target.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table.spec.name))
        ).fetchone()
        == (True,)
    ]


def lock(target: psycopg.Connection[Any], plans: Sequence[TablePlan]) -> None:
    """Keep writers (a gateway started too early) off the target tables until the commit."""
    names = sql.SQL(", ").join(sql.Identifier(table.spec.name) for table in plans)
    target.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE NOWAIT").format(names))


def copy(
    source: sqlite3.Connection,
    target: psycopg.Connection[Any],
    plans: Sequence[TablePlan],
    progress: Progress,
) -> None:
    """Copy every table, then the feed head; inside the caller's target transaction."""
    for table in plans:
        total = _count(source, table.spec.name)
        columns = sql.SQL(", ").join(sql.Identifier(column.target) for column in table.columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table.spec.name), columns
        )
        done = 0
        with target.cursor().copy(statement) as stream:
            for batch in _batches(source, table, order="rowid"):
                for row in batch:
                    stream.write_row(_for_target(table, row))
                done += len(batch)
                progress(table.spec.name, done, total)
        if total == 0:
            progress(table.spec.name, 0, 0)
    target.execute(
        sql.SQL("UPDATE {} SET value = %s").format(sql.Identifier(FEED_HEAD)),
        (source_feed_head(source),),
    )


def compare(
    source: sqlite3.Connection, target: psycopg.Connection[Any], plans: Sequence[TablePlan]
) -> list[TableCheck]:
    """Rows and digests per table on both sides, and the feed head."""
    checks = []
    for table in plans:
        source_rows, source_digest = _digest(_source_rows(source, table), table)
        target_rows, target_digest = _digest(_target_rows(target, table), table)
        checks.append(
            TableCheck(table.spec.name, source_rows, target_rows, source_digest, target_digest)
        )
    head = source_feed_head(source)
    row = target.execute(
        sql.SQL("SELECT value FROM {}").format(sql.Identifier(FEED_HEAD))
    ).fetchone()
    target_head = -1 if row is None else int(row[0])
    checks.append(TableCheck(FEED_HEAD, 1, 1, str(head), str(target_head)))
    return checks


def source_feed_head(source: sqlite3.Connection) -> int:
    """SQLite keeps the highest position ever given in `sqlite_sequence`, even after a purge."""
    row = source.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])


def _count(source: sqlite3.Connection, name: str) -> int:
    row = source.execute(f"SELECT COUNT(*) FROM {name}").fetchone()  # noqa: S608 - our names
    return int(row[0])


def _batches(
    source: sqlite3.Connection, table: TablePlan, *, order: str
) -> Iterator[list[tuple[Any, ...]]]:
    names = ", ".join(column.source for column in table.columns)
    cursor = source.execute(f"SELECT {names} FROM {table.spec.name} ORDER BY {order}")  # noqa: S608
    while batch := cursor.fetchmany(BATCH):
        yield batch


def _for_target(table: TablePlan, row: tuple[Any, ...]) -> list[Any]:
    """A SQLite row as COPY writes it: PostgreSQL parses the text of each value by the column's
    type (ISO timestamps, JSON text, 0/1 booleans); blobs stay bytes."""
    values: list[Any] = []
    for column, value in zip(table.columns, row, strict=True):
        if column.source in table.spec.cleared:
            values.append(None)
        elif column.kind is Kind.BYTES and isinstance(value, str):
            values.append(value.encode())
        else:
            values.append(value)
    return values


def _source_rows(source: sqlite3.Connection, table: TablePlan) -> Iterator[tuple[Any, ...]]:
    for batch in _batches(source, table, order=", ".join(table.key)):
        yield from batch


def _target_rows(target: psycopg.Connection[Any], table: TablePlan) -> Iterator[tuple[Any, ...]]:
    columns = sql.SQL(", ").join(sql.Identifier(column.target) for column in table.columns)
    # Byte order for text keys, as SQLite's BINARY collation compares them.
    order = sql.SQL(", ").join(
        sql.SQL('{} COLLATE "C"' if table.column(name).kind is Kind.TEXT else "{}").format(
            sql.Identifier(table.column(name).target)
        )
        for name in table.key
    )
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        columns, sql.Identifier(table.spec.name), order
    )
    with target.cursor(name=f"digibridge_verify_{table.spec.name}") as cursor:
        cursor.itersize = BATCH
        yield from cursor.execute(query)


def _digest(rows: Iterator[tuple[Any, ...]], table: TablePlan) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for row in rows:
        values = [
            None if column.source in table.spec.cleared else canonical(column.kind, value)
            for column, value in zip(table.columns, row, strict=True)
        ]
        digest.update(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def canonical(kind: Kind, value: Any) -> Any:
    """One encoding per kind, whichever side (and Python type) the value came from."""
    return None if value is None else _CANONICAL[kind](value)


def _timestamp(value: Any) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value: Any) -> str:
    document = json.loads(value) if isinstance(value, str | bytes) else value
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _hex(value: Any) -> str:
    return (value.encode() if isinstance(value, str) else bytes(value)).hex()


_CANONICAL: dict[Kind, Callable[[Any], Any]] = {
    Kind.TIMESTAMP: _timestamp,
    Kind.JSON: _json,
    Kind.BYTES: _hex,
    Kind.BOOLEAN: bool,
    Kind.INTEGER: int,
    Kind.REAL: lambda value: repr(float(value)),
    Kind.TEXT: str,
}

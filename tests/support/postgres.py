"""PostgreSQL for tests: the server on 127.0.0.1:5432 (database `test`, trust auth), one fresh
schema per use so runs and tests never see each other's rows.

`DIGIBRIDGE_TEST_POSTGRES_URL` points elsewhere. When the server cannot be reached the tests that
need it are skipped locally, and fail in CI (`CI` set), where `.ci/run` starts PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

#: The database tests use; schemas are created in it and dropped again.
BASE_URL = os.environ.get(
    "DIGIBRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def store_url_for_tests(schema: str) -> str:
    """`BASE_URL` with `search_path` set to `schema` (through the libpq `options` parameter):
    what `DIGIBRIDGE_STORE_URL` is for a store, or a gateway, living in that schema."""
    separator = "&" if "?" in BASE_URL else "?"
    return f"{BASE_URL}{separator}options={quote(f'-csearch_path={schema}')}"


def unreachable_reason() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        with psycopg.connect(BASE_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL at {BASE_URL} is unreachable: {str(error).strip()}"
    return None


def require_postgres() -> None:
    """Skip (locally) or fail (in CI) the calling test when PostgreSQL is unreachable."""
    reason = unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run PostgreSQL (.ci/run starts it)")
    pytest.skip(f"{reason} (start it to run the PostgreSQL tests)")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new empty schema `test_<random>`, dropped with everything in it afterwards; its URL."""
    require_postgres()
    schema = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(BASE_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield store_url_for_tests(schema)
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )

"""The PostgreSQL store: the `Store` protocol for several digibridge instances on one database."""

from digibridge.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]

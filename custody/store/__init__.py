"""Custody's state: the Store port (``base``) and its adapters for SQLite and PostgreSQL, chosen by URL."""

from __future__ import annotations

from pathlib import Path

from custody.domain.errors import ConfigurationError
from custody.store.base import Store


def open_store(url: str, base_dir: Path) -> Store:
    """Open the store a database URL names: ``sqlite:///path.db`` (relative to ``base_dir``, the configuration
    file's directory) or ``postgresql://user:password@host:port/database`` (``postgres://`` too)."""
    # Each adapter is imported only when it is used, so a SQLite installation never loads psycopg.
    if url.startswith("sqlite:///"):
        from custody.store.sqlite import SqliteStore

        return SqliteStore.from_url(url, base_dir)
    if url.startswith(("postgresql://", "postgres://")):
        from custody.store.postgres import PostgresStore

        return PostgresStore.from_url(url)
    # Only the scheme is named: the rest of a URL may carry a password.
    scheme = url.split(":", 1)[0] if ":" in url else ""
    named = f"the scheme {scheme!r}" if scheme else "no scheme"
    raise ConfigurationError(
        f"the database URL has {named}; write sqlite:///path/to/custody.db or"
        " postgresql://user:password@host:port/database"
    )

"""Throw-away PostgreSQL databases for tests: each one created fresh under a random name and dropped afterwards.

The server is the one CI runs on 127.0.0.1:5432 with trust authentication; ``CUSTODY_TEST_POSTGRES_URL`` names
another maintenance database (the one connected to for CREATE and DROP) when needed.

Creating a database takes a quarter of a second here (PostgreSQL copies and syncs its template), too slow for
one per test across a whole suite. So the store tests share one database created for the session, and each test
gets a fresh schema in it (a few milliseconds), named in its URL's ``search_path``: to custody, whose tables all
live in the first schema of the search path, an empty schema is an empty database.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ADMIN_URL = os.environ.get("CUSTODY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server, as custody is configured with it."""
    parameters = conninfo_to_dict(ADMIN_URL)
    user = parameters.get("user", "postgres")
    host = parameters.get("host", "127.0.0.1")
    port = parameters.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{name}"


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(make_conninfo(ADMIN_URL), autocommit=True)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create ``custody_test_<random hex>``, yield its URL, and drop it with any sessions still open on it."""
    name = f"custody_test_{secrets.token_hex(6)}"
    with admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(name)
    finally:
        with admin_connection() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """Create ``custody_test_<random hex>`` in the database ``url`` names, yield a URL that puts it first on the
    search path, and drop it with everything in it afterwards."""
    name = f"custody_test_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        # Commits in tests need not wait for the disk: nothing here survives a crash of the server anyway, and
        # the wait would dominate the run time of the store's tests.
        yield f"{url}?options={quote(f'-c search_path={name} -c synchronous_commit=off')}"
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

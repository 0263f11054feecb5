"""Fixtures for the store tests. ``store`` and ``database`` run each test that uses them twice: on a fresh
SQLite file and on a fresh PostgreSQL schema (see postgres_databases.py), dropped afterwards. ``db_path`` and
``sqlite_store`` are for the tests of what only SQLite has (its file, its pragmas, its locks)."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from custody.store import open_store
from custody.store.base import Store
from custody.store.sqlite import SqliteStore

from .postgres_databases import postgres_database, postgres_schema

# CUSTODY_TEST_BACKENDS=sqlite runs the suite without a PostgreSQL server, as the end-to-end tests allow.
BACKENDS = os.environ.get("CUSTODY_TEST_BACKENDS", "sqlite,postgresql").split(",")


@dataclass(frozen=True)
class Database:
    """One test database, with what a test needs to reach it past the store: its URL for more stores (in this
    process or another), and raw statements for checking what is stored or what the schema refuses."""

    backend: str
    url: str

    def open(self) -> Store:
        return open_store(self.url, Path("/"))

    @property
    def integrity_error(self) -> type[Exception]:
        return sqlite3.IntegrityError if self.backend == "sqlite" else psycopg.IntegrityError

    def rows(self, query: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``query`` (with ``?`` placeholders) on a connection of its own and return the rows as dicts."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as connection:
                connection.row_factory = sqlite3.Row
                return [dict(row) for row in connection.execute(query, parameters).fetchall()]
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as connection:
            return connection.execute(_placeholders(query), parameters).fetchall()

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> None:
        """Run one statement (with ``?`` placeholders) past the store, committing it when it succeeds."""
        if self.backend == "sqlite":
            connection = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                connection.execute("PRAGMA foreign_keys = ON")
                connection.execute(statement, parameters)
            finally:
                connection.close()
            return
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(_placeholders(statement), parameters)


def _placeholders(query: str) -> str:
    return re.sub(r"\?", "%s", query)


@pytest.fixture(scope="session")
def postgres_session_database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'custody.db'}")
        return
    with postgres_schema(request.getfixturevalue("postgres_session_database")) as url:
        yield Database("postgresql", url)


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    opened = database.open()
    yield opened
    opened.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "custody.db"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(db_path)
    yield opened
    opened.close()

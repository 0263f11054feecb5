"""The database file itself: schema versions, durability settings, and failures to write it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.domain.errors import ConfigurationError, StoreUnavailable
from custody.domain.keys import KeyState
from custody.domain.requests import RequestState
from custody.store.migrate import latest_version, load_migrations, split_statements
from custody.store.sqlite import SqliteStore

from .helpers import later, make_key, make_message_request, sign_message


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    """This file tests what only SQLite has, so its store is always a SQLite file."""
    return sqlite_store


def _table_names(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
        ).fetchall()
    return {row[0] for row in rows}


def test_fresh_database_reaches_the_current_version(store: SqliteStore, db_path: Path) -> None:
    assert latest_version() >= 1
    assert store.schema_version() == latest_version()
    assert {"schema_version", "keys", "requests", "requests_by_state", "requests_by_key"} <= _table_names(
        db_path
    )
    with sqlite3.connect(db_path) as connection:
        versions = [
            row[0] for row in connection.execute("SELECT version FROM schema_version ORDER BY version")
        ]
    assert versions == list(range(1, latest_version() + 1))


def test_reopening_is_idempotent(db_path: Path) -> None:
    first = SqliteStore(db_path)
    test_key = make_key("ops")
    first.insert_key(test_key.key)
    first.close()

    for _ in range(3):
        again = SqliteStore(db_path)
        try:
            assert again.schema_version() == latest_version()
            assert again.list_keys() == [test_key.key]
        finally:
            again.close()
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == latest_version()


def test_many_stores_opening_a_fresh_file_at_once_migrate_it_once(db_path: Path) -> None:
    start = threading.Barrier(8)
    opened: list[SqliteStore] = []
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait(timeout=30)
        try:
            opened.append(SqliteStore(db_path))
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in opened:
        store.close()

    assert failures == []
    assert len(opened) == 8
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == latest_version()


def test_newer_schema_is_refused(db_path: Path) -> None:
    SqliteStore(db_path).close()
    newer = latest_version() + 5
    with sqlite3.connect(db_path) as connection:
        connection.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (newer,))

    with pytest.raises(
        ConfigurationError,
        match=f"the database schema is version {newer} but this custody knows up to {latest_version()}",
    ):
        SqliteStore(db_path)


def test_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [migration.version for migration in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_initial.sql"
    assert all(migration.statements for migration in migrations)


def test_split_statements_drops_comments_and_blank_statements() -> None:
    script = (
        "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT);\n\n  -- another\nCREATE INDEX i ON a (x);\n"
    )
    assert split_statements(script) == ("CREATE TABLE a (x TEXT)", "CREATE INDEX i ON a (x)")


def test_connections_use_wal_and_full_sync(store: SqliteStore, db_path: Path) -> None:
    # Several connections at once, so the check covers more than the first one the pool made.
    with store._connection("check the settings") as first, store._connection("check the settings") as second:
        for connection in (first, second):
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2
            assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    # WAL is a property of the file too: a plain connection sees it.
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_closed_store_refuses_work(db_path: Path) -> None:
    store = SqliteStore(db_path)
    store.close()
    with pytest.raises(StoreUnavailable, match="the store has been closed"):
        store.list_keys()


def test_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(
        StoreUnavailable, match=r"could not open the database .*: the database file cannot be opened"
    ):
        SqliteStore(tmp_path / "missing" / "custody.db")


def test_not_a_database_is_unavailable(db_path: Path) -> None:
    db_path.write_bytes(
        b"this is not a SQLite database file, just some text long enough to look like a header"
    )
    with pytest.raises(StoreUnavailable, match="the file is not a SQLite database"):
        SqliteStore(db_path)


def test_write_lock_held_elsewhere_times_out_as_unavailable(db_path: Path) -> None:
    store = SqliteStore(db_path, busy_timeout_seconds=0.2)
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="stayed locked by another writer") as raised:
            store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(1))
        assert "UPDATE" not in str(raised.value)
        # Readers are not blocked by a writer in WAL mode.
        assert store.get_key("ops") == test_key.key
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(2)).state is KeyState.FROZEN
    store.close()


@pytest.fixture
def immutable_file() -> Iterator[list[Path]]:
    """Paths made immutable with chattr +i, which stops writes even for root; undone after the test."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed, and running as root makes chmod useless for a read-only file")
    marked: list[Path] = []
    yield marked
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_database_refuses_writes_and_changes_nothing(
    db_path: Path, immutable_file: list[Path]
) -> None:
    store = SqliteStore(db_path)
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = make_message_request(test_key, state=RequestState.APPROVED)
    store.insert_request(request)
    store.close()
    made = subprocess.run(["chattr", "+i", str(db_path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"this file system does not support immutable files: {made.stderr.decode().strip()}")
    immutable_file.append(db_path)
    with pytest.raises(PermissionError):
        db_path.open("r+b").close()  # proves the file really is unwritable, root or not

    read_only = SqliteStore(db_path)
    try:
        assert read_only.get_request(request.request_id) == request
        with pytest.raises(
            StoreUnavailable, match="could not change the request's state: the database is read-only"
        ):
            read_only.transition_request(
                request.request_id,
                RequestState.APPROVED,
                RequestState.SIGNED,
                later(1),
                result=sign_message(test_key),
            )
        with pytest.raises(StoreUnavailable, match="could not store the key: the database is read-only"):
            read_only.insert_key(make_key("treasury").key)
        with pytest.raises(StoreUnavailable, match="the database is read-only"):
            read_only.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(1))
    finally:
        read_only.close()

    subprocess.run(["chattr", "-i", str(db_path)], check=True)
    immutable_file.remove(db_path)
    writable = SqliteStore(db_path)
    try:
        assert writable.get_request(request.request_id) == request
        assert writable.list_keys() == [test_key.key]
    finally:
        writable.close()


def test_in_memory_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="an in-memory SQLite database cannot hold custody's state"):
        SqliteStore(":memory:")


def test_from_url_relative_and_absolute(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    relative = SqliteStore.from_url("sqlite:///state/custody.db", base_dir=tmp_path)
    try:
        assert relative.path == tmp_path / "state" / "custody.db"
        assert relative.path.exists()
    finally:
        relative.close()

    absolute_path = tmp_path / "absolute.db"
    absolute = SqliteStore.from_url(f"sqlite:///{absolute_path}", base_dir=Path("/nonexistent"))
    try:
        assert absolute.path == absolute_path
        assert absolute_path.exists()
    finally:
        absolute.close()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("postgresql://localhost/custody", "is not a SQLite URL"),
        ("sqlite://custody.db", "is not a SQLite URL"),
        ("custody.db", "is not a SQLite URL"),
        ("sqlite:///", "does not name a file"),
        ("sqlite:///dir/", "does not name a file"),
        ("sqlite:///custody.db?mode=ro", "has options"),
        ("sqlite:///:memory:", "in-memory SQLite database"),
    ],
)
def test_from_url_refuses_other_urls(tmp_path: Path, url: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        SqliteStore.from_url(url, base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []

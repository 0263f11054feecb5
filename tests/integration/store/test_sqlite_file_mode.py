"""The SQLite database and its -wal and -shm files are readable by their owner alone, whatever the umask, and
an existing file that others may read is named at start."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.store.sqlite import SqliteStore

from .helpers import make_key


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that takes nothing away, so only the mode custody asks for decides who may read its files."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_wal_and_shm_files_are_private(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "custody.db"
    store = SqliteStore(path)
    try:
        store.insert_key(make_key("ops").key)
        companions = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        # All three exist while the store is open, and SQLite made the two companions after the database.
        assert {file: _mode(file) for file in companions} == {file: 0o600 for file in companions}
        # Another process on the same file (an operator's sqlite3 shell, a backup) does not widen them.
        with sqlite3.connect(path) as connection:
            assert connection.execute("SELECT count(*) FROM keys").fetchone() == (1,)
        assert {file: _mode(file) for file in companions} == {file: 0o600 for file in companions}
    finally:
        store.close()


def test_an_existing_database_that_others_may_read_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "custody.db"
    SqliteStore(path).close()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="custody.store.sqlite"):
        store = SqliteStore(path)
    try:
        warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
        assert warnings == [
            f"the database file {path} has mode 0644, so users other than its owner may read or change it;"
            f" run chmod 600 {path}"
        ]
        # A warning, not a refusal: the store serves, and the file keeps the mode its operator gave it.
        store.insert_key(make_key("ops").key)
        assert _mode(path) == 0o644
    finally:
        store.close()


def test_a_private_existing_database_opens_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "custody.db"
    SqliteStore(path).close()
    with caplog.at_level(logging.WARNING, logger="custody.store.sqlite"):
        SqliteStore(path).close()
    assert [record for record in caplog.records if record.name == "custody.store.sqlite"] == []

"""The SQLite store: keys, requests, approvals, policy versions, nonces and the audit log in one local file.

The file runs in WAL mode with ``synchronous=FULL``, so a committed transaction survives a power cut and
readers never block the single writer. Every write starts with ``BEGIN IMMEDIATE``: the write lock is taken
before anything is read, so two writers (threads, or processes sharing the file) serialize cleanly and the
second one reads the first one's result rather than a stale snapshot. A busy timeout makes a writer wait for
the lock instead of failing at once.

The operations and the pool of connections are custody.store.sql's, shared with the PostgreSQL store; this
module supplies what is SQLite's own: opening a connection (WAL, pragmas), ``BEGIN IMMEDIATE``, SQLite's
result codes in error messages, and where SQLite keeps its table names. The pool matters because the daemon
calls the store from many gRPC worker threads, and a SQLite connection must be used by one thread at a time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from custody.domain.errors import ConfigurationError, InternalError, StoreUnavailable
from custody.store.migrate import load_migrations
from custody.store.sql import SqlStore, SqlTransaction

log = logging.getLogger(__name__)

_URL_PREFIX = "sqlite:///"
# SQLite keeps a database's write-ahead log and its shared-memory index next to it, in files named so.
_COMPANION_SUFFIXES = ("-wal", "-shm")
_DEFAULT_BUSY_TIMEOUT_SECONDS = 10.0
_WAL_SWITCH_RETRY_SECONDS = 0.01

# Primary SQLite result codes (the low byte of an extended code) that say the database cannot be used now.
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_NOMEM = 7
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


class _SqliteTransaction(SqlTransaction):
    """Every store operation, run on one SQLite connection."""

    _SCHEMA_VERSION_TABLE_QUERY = (
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    )

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__()
        self._connection = connection
        # Inside a write transaction the connection is in BEGIN IMMEDIATE from the start; reads run without one.
        self._in_write_transaction = connection.in_transaction

    def check_open(self, action: str) -> None:
        super().check_open(action)
        # On some errors (a full disk, an I/O error) SQLite rolls the whole transaction back by itself. A caller
        # that caught that error and went on would otherwise run its next statements in autocommit mode, each
        # committed alone; PostgreSQL refuses statements after a failed one, and so does this check.
        if self._in_write_transaction and not self._connection.in_transaction:
            raise StoreUnavailable(
                f"could not {action}: SQLite rolled back this transaction after an earlier error, and nothing"
                " of it was saved"
            )

    def translated_errors(self, action: str) -> AbstractContextManager[None]:
        return _translated_errors(action)

    def _execute(self, query: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._connection.execute(query, parameters)


class SqliteStore(SqlStore[sqlite3.Connection]):
    """The Store port over one SQLite file; safe to share between threads and between processes."""

    _transaction_type = _SqliteTransaction

    def __init__(
        self, path: Path | str, *, busy_timeout_seconds: float = _DEFAULT_BUSY_TIMEOUT_SECONDS
    ) -> None:
        if str(path) == ":memory:":
            # Each pooled connection would get its own empty in-memory database, and nothing would persist.
            raise ConfigurationError("an in-memory SQLite database cannot hold custody's state; name a file")
        super().__init__()
        self._path = Path(path)
        self._busy_timeout_seconds = busy_timeout_seconds
        # The class new connections are made of: sqlite3's own, unless a test has swapped in a subclass that
        # fails chosen writes on purpose (custody.testing.store_faults).
        self._connection_factory: type[sqlite3.Connection] = sqlite3.Connection
        _warn_about_shared_files(self._path)
        _create_private_file(self._path)
        self._prepare_schema(load_migrations())

    @classmethod
    def from_url(cls, url: str, base_dir: Path) -> SqliteStore:
        """Open the store a ``sqlite:///`` URL names.

        ``sqlite:///state.db`` is relative to ``base_dir`` (the configuration file's directory) and
        ``sqlite:////var/lib/custody/state.db`` is absolute, as in SQLAlchemy's URLs.
        """
        if not url.startswith(_URL_PREFIX):
            raise ConfigurationError(
                f"the database URL {url!r} is not a SQLite URL; write sqlite:///relative/path.db"
                " or sqlite:////absolute/path.db"
            )
        location = url[len(_URL_PREFIX) :]
        if not location or location.endswith("/"):
            raise ConfigurationError(f"the database URL {url!r} does not name a file")
        if "?" in location or "#" in location:
            raise ConfigurationError(f"the database URL {url!r} has options, which custody does not support")
        if location == ":memory:":
            # Passed on as it is, so that the constructor refuses it with its reason.
            return cls(location)
        path = Path(location)
        return cls(path if path.is_absolute() else base_dir / path)

    @property
    def path(self) -> Path:
        return self._path

    # What the shared store needs of SQLite.

    @property
    def _location(self) -> str:
        return str(self._path)

    def _open(self, action: str) -> sqlite3.Connection:
        # Opening a file is the same whatever it is for, so the message names the file rather than ``action``.
        with _translated_errors(f"open the database {self._path}"):
            # Autocommit mode: this class issues BEGIN and COMMIT itself, so it knows where every transaction
            # starts and ends. The timeout is SQLite's busy timeout. check_same_thread is off because a pooled
            # connection moves between threads, one at a time.
            connection = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_seconds,
                isolation_level=None,
                check_same_thread=False,
                factory=self._connection_factory,
            )
            try:
                connection.row_factory = sqlite3.Row
                journal_mode = self._enable_wal(connection)
                if journal_mode.lower() != "wal":
                    raise ConfigurationError(
                        f"the database {self._path} cannot use write-ahead logging (its journal mode stays"
                        f" {journal_mode}); keep it on a local file system"
                    )
                connection.execute("PRAGMA synchronous = FULL")
                connection.execute("PRAGMA foreign_keys = ON")
            except BaseException:
                connection.close()
                raise
        return connection

    def _reusable(self, connection: sqlite3.Connection) -> bool:
        # A connection left inside a transaction (a failed ROLLBACK) is not safe to hand to the next caller.
        # One made before the connection factory last changed is closed, so the change reaches every later
        # operation; the pool's lock, held here, orders this against the change.
        return not connection.in_transaction and type(connection) is self._connection_factory

    def _was_broken(self, connection: sqlite3.Connection) -> bool:
        # A SQLite connection is an open file in this process, not a link to a server that can go away, so a
        # failure on it is never a reason to run the work again on another.
        return False

    @contextmanager
    def _locked_connection(self, action: str) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN IMMEDIATE``, committed when the block ends; any failure, including of
        COMMIT itself, rolls back."""
        with self._connection(action) as connection, _translated_errors(action):
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                _rollback_quietly(connection)
                raise

    def _new_transaction(self, connection: sqlite3.Connection) -> SqlTransaction:
        return _SqliteTransaction(connection)

    # Internals.

    def _use_connection_factory(self, factory: type[sqlite3.Connection]) -> None:
        """Make every later operation run on a connection of class ``factory``; for custody.testing.store_faults."""
        with self._lock:
            self._connection_factory = factory
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _enable_wal(self, connection: sqlite3.Connection) -> str:
        """Switch the file to write-ahead logging (a no-op once it is) and return the journal mode in force.

        Switching a new file's journal mode needs an exclusive lock, and SQLite reports a conflict over it at
        once instead of calling the busy handler; so when several stores open a fresh file together, the ones
        that meet the conflict retry here for as long as the busy timeout allows.
        """
        deadline = time.monotonic() + self._busy_timeout_seconds
        while True:
            try:
                return str(connection.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if _primary_code(exc) != _SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(_WAL_SWITCH_RETRY_SECONDS)


def _create_private_file(path: Path) -> None:
    """Create the database file, empty, with mode 0600 if it does not exist yet.

    SQLite would create it 0644 (less the umask), readable by every local user, and gives its -wal and -shm
    files the database file's own mode; creating the file first, for its owner alone, keeps all three
    private whatever the umask. An empty file is a valid, empty SQLite database.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # An existing database (or another process that just made it) keeps its file and mode.
    except OSError:
        # A missing directory or a refused permission: SQLite's own open, next, fails the same way and
        # reports it in custody's words, naming the file.
        return
    os.close(descriptor)


def _warn_about_shared_files(path: Path) -> None:
    """Warn, at start, about each existing database file that the owner's group or others may read or write.

    The daemon still starts: files made before custody created them 0600 were 0644, and refusing them would
    keep an upgraded daemon from coming back. The warning names the command that fixes it.
    """
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in _COMPANION_SUFFIXES)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except OSError:
            continue  # Not there (yet): it will be created private, or SQLite reports why it cannot be.
        if mode & 0o077:
            log.warning(
                "the database file %s has mode %04o, so users other than its owner may read or change it;"
                " run chmod 600 %s",
                candidate,
                mode,
                candidate,
            )


def _rollback_quietly(connection: sqlite3.Connection) -> None:
    # The error that caused the rollback is the one worth reporting; SQLite may already have rolled back on
    # its own (after SQLITE_FULL, for example), in which case ROLLBACK fails harmlessly.
    try:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
    except sqlite3.Error:
        pass


@contextmanager
def _translated_errors(action: str) -> Iterator[None]:
    """Turn sqlite3 exceptions into custody's errors, with a plain sentence and no SQL in the message."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        # The operations check uniqueness and references inside the transaction before writing, so a
        # constraint failure here means the database holds something this code did not put there.
        raise InternalError(f"could not {action}: the database refused it as inconsistent") from exc
    except (sqlite3.ProgrammingError, sqlite3.InterfaceError) as exc:
        raise InternalError(f"could not {action} because of an internal error in the store") from exc
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"could not {action}: {_describe(exc)}") from exc


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _describe(exc: sqlite3.Error) -> str:
    primary = _primary_code(exc)
    descriptions = {
        _SQLITE_BUSY: "the database stayed locked by another writer past the busy timeout",
        _SQLITE_LOCKED: "the database stayed locked by another writer past the busy timeout",
        _SQLITE_READONLY: "the database is read-only",
        _SQLITE_PERM: "the database file may not be written",
        _SQLITE_IOERR: "reading or writing the database file failed (disk I/O error)",
        _SQLITE_FULL: "the disk holding the database is full",
        _SQLITE_CANTOPEN: "the database file cannot be opened",
        _SQLITE_CORRUPT: "the database file is damaged",
        _SQLITE_NOTADB: "the file is not a SQLite database",
        _SQLITE_NOMEM: "SQLite ran out of memory",
    }
    if primary in descriptions:
        return descriptions[primary]
    if "no such table" in str(exc) or "no such column" in str(exc):
        return "the database does not have custody's tables"
    if "already exists" in str(exc):
        return "the database already holds a table or index of that name that custody did not create"
    return "the database reported an error"

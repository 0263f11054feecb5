"""The SQLite store: keys and signing requests in one local database file.

The file runs in WAL mode with ``synchronous=FULL``, so a committed transaction survives a power cut and
readers never block the single writer. Every write starts with ``BEGIN IMMEDIATE``: the write lock is taken
before anything is read, so two writers (threads, or processes sharing the file) serialize cleanly and the
second one reads the first one's result rather than a stale snapshot. A busy timeout makes a writer wait for
the lock instead of failing at once.

Connections come from a small pool: the daemon calls the store from many gRPC worker threads, and a SQLite
connection must be used by one thread at a time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custody.domain.errors import (
    Aborted,
    AlreadyExists,
    ConfigurationError,
    InternalError,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    WrongState,
)
from custody.domain.keys import Key, KeyState
from custody.domain.requests import (
    INITIAL_STATES,
    RequestState,
    SignatureResult,
    SigningRequest,
    check_transition,
)
from custody.store import codec
from custody.store.migrate import load_migrations

_URL_PREFIX = "sqlite:///"
_DEFAULT_BUSY_TIMEOUT_SECONDS = 10.0
_MAX_IDLE_CONNECTIONS = 16
_MAX_LIST_LIMIT = 1000

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


class SqliteStore:
    """The Store port over one SQLite file; safe to share between threads and between processes."""

    def __init__(
        self, path: Path | str, *, busy_timeout_seconds: float = _DEFAULT_BUSY_TIMEOUT_SECONDS
    ) -> None:
        if str(path) == ":memory:":
            # Each pooled connection would get its own empty in-memory database, and nothing would persist.
            raise ConfigurationError("an in-memory SQLite database cannot hold custody's state; name a file")
        self._path = Path(path)
        self._busy_timeout_seconds = busy_timeout_seconds
        self._lock = threading.Lock()
        # Writers in this process queue on this lock rather than on SQLite's file lock: SQLite's busy handler
        # sleeps in growing steps while it waits, which under many threads turns microseconds of waiting into
        # tens of milliseconds. Other processes sharing the file still meet the busy timeout.
        self._write_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._migrations = load_migrations()
        try:
            with self._connection() as connection, _translated_errors("read the database schema version"):
                self._migrate(connection)
        except BaseException:
            self.close()
            raise

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

    # Keys.

    def insert_key(self, key: Key) -> None:
        row = codec.key_to_row(key)
        with self._write_transaction("store the key") as connection:
            if _exists(connection, "SELECT 1 FROM keys WHERE label = ?", key.label):
                raise AlreadyExists(f"a key labelled {key.label} already exists")
            if _exists(connection, "SELECT 1 FROM keys WHERE key_id = ?", key.key_id):
                raise AlreadyExists(f"a key with id {key.key_id} already exists")
            _insert(connection, "keys", codec.KEY_COLUMNS, row)

    def get_key(self, label: str) -> Key | None:
        with self._read("read the key") as connection:
            row = connection.execute("SELECT * FROM keys WHERE label = ?", (label,)).fetchone()
        return None if row is None else codec.key_from_row(row)

    def list_keys(self) -> Sequence[Key]:
        with self._read("list the keys") as connection:
            rows = connection.execute("SELECT * FROM keys ORDER BY label").fetchall()
        return [codec.key_from_row(row) for row in rows]

    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        updated_at = codec.encode_time(at, "at")
        with self._write_transaction("change the key's state") as connection:
            cursor = connection.execute(
                "UPDATE keys SET state = ?, updated_at = ? WHERE label = ? AND state = ?",
                (new.value, updated_at, label, expected.value),
            )
            if cursor.rowcount == 0:
                current = connection.execute("SELECT state FROM keys WHERE label = ?", (label,)).fetchone()
                if current is None:
                    raise NotFound(f"there is no key labelled {label}")
                raise Aborted(
                    f"the key {label} is no longer in state {expected.value}; it is now {current[0]}"
                )
            row = connection.execute("SELECT * FROM keys WHERE label = ?", (label,)).fetchone()
        return codec.key_from_row(row)

    # Requests.

    def insert_request(self, request: SigningRequest) -> None:
        if request.state not in INITIAL_STATES:
            allowed = ", ".join(sorted(state.value for state in INITIAL_STATES))
            raise WrongState(
                f"a request cannot be created in state {request.state.value}; it starts in one of {allowed}"
            )
        if request.result is not None:
            raise InvalidInput("a new request cannot already carry a signature", field="result")
        row = codec.request_to_row(request)
        with self._write_transaction("store the request") as connection:
            if _exists(connection, "SELECT 1 FROM requests WHERE request_id = ?", request.request_id):
                raise AlreadyExists(f"a request with id {request.request_id} already exists")
            key_row = connection.execute(
                "SELECT label FROM keys WHERE key_id = ?", (request.key_id,)
            ).fetchone()
            if key_row is None:
                raise NotFound(f"there is no key with id {request.key_id}")
            if key_row[0] != request.key_label:
                raise InvalidInput(
                    f"the key with id {request.key_id} is labelled {key_row[0]}, not {request.key_label}",
                    field="key_label",
                )
            _insert(connection, "requests", codec.REQUEST_COLUMNS, row)

    def get_request(self, request_id: str) -> SigningRequest | None:
        with self._read("read the request") as connection:
            row = connection.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else codec.request_from_row(row)

    def list_requests(
        self,
        *,
        state: RequestState | None = None,
        key_label: str | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> Sequence[SigningRequest]:
        conditions: list[str] = []
        parameters: list[Any] = []
        # Each filter pairs a fixed column name with a bound value, so the query text never contains input.
        for column, value in (
            ("state", None if state is None else state.value),
            ("key_label", key_label),
            ("requester", requester),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        parameters.append(min(max(limit, 1), _MAX_LIST_LIMIT))
        query = f"SELECT * FROM requests {where} ORDER BY created_at DESC, request_id DESC LIMIT ?"  # noqa: S608
        with self._read("list the requests") as connection:
            rows = connection.execute(query, parameters).fetchall()
        return [codec.request_from_row(row) for row in rows]

    def transition_request(
        self,
        request_id: str,
        expected: RequestState,
        new: RequestState,
        at: datetime,
        *,
        result: SignatureResult | None = None,
        error: str | None = None,
    ) -> SigningRequest:
        check_transition(expected, new)
        if new is RequestState.SIGNED and result is None:
            raise InvalidInput("a request can only become SIGNED together with its signature", field="result")
        if new is not RequestState.SIGNED and result is not None:
            raise InvalidInput(f"a request becoming {new.value} cannot carry a signature", field="result")
        updated_at = codec.encode_time(at, "at")
        with self._write_transaction("change the request's state") as connection:
            if result is None:
                cursor = connection.execute(
                    "UPDATE requests SET state = ?, updated_at = ?, error = COALESCE(?, error)"
                    " WHERE request_id = ? AND state = ?",
                    (new.value, updated_at, error, request_id, expected.value),
                )
            else:
                cursor = connection.execute(
                    "UPDATE requests SET state = ?, updated_at = ?, error = COALESCE(?, error),"
                    " signature = ?, signed_tx = ?, tx_hash = ?"
                    " WHERE request_id = ? AND state = ?",
                    (
                        new.value,
                        updated_at,
                        error,
                        result.signature,
                        result.signed_tx,
                        result.tx_hash,
                        request_id,
                        expected.value,
                    ),
                )
            if cursor.rowcount == 0:
                current = connection.execute(
                    "SELECT state FROM requests WHERE request_id = ?", (request_id,)
                ).fetchone()
                if current is None:
                    raise NotFound(f"there is no request with id {request_id}")
                raise Aborted(
                    f"the request {request_id} is no longer in state {expected.value}; it is now {current[0]}"
                )
            row = connection.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        return codec.request_from_row(row)

    # Housekeeping.

    def schema_version(self) -> int:
        with self._read("read the schema version") as connection:
            return _stored_version(connection)

    def close(self) -> None:
        """Close every connection; connections in use close when their operation ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # Internals.

    def _migrate(self, connection: sqlite3.Connection) -> None:
        latest = self._migrations[-1].version
        self._refuse_newer(_stored_version(connection), latest)
        for migration in self._migrations:
            if migration.version <= _stored_version(connection):
                continue
            with self._transaction(connection, f"upgrade the database schema to version {migration.version}"):
                # Another process may have applied this migration while this one waited for the write lock.
                stored = _stored_version(connection)
                self._refuse_newer(stored, latest)
                if stored >= migration.version:
                    continue
                for statement in migration.statements:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (migration.version, codec.encode_time(datetime.now(UTC), "applied_at")),
                )

    def _refuse_newer(self, stored: int, latest: int) -> None:
        if stored > latest:
            raise ConfigurationError(
                f"the database schema is version {stored} but this custody knows up to {latest};"
                f" upgrade custody before using {self._path}"
            )

    def _open(self) -> sqlite3.Connection:
        with _translated_errors(f"open the database {self._path}"):
            # Autocommit mode: this class issues BEGIN and COMMIT itself, so it knows where every transaction
            # starts and ends. The timeout is SQLite's busy timeout. check_same_thread is off because a pooled
            # connection moves between threads, one at a time.
            connection = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_seconds,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                connection.row_factory = sqlite3.Row
                journal_mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(journal_mode).lower() != "wal":
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

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the store has been closed")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._open()
        try:
            yield connection
        finally:
            self._release(connection)

    def _release(self, connection: sqlite3.Connection) -> None:
        # A connection left inside a transaction (a failed ROLLBACK) is not safe to hand to the next caller.
        reusable = not connection.in_transaction
        with self._lock:
            if reusable and not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._connection() as connection, _translated_errors(action):
            yield connection

    @contextmanager
    def _write_transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._connection() as connection, self._transaction(connection, action):
            yield connection

    @contextmanager
    def _transaction(self, connection: sqlite3.Connection, action: str) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE ... COMMIT``; any failure, including of COMMIT itself, rolls back."""
        with _translated_errors(action):
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield
                connection.execute("COMMIT")
            except BaseException:
                _rollback_quietly(connection)
                raise


def _stored_version(connection: sqlite3.Connection) -> int:
    has_table = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table is None:
        return 0
    version = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    return 0 if version is None else int(version)


def _exists(connection: sqlite3.Connection, query: str, value: str) -> bool:
    return connection.execute(query, (value,)).fetchone() is not None


def _insert(connection: sqlite3.Connection, table: str, columns: Sequence[str], row: dict[str, Any]) -> None:
    # Table and column names come from this package's own constants, never from input.
    query = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608
    connection.execute(query, [row[column] for column in columns])


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
        # The methods check uniqueness and references inside the transaction before writing, so a constraint
        # failure here means the database holds something this code did not put there.
        raise InternalError(f"could not {action}: the database refused it as inconsistent") from exc
    except (sqlite3.ProgrammingError, sqlite3.InterfaceError) as exc:
        raise InternalError(f"could not {action} because of an internal error in the store") from exc
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"could not {action}: {_describe(exc)}") from exc


def _describe(exc: sqlite3.Error) -> str:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
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
    return "the database reported an error"

"""The PostgreSQL store: the same state as the SQLite store, shared by several custody replicas.

Every write transaction begins by taking one PostgreSQL advisory lock, the same for every custody process on
the database, and holds it until it commits or rolls back. So writers serialize across threads, processes and
machines exactly as SQLite's single writer does: reading the audit head and appending after it, checking that
an approver has not yet voted and recording the vote, or checking a nonce and reserving it, each happen with
no other writer in between. Custody writes a few rows per request, so one writer at a time costs nothing that
matters, and it keeps the rules the same on both databases. Reads take no lock; each is one statement on an
autocommit connection and sees one consistent snapshot.

Every round trip of a write transaction is time the write lock is held, and the lock bounds how many requests
all replicas together sign per second. So writes whose answer nobody reads (seals, audit events, nonce
reservations) are held back and sent, in one pipeline, with the next statement that needs an answer or with
the COMMIT: an auto-signed request makes 5 round trips fewer. Their errors are raised there, naming the
write that failed, and the transaction then commits nothing.

Transactions run at READ COMMITTED, where every statement sees everything committed before it started: a
writer that waited for the lock reads the previous writer's result, never a snapshot from before it.

The operations and the pool of connections are custody.store.sql's, shared with the SQLite store; this module
supplies what is PostgreSQL's own: connecting (the URL, timeouts), the advisory lock, psycopg's placeholders
and errors, and where PostgreSQL lists its tables. A connection that breaks (the server restarted, or an
administrator ended the session) is dropped, and the next call opens a new one; a call that meets a broken
pooled connection before it has done anything retries once on a fresh connection, so a server restart costs
the calls in flight, not the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

from custody.domain.errors import AlreadyExists, ConfigurationError, InternalError, StoreUnavailable
from custody.store.migrate import for_postgresql, load_migrations
from custody.store.sql import SqlStore, SqlTransaction

_URL_SCHEMES = ("postgresql://", "postgres://")
# The advisory lock every custody writer takes first: "custody!" in ASCII, a 64-bit key unlikely to collide
# with another application's advisory locks on a shared server.
WRITE_LOCK_KEY = 0x637573746F647921
# The key is this module's own constant, never input, so it is written into the statement.
_BEGIN_AND_LOCK = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"
_DEFAULT_LOCK_TIMEOUT_SECONDS = 10.0
_DEFAULT_CONNECT_TIMEOUT_SECONDS = 5
# Pipelines need libpq 14 or later; with an older one every write is sent at once, as a round trip of its own.
_PIPELINES = psycopg.Pipeline.is_supported()


@dataclass(frozen=True)
class _HeldBack:
    """A write sent later: what it does (for messages), the statement in psycopg's style, its parameters."""

    action: str
    statement: str
    parameters: Sequence[Any]


class _Connection(psycopg.Connection[DictRow]):
    """A psycopg connection that carries the writes its transaction holds back until they are sent."""

    held_back: list[_HeldBack]


@dataclass(frozen=True)
class _Server:
    """Where the database is, for messages: host, port and database name, never the user or password."""

    host: str
    port: str
    dbname: str

    def __str__(self) -> str:
        return f"the PostgreSQL database {self.dbname} at {self.host}:{self.port}"


class _PostgresTransaction(SqlTransaction):
    """Every store operation, run on one PostgreSQL connection."""

    # Read from pg_tables like any table, so that the statement's fresh snapshot applies: name lookups such as
    # to_regclass() go through a catalog cache that a transaction which waited for the write lock may not have
    # refreshed, and would miss the table another replica created meanwhile.
    _SCHEMA_VERSION_TABLE_QUERY = (
        "SELECT 1 FROM pg_catalog.pg_tables"
        " WHERE schemaname = current_schema() AND tablename = 'schema_version'"
    )

    def __init__(self, connection: _Connection, server: _Server) -> None:
        super().__init__()
        self._connection = connection
        self._server = server

    def translated_errors(self, action: str) -> AbstractContextManager[None]:
        return _translated_errors(action, self._server)

    def _execute(self, query: str, parameters: Sequence[Any] = ()) -> psycopg.Cursor[DictRow]:
        # The parameters are always passed, even when there are none, so that psycopg reads the placeholders
        # and the ``%%`` in every statement alike.
        statement = _in_psycopg_style(query)
        if self._connection.held_back:
            return _send_held_back(self._connection, self._server, statement, parameters)
        return self._connection.execute(statement, parameters)

    def _execute_later(self, action: str, query: str, parameters: Sequence[Any] = ()) -> None:
        if not (self.holds_write_lock and _PIPELINES):
            self._execute(query, parameters)
            return
        self._connection.held_back.append(_HeldBack(action, _in_psycopg_style(query), parameters))


def _in_psycopg_style(query: str) -> str:
    # The queries are written with ``?`` placeholders; psycopg's are ``%s``, and with them a literal ``%`` is
    # written ``%%``.
    return query.replace("%", "%%").replace("?", "%s")


def _send_held_back(
    connection: _Connection, server: _Server, statement: str, parameters: Sequence[Any]
) -> psycopg.Cursor[DictRow]:
    """Send the writes ``connection`` holds back and then ``statement``, in one pipeline: one round trip. The
    server runs them in order and skips the rest after an error, which is raised naming the write that met it
    (``statement``'s own error is left to the caller, which knows what it does)."""
    held, connection.held_back = connection.held_back, []
    cursors: list[psycopg.Cursor[DictRow]] = []
    try:
        with connection.pipeline():
            cursors.extend(connection.execute(write.statement, write.parameters) for write in held)
            last = connection.execute(statement, parameters)
    except psycopg.Error:
        if connection.broken:
            # The connection was lost: no write is to blame, and the caller says what it was doing.
            raise
        # A write that ran has its command tag; the first one without it is the one that failed.
        failed = next(
            (
                write
                for index, write in enumerate(held)
                if index >= len(cursors) or not cursors[index].statusmessage
            ),
            None,
        )
        if failed is None:
            raise
        with _translated_errors(failed.action, server):
            raise
    return last


class PostgresStore(SqlStore[_Connection]):
    """The Store port over one PostgreSQL database; safe to share between threads, processes and replicas."""

    _transaction_type = _PostgresTransaction

    def __init__(
        self,
        url: str,
        *,
        lock_timeout_seconds: float = _DEFAULT_LOCK_TIMEOUT_SECONDS,
        connect_timeout_seconds: int = _DEFAULT_CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        # The URL may carry a password, so it is kept for connecting and never put into a message.
        self._url = url
        self._server, self._connect_options = _parse_url(url, connect_timeout_seconds)
        self._lock_timeout = f"{max(1, round(lock_timeout_seconds * 1000))}ms"
        self._prepare_schema(tuple(for_postgresql(migration) for migration in load_migrations()))

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Open the store a ``postgresql://user[:password]@host[:port]/dbname[?options]`` URL names
        (``postgres://`` too); the options are libpq's (``sslmode=verify-full``, ``sslrootcert=...``)."""
        return cls(url)

    def __repr__(self) -> str:
        return f"PostgresStore({self._server})"

    # What the shared store needs of PostgreSQL.

    @property
    def _location(self) -> str:
        return str(self._server)

    def _open(self, action: str) -> _Connection:
        try:
            connection = _Connection.connect(
                self._url, autocommit=True, row_factory=dict_row, **self._connect_options
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"could not {action}: {_describe_connect_failure(exc, self._server)}"
            ) from exc
        connection.held_back = []
        try:
            with _translated_errors(action, self._server):
                # A writer waits this long for the write lock before giving up, as SQLite's busy timeout does.
                connection.execute("SELECT set_config('lock_timeout', %s, false)", (self._lock_timeout,))
        except BaseException:
            connection.close()
            raise
        return connection

    def _reusable(self, connection: _Connection) -> bool:
        # A connection that broke, or was left inside a transaction (a failed ROLLBACK) or holding writes back,
        # is not safe to hand to the next caller.
        return (
            not connection.closed
            and connection.info.transaction_status == TransactionStatus.IDLE
            and not connection.held_back
        )

    def _was_broken(self, connection: _Connection) -> bool:
        """Whether ``connection`` failed because it is gone; if so, the idle ones went with the same server
        restart, so they are closed too and the retry opens a fresh connection."""
        if not connection.broken:
            return False
        with self._lock:
            idle, self._idle = self._idle, []
        for other in idle:
            other.close()
        return True

    @contextmanager
    def _locked_connection(self, action: str) -> Iterator[_Connection]:
        """A connection inside ``BEGIN`` holding the write lock, committed when the block ends and rolled back
        when it raises (including when COMMIT itself fails)."""
        for last_attempt in (False, True):
            with self._connection(action) as connection:
                try:
                    with _translated_errors(action, self._server):
                        self._begin(connection)
                except StoreUnavailable:
                    _rollback_quietly(connection)
                    # Nothing has been done yet, so a connection that broke while it sat in the pool (the
                    # server restarted) is replaced and the transaction begun again.
                    if last_attempt or not self._was_broken(connection):
                        raise
                    continue
                try:
                    yield connection
                    with _translated_errors(action, self._server):
                        self._commit(connection, action)
                except BaseException:
                    _rollback_quietly(connection)
                    raise
                return

    def _new_transaction(self, connection: _Connection) -> SqlTransaction:
        return _PostgresTransaction(connection, self._server)

    # Internals.

    def _begin(self, connection: _Connection) -> None:
        # One round trip for both: a statement without parameters goes by the simple query protocol, which
        # takes several. Each round trip of a write transaction is time the write lock is held, which bounds
        # how many requests all replicas together sign per second.
        connection.execute(_BEGIN_AND_LOCK)

    def _commit(self, connection: _Connection, action: str) -> None:
        # PostgreSQL answers COMMIT in a transaction where a statement failed with a silent ROLLBACK. A
        # caller who caught that statement's error and carried on must not believe the rest was kept.
        if connection.info.transaction_status == TransactionStatus.INERROR:
            raise InternalError(
                f"could not {action}: a statement in the transaction failed, so nothing in it was kept"
            )
        if connection.held_back:
            # The held-back writes go with the COMMIT; if one fails, the server skips the COMMIT.
            _send_held_back(connection, self._server, "COMMIT", ())
        else:
            connection.execute("COMMIT")


def _parse_url(url: str, connect_timeout_seconds: int) -> tuple[_Server, dict[str, Any]]:
    """Where the URL points, for messages, and the connection options custody adds unless the URL sets them."""
    if not url.startswith(_URL_SCHEMES):
        raise ConfigurationError(
            "the database URL is not a PostgreSQL URL; write postgresql://user:password@host:port/database"
        )
    try:
        parameters = conninfo_to_dict(url)
    except psycopg.Error:
        # libpq's message may quote the URL, password and all, so it is not passed on.
        raise ConfigurationError(
            "the PostgreSQL database URL is malformed; write postgresql://user:password@host:port/database"
            " with any options as libpq's ?name=value parameters"
        ) from None
    dbname = parameters.get("dbname")
    if not dbname:
        raise ConfigurationError(
            "the PostgreSQL database URL names no database; write postgresql://user:password@host:port/database"
        )
    server = _Server(
        host=str(parameters.get("host") or "localhost"),
        port=str(parameters.get("port") or "5432"),
        dbname=str(dbname),
    )
    options: dict[str, Any] = {}
    if "connect_timeout" not in parameters:
        options["connect_timeout"] = connect_timeout_seconds
    if "application_name" not in parameters:
        # Shown in pg_stat_activity, so an operator can tell custody's sessions from others.
        options["application_name"] = "custody"
    return server, options


def _rollback_quietly(connection: _Connection) -> None:
    # The error that caused the rollback is the one worth reporting; on a broken connection the server has
    # already rolled back on its own, and ROLLBACK fails harmlessly. Writes held back were never sent.
    connection.held_back = []
    try:
        if not connection.closed and connection.info.transaction_status != TransactionStatus.IDLE:
            connection.execute("ROLLBACK")
    except psycopg.Error:
        pass


@contextmanager
def _translated_errors(action: str, server: _Server) -> Iterator[None]:
    """Turn psycopg exceptions into custody's errors, with a plain sentence and no SQL or URL in the message."""
    try:
        yield
    except pg_errors.UniqueViolation as exc:
        # The methods check uniqueness under the write lock before writing, so this is a writer that did not
        # take the lock; the database's constraint is the backstop.
        raise AlreadyExists(
            f"could not {action}: the database already holds a record with that identity"
        ) from exc
    except psycopg.IntegrityError as exc:
        raise InternalError(f"could not {action}: the database refused it as inconsistent") from exc
    except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn) as exc:
        raise StoreUnavailable(f"could not {action}: {server} does not have custody's tables") from exc
    except pg_errors.InsufficientPrivilege as exc:
        raise StoreUnavailable(
            f"could not {action}: the database user lacks a privilege custody needs on {server}"
        ) from exc
    except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
        raise StoreUnavailable(
            f"could not {action}: another writer held {server} locked past the lock timeout"
        ) from exc
    except pg_errors.ReadOnlySqlTransaction as exc:
        raise StoreUnavailable(f"could not {action}: {server} is read-only (a standby?)") from exc
    except pg_errors.DiskFull as exc:
        raise StoreUnavailable(f"could not {action}: the disk holding {server} is full") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"could not {action}: the connection to {server} was lost") from exc
    except (psycopg.ProgrammingError, psycopg.InterfaceError, psycopg.DataError) as exc:
        raise InternalError(f"could not {action} because of an internal error in the store") from exc
    except psycopg.Error as exc:
        raise StoreUnavailable(f"could not {action}: {server} reported an error") from exc


def _describe_connect_failure(exc: psycopg.Error, server: _Server) -> str:
    """Why a connection could not be opened, in words that carry no password (libpq's own never do, but a
    summary keeps messages short and predictable)."""
    reason = str(exc)
    if "does not exist" in reason:
        return f"{server} does not exist"
    if "authentication failed" in reason or "pg_hba.conf" in reason:
        return f"{server} refused custody's credentials"
    if "timeout expired" in reason:
        return f"{server} did not answer in time"
    return f"{server} cannot be reached"

"""The SQLite store: keys, requests, approvals, policy versions, nonces and the audit log in one local file.

The file runs in WAL mode with ``synchronous=FULL``, so a committed transaction survives a power cut and
readers never block the single writer. Every write starts with ``BEGIN IMMEDIATE``: the write lock is taken
before anything is read, so two writers (threads, or processes sharing the file) serialize cleanly and the
second one reads the first one's result rather than a stale snapshot. A busy timeout makes a writer wait for
the lock instead of failing at once.

Each operation is written once, on ``_SqliteTransaction``, which runs against one connection. ``transaction()``
hands one out inside ``BEGIN IMMEDIATE ... COMMIT`` for the use cases that must do several things atomically;
the store's own methods run one operation in a transaction of its own (or, for reads, as one statement).

Connections come from a small pool: the daemon calls the store from many gRPC worker threads, and a SQLite
connection must be used by one thread at a time.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, chain_event
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
    FINAL_STATES,
    GOVERNANCE_KINDS,
    INITIAL_STATES,
    SIGNING_KINDS,
    Approval,
    PayloadKind,
    RequestState,
    SignatureResult,
    SigningRequest,
    check_transition,
)
from custody.store import codec
from custody.store.base import NonceUse, StoredPolicy, StoreTransaction, VelocityUsage
from custody.store.delegating import TransactionDelegatingStore
from custody.store.migrate import load_migrations

_URL_PREFIX = "sqlite:///"
_DEFAULT_BUSY_TIMEOUT_SECONDS = 10.0
_MAX_IDLE_CONNECTIONS = 16
_MAX_LIST_LIMIT = 1000
_MAX_AUDIT_LIST_LIMIT = 10000
# Events read per statement while streaming the whole log: enough to make per-statement cost negligible,
# few enough that memory stays small however long the log grows.
_AUDIT_BATCH_SIZE = 5000
_WAL_SWITCH_RETRY_SECONDS = 0.01

# SQL lists of the kinds, built from the domain's own sets so that the queries follow the domain. They hold
# fixed enum values only, never input, so writing them into query text is safe.
_SIGNING_KINDS_SQL = ", ".join(
    f"'{kind.value}'" for kind in sorted(SIGNING_KINDS, key=lambda kind: kind.value)
)
_GOVERNANCE_KINDS_SQL = ", ".join(
    f"'{kind.value}'" for kind in sorted(GOVERNANCE_KINDS, key=lambda kind: kind.value)
)
# The final states a request reaches without a signature: its nonce is free again for another request.
_UNSIGNED_FINAL_STATES = FINAL_STATES - {RequestState.SIGNED}

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

_Parameters = ParamSpec("_Parameters")
_Result = TypeVar("_Result")
_Operation = Callable[Concatenate["_SqliteTransaction", _Parameters], _Result]

# What each operation does, in words for error messages ("could not store the key: ..."), by method name.
_ACTIONS: dict[str, str] = {}


def _operation(
    action: str,
) -> Callable[[_Operation[_Parameters, _Result]], _Operation[_Parameters, _Result]]:
    """Mark a transaction method as a store operation: it refuses to run on an ended transaction, and SQLite's
    errors inside it become custody's errors that say what was being done."""

    def decorate(method: _Operation[_Parameters, _Result]) -> _Operation[_Parameters, _Result]:
        _ACTIONS[method.__name__] = action

        @functools.wraps(method)
        def run(
            transaction: _SqliteTransaction, /, *args: _Parameters.args, **kwargs: _Parameters.kwargs
        ) -> _Result:
            transaction.check_open(action)
            with _translated_errors(action):
                return method(transaction, *args, **kwargs)

        return run

    return decorate


class _SqliteTransaction:
    """Every store operation, run on one connection.

    Inside ``SqliteStore.transaction()`` the connection is in ``BEGIN IMMEDIATE``, so the operations see each
    other's writes and commit together. Once the block ends the object refuses further use: its connection has
    gone back to the pool, where another thread may be using it.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._open = True

    def end(self) -> None:
        self._open = False

    def check_open(self, action: str) -> None:
        if not self._open:
            raise InternalError(
                f"could not {action}: the store transaction it was called on has already ended"
            )

    # Keys.

    @_operation("store the key")
    def insert_key(self, key: Key) -> None:
        row = codec.key_to_row(key)
        if self._exists("SELECT 1 FROM keys WHERE label = ?", key.label):
            raise AlreadyExists(f"a key labelled {key.label} already exists")
        if self._exists("SELECT 1 FROM keys WHERE key_id = ?", key.key_id):
            raise AlreadyExists(f"a key with id {key.key_id} already exists")
        self._insert("keys", codec.KEY_COLUMNS, row)

    @_operation("read the key")
    def get_key(self, label: str) -> Key | None:
        row = self._connection.execute("SELECT * FROM keys WHERE label = ?", (label,)).fetchone()
        return None if row is None else codec.key_from_row(row)

    @_operation("list the keys")
    def list_keys(self) -> Sequence[Key]:
        rows = self._connection.execute("SELECT * FROM keys ORDER BY label").fetchall()
        return [codec.key_from_row(row) for row in rows]

    @_operation("change the key's state")
    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        updated_at = codec.encode_time(at, "at")
        cursor = self._connection.execute(
            "UPDATE keys SET state = ?, updated_at = ? WHERE label = ? AND state = ?",
            (new.value, updated_at, label, expected.value),
        )
        if cursor.rowcount == 0:
            current = self._connection.execute("SELECT state FROM keys WHERE label = ?", (label,)).fetchone()
            if current is None:
                raise NotFound(f"there is no key labelled {label}")
            raise Aborted(f"the key {label} is no longer in state {expected.value}; it is now {current[0]}")
        row = self._connection.execute("SELECT * FROM keys WHERE label = ?", (label,)).fetchone()
        return codec.key_from_row(row)

    # Requests.

    @_operation("store the request")
    def insert_request(self, request: SigningRequest) -> None:
        if request.state not in INITIAL_STATES:
            allowed = ", ".join(sorted(state.value for state in INITIAL_STATES))
            raise WrongState(
                f"a request cannot be created in state {request.state.value}; it starts in one of {allowed}"
            )
        if request.result is not None:
            raise InvalidInput("a new request cannot already carry a signature", field="result")
        _check_key_reference(request)
        row = codec.request_to_row(request)
        if self._exists("SELECT 1 FROM requests WHERE request_id = ?", request.request_id):
            raise AlreadyExists(f"a request with id {request.request_id} already exists")
        if request.key_id:
            key_row = self._connection.execute(
                "SELECT label FROM keys WHERE key_id = ?", (request.key_id,)
            ).fetchone()
            if key_row is None:
                raise NotFound(f"there is no key with id {request.key_id}")
            if key_row[0] != request.key_label:
                raise InvalidInput(
                    f"the key with id {request.key_id} is labelled {key_row[0]}, not {request.key_label}",
                    field="key_label",
                )
        if request.replaces is not None and self._request_row(request.replaces) is None:
            raise NotFound(
                f"request {request.request_id} replaces request {request.replaces}, which does not exist"
            )
        self._insert("requests", codec.REQUEST_COLUMNS, row)

    @_operation("read the request")
    def get_request(self, request_id: str) -> SigningRequest | None:
        row = self._request_row(request_id)
        return None if row is None else codec.request_from_row(row)

    @_operation("list the requests")
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
        parameters.append(_clamp(limit))
        query = f"SELECT * FROM requests {where} ORDER BY created_at DESC, request_id DESC LIMIT ?"  # noqa: S608
        return self._requests(query, parameters)

    @_operation("change the request's state")
    def transition_request(
        self,
        request_id: str,
        expected: RequestState,
        new: RequestState,
        at: datetime,
        *,
        result: SignatureResult | None = None,
        error: str | None = None,
        not_before: datetime | None = None,
    ) -> SigningRequest:
        check_transition(expected, new)
        if new is RequestState.SIGNED and result is None:
            raise InvalidInput("a request can only become SIGNED together with its signature", field="result")
        if new is not RequestState.SIGNED and result is not None:
            raise InvalidInput(f"a request becoming {new.value} cannot carry a signature", field="result")
        if new is not RequestState.APPROVED and not_before is not None:
            raise InvalidInput(
                f"only a request becoming APPROVED takes a time-lock, not one becoming {new.value}",
                field="not_before",
            )
        updated_at = codec.encode_time(at, "at")
        not_before_text = codec.encode_optional_time(not_before, "not_before")
        # Every transition drops the signing claim: it only ever guards an APPROVED request, and a request
        # leaving APPROVED is done with signing. A governance request in APPROVED has taken effect and is
        # final, which the last condition enforces even though the state machine lets signing requests on.
        cursor = self._connection.execute(
            "UPDATE requests SET state = ?, updated_at = ?, error = COALESCE(?, error),"  # noqa: S608
            " signature = COALESCE(?, signature), signed_tx = COALESCE(?, signed_tx),"
            " tx_hash = COALESCE(?, tx_hash), not_before = COALESCE(?, not_before),"
            " claim_holder = NULL, claim_until = NULL"
            " WHERE request_id = ? AND state = ?"
            f" AND NOT (state = 'APPROVED' AND kind IN ({_GOVERNANCE_KINDS_SQL}))",
            (
                new.value,
                updated_at,
                error,
                None if result is None else result.signature,
                None if result is None else result.signed_tx,
                None if result is None else result.tx_hash,
                not_before_text,
                request_id,
                expected.value,
            ),
        )
        if cursor.rowcount == 0:
            current = self._connection.execute(
                "SELECT state, kind FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if current is None:
                raise NotFound(f"there is no request with id {request_id}")
            if current["state"] == expected.value:
                raise WrongState(
                    f"request {request_id} is a {current['kind']} request that took effect when it was approved"
                    " and can no longer change"
                )
            raise Aborted(
                f"the request {request_id} is no longer in state {expected.value}; it is now {current['state']}"
            )
        if new in _UNSIGNED_FINAL_STATES:
            # The request will never be signed, so the nonce it held goes back for another request to take.
            self._connection.execute("DELETE FROM nonces WHERE request_id = ?", (request_id,))
        row = self._request_row(request_id)
        return codec.request_from_row(row)

    @_operation("claim the request for signing")
    def claim_signing(self, request_id: str, claimant: str, now: datetime, lease_until: datetime) -> bool:
        if lease_until <= now:
            raise InvalidInput("a signing claim must last beyond now", field="lease_until")
        now_text = codec.encode_time(now, "now")
        # Besides a free (or lapsed) claim, the request must be due to be signed: a signing kind, its
        # time-lock passed and its lifetime not, so that the claim is the one gate before the HSM.
        cursor = self._connection.execute(
            "UPDATE requests SET claim_holder = ?, claim_until = ?"  # noqa: S608
            " WHERE request_id = ? AND state = 'APPROVED'"
            f" AND kind IN ({_SIGNING_KINDS_SQL})"
            " AND (claim_holder IS NULL OR claim_until < ?)"
            " AND (not_before IS NULL OR not_before <= ?)"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (
                claimant,
                codec.encode_time(lease_until, "lease_until"),
                request_id,
                now_text,
                now_text,
                now_text,
            ),
        )
        return cursor.rowcount == 1

    @_operation("find the requests due for signing")
    def due_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        now_text = codec.encode_time(now, "now")
        return self._requests(
            "SELECT * FROM requests WHERE state = 'APPROVED'"  # noqa: S608
            f" AND kind IN ({_SIGNING_KINDS_SQL})"
            " AND (not_before IS NULL OR not_before <= ?)"
            " AND (claim_holder IS NULL OR claim_until < ?)"
            " AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY created_at, request_id LIMIT ?",
            (now_text, now_text, now_text, _clamp(limit)),
        )

    @_operation("find the expired requests")
    def expired_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        return self._requests(
            "SELECT * FROM requests"  # noqa: S608
            " WHERE (state = 'PENDING_APPROVAL'"
            f" OR (state = 'APPROVED' AND kind IN ({_SIGNING_KINDS_SQL})))"
            " AND expires_at IS NOT NULL AND expires_at <= ?"
            " ORDER BY expires_at, request_id LIMIT ?",
            (codec.encode_time(now, "now"), _clamp(limit)),
        )

    @_operation("measure the key's recent use")
    def velocity_usage(self, key_label: str, since: datetime) -> VelocityUsage:
        rows = self._connection.execute(
            "SELECT value_wei FROM requests WHERE key_label = ? AND state IN ('APPROVED', 'SIGNED')"  # noqa: S608
            f" AND kind IN ({_SIGNING_KINDS_SQL}) AND created_at >= ?",
            (key_label, codec.encode_time(since, "since")),
        ).fetchall()
        # Summed here rather than in SQL: the values are decimal text because they exceed 64-bit integers.
        return VelocityUsage(count=len(rows), total_value=sum(int(row[0]) for row in rows))

    @_operation("find the requests waiting under an older policy")
    def pending_requests_before_version(self, version: int) -> Sequence[SigningRequest]:
        return self._requests(
            "SELECT * FROM requests WHERE policy_version < ?"  # noqa: S608
            " AND (state = 'PENDING_APPROVAL'"
            f" OR (state = 'APPROVED' AND kind IN ({_SIGNING_KINDS_SQL})))"
            " ORDER BY created_at, request_id",
            (version,),
        )

    # Approvals.

    @_operation("store the approval")
    def insert_approval(self, approval: Approval) -> None:
        row = codec.approval_to_row(approval)
        if self._request_row(approval.request_id) is None:
            raise NotFound(f"there is no request with id {approval.request_id}")
        if self._connection.execute(
            "SELECT 1 FROM approvals WHERE request_id = ? AND approver = ?",
            (approval.request_id, approval.approver),
        ).fetchone():
            raise AlreadyExists(
                f"{approval.approver} already gave a verdict on request {approval.request_id}"
            )
        self._insert("approvals", codec.APPROVAL_COLUMNS, row)

    @_operation("list the approvals")
    def list_approvals(self, request_id: str) -> Sequence[Approval]:
        rows = self._connection.execute(
            "SELECT * FROM approvals WHERE request_id = ? ORDER BY created_at, approver", (request_id,)
        ).fetchall()
        return [codec.approval_from_row(row) for row in rows]

    # Nonces.

    @_operation("read the nonce's holder")
    def nonce_holder(self, key_id: str, chain_id: int, scope: str, nonce: int) -> NonceUse | None:
        row = self._connection.execute(
            "SELECT * FROM nonces WHERE key_id = ? AND chain_id = ? AND scope = ? AND nonce = ?",
            (key_id, chain_id, scope, codec.encode_nonce(nonce)),
        ).fetchone()
        return None if row is None else codec.nonce_from_row(row)

    @_operation("reserve the nonce")
    def reserve_nonce(self, use: NonceUse) -> None:
        row = codec.nonce_to_row(use)
        if self._request_row(use.request_id) is None:
            raise NotFound(f"there is no request with id {use.request_id} to hold nonce {use.nonce}")
        try:
            self._insert("nonces", codec.NONCE_COLUMNS, row)
        except sqlite3.IntegrityError:
            # The request exists, so what the database refused is a second holder for the nonce: its primary
            # key is the check, and this names the request that holds it.
            holder = self.nonce_holder(use.key_id, use.chain_id, use.scope, use.nonce)
            if holder is None:
                raise
            raise AlreadyExists(
                f"nonce {use.nonce} of key {use.key_id} on chain {use.chain_id} is already held by request"
                f" {holder.request_id}"
            ) from None

    @_operation("hand the nonce to the replacement request")
    def move_nonce(self, use: NonceUse, from_request_id: str) -> None:
        row = codec.nonce_to_row(use)
        if self._request_row(use.request_id) is None:
            raise NotFound(f"there is no request with id {use.request_id} to take over nonce {use.nonce}")
        cursor = self._connection.execute(
            "UPDATE nonces SET request_id = ?, payload_hash = ?, created_at = ?"
            " WHERE key_id = ? AND chain_id = ? AND scope = ? AND nonce = ? AND request_id = ?",
            (
                row["request_id"],
                row["payload_hash"],
                row["created_at"],
                row["key_id"],
                row["chain_id"],
                row["scope"],
                row["nonce"],
                from_request_id,
            ),
        )
        if cursor.rowcount == 0:
            holder = self.nonce_holder(use.key_id, use.chain_id, use.scope, use.nonce)
            held = "nobody holds it" if holder is None else f"request {holder.request_id} holds it"
            raise Aborted(
                f"nonce {use.nonce} of key {use.key_id} on chain {use.chain_id} is not held by request"
                f" {from_request_id}; {held}"
            )

    # Audit log.

    @_operation("write the audit event")
    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        details = codec.encode_audit_details(draft)
        # The head is read inside the caller's BEGIN IMMEDIATE, so no other writer can append between this
        # read and the insert: the chain never forks, and the primary key on sequence backs that up.
        head = self._connection.execute(
            "SELECT sequence, hash FROM audit_events ORDER BY sequence DESC LIMIT 1"
        ).fetchone()
        sequence, previous_hash = (1, GENESIS_HASH) if head is None else (head[0] + 1, bytes(head[1]))
        row = codec.audit_event_to_row(chain_event(draft, sequence, previous_hash), details)
        self._insert("audit_events", codec.AUDIT_COLUMNS, row)
        # Returned as it reads back from the database (UTC time, details parsed from the stored JSON), so the
        # caller holds exactly what a later reader will see.
        return codec.audit_event_from_row(row)

    @_operation("read the head of the audit log")
    def audit_head(self) -> AuditEvent | None:
        row = self._connection.execute("SELECT * FROM audit_events ORDER BY sequence DESC LIMIT 1").fetchone()
        return None if row is None else codec.audit_event_from_row(row)

    @_operation("list the audit events")
    def list_audit_events(
        self,
        *,
        request_id: str | None = None,
        actor: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_sequence: int = 0,
        limit: int = 1000,
    ) -> Sequence[AuditEvent]:
        # Each filter pairs a fixed condition with a bound value, so the query text never contains input.
        # Times are fixed-width UTC text, so comparing the text compares the times.
        conditions = ["sequence > ?"]
        parameters: list[Any] = [after_sequence]
        for condition, value in (
            ("request_id = ?", request_id),
            ("actor = ?", actor),
            ("kind = ?", kind),
            ("time >= ?", codec.encode_optional_time(since, "since")),
            ("time < ?", codec.encode_optional_time(until, "until")),
        ):
            if value is not None:
                conditions.append(condition)
                parameters.append(value)
        parameters.append(min(max(limit, 1), _MAX_AUDIT_LIST_LIMIT))
        query = (
            f"SELECT * FROM audit_events WHERE {' AND '.join(conditions)}"  # noqa: S608
            " ORDER BY sequence LIMIT ?"
        )
        # Converted row by row from the cursor, so a long page never exists twice in memory.
        return [codec.audit_event_from_row(row) for row in self._connection.execute(query, parameters)]

    @_operation("read the last audit event of a kind")
    def last_audit_event_of_kind(self, kind: str) -> AuditEvent | None:
        row = self._connection.execute(
            "SELECT * FROM audit_events WHERE kind = ? ORDER BY sequence DESC LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else codec.audit_event_from_row(row)

    # Policy versions.

    @_operation("read the active policy")
    def active_policy(self) -> StoredPolicy | None:
        row = self._connection.execute(
            "SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1"
        ).fetchone()
        return None if row is None else codec.policy_from_row(row)

    @_operation("activate the policy")
    def activate_policy(self, policy: StoredPolicy) -> None:
        row = codec.policy_to_row(policy)
        if self._connection.execute(
            "SELECT 1 FROM policy_versions WHERE version = ?", (policy.version,)
        ).fetchone():
            raise AlreadyExists(f"policy version {policy.version} already exists")
        active = self._connection.execute("SELECT MAX(version) FROM policy_versions").fetchone()[0]
        if active is not None and active >= policy.version:
            raise Aborted(f"policy version {policy.version} is older than the active version {active}")
        self._insert("policy_versions", codec.POLICY_COLUMNS, row)

    # Helpers.

    def _exists(self, query: str, value: str) -> bool:
        return self._connection.execute(query, (value,)).fetchone() is not None

    def _insert(self, table: str, columns: Sequence[str], row: dict[str, Any]) -> None:
        # Table and column names come from this package's own constants, never from input.
        query = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608
        self._connection.execute(query, [row[column] for column in columns])

    def _request_row(self, request_id: str) -> Any:
        return self._connection.execute(
            "SELECT * FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()

    def _requests(self, query: str, parameters: Sequence[Any]) -> list[SigningRequest]:
        return [codec.request_from_row(row) for row in self._connection.execute(query, parameters).fetchall()]


class SqliteStore(TransactionDelegatingStore):
    """The Store port over one SQLite file; safe to share between threads and between processes."""

    _transaction_type = _SqliteTransaction

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
        # Which threads are inside a write transaction: a second one from the same thread would wait for the
        # write lock its own thread holds, forever.
        self._writing = threading.local()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        # The class new connections are made of: sqlite3's own, unless custody.store.faults has swapped in a
        # subclass that fails chosen writes on purpose.
        self._connection_factory: type[sqlite3.Connection] = sqlite3.Connection
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

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """One ``BEGIN IMMEDIATE ... COMMIT`` holding the write lock: everything done through the yielded
        object commits together when the block ends, or is rolled back when it raises."""
        return self._write_transaction("write to the database")

    # Housekeeping.

    def schema_version(self) -> int:
        with self._connection() as connection, _translated_errors("read the schema version"):
            return _stored_version(connection)

    def close(self) -> None:
        """Close every connection; connections in use close when their operation ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # Internals.

    def _use_connection_factory(self, factory: type[sqlite3.Connection]) -> None:
        """Make every later operation run on a connection of class ``factory``; for custody.store.faults."""
        with self._lock:
            self._connection_factory = factory
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _write(
        self,
        operation: _Operation[_Parameters, _Result],
        *args: _Parameters.args,
        **kwargs: _Parameters.kwargs,
    ) -> _Result:
        with self._write_transaction(_ACTIONS[operation.__name__]) as transaction:
            return operation(transaction, *args, **kwargs)

    def _read(
        self,
        operation: _Operation[_Parameters, _Result],
        *args: _Parameters.args,
        **kwargs: _Parameters.kwargs,
    ) -> _Result:
        # Each read is one statement on an autocommit connection, so it sees one consistent snapshot without
        # waiting for writers.
        with self._connection() as connection:
            transaction = _SqliteTransaction(connection)
            try:
                return operation(transaction, *args, **kwargs)
            finally:
                transaction.end()

    @contextmanager
    def _write_transaction(self, action: str) -> Iterator[_SqliteTransaction]:
        if getattr(self._writing, "active", False):
            raise InternalError(
                f"could not {action}: this thread already has a store transaction open, and a second one would"
                " wait forever for the first; do the work through the open transaction"
            )
        self._writing.active = True
        try:
            with self._write_lock, self._connection() as connection, self._transaction(connection, action):
                transaction = _SqliteTransaction(connection)
                try:
                    yield transaction
                finally:
                    transaction.end()
        finally:
            self._writing.active = False

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
            # One made before the connection factory last changed is closed, so the change reaches every
            # later operation.
            current = type(connection) is self._connection_factory
            if reusable and current and not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

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


def _check_key_reference(request: SigningRequest) -> None:
    """A policy change concerns no key and names none; every other request names its key by id and label."""
    if request.kind is PayloadKind.POLICY_CHANGE:
        if request.key_id or request.key_label:
            raise InvalidInput(
                "a policy change concerns no key; leave key_id and key_label empty", field="key_id"
            )
    elif not request.key_id or not request.key_label:
        raise InvalidInput(
            f"a {request.kind.value} request must name its key by id and label", field="key_id"
        )


def _clamp(limit: int) -> int:
    return min(max(limit, 1), _MAX_LIST_LIMIT)


def _stored_version(connection: sqlite3.Connection) -> int:
    has_table = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table is None:
        return 0
    version = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    return 0 if version is None else int(version)


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

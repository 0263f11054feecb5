"""The PostgreSQL store: the same state as the SQLite store, shared by several custody replicas.

Every write transaction begins by taking one PostgreSQL advisory lock, the same for every custody process on
the database, and holds it until it commits or rolls back. So writers serialize across threads, processes and
machines exactly as SQLite's single writer does: reading the audit head and appending after it, checking that
an approver has not yet voted and recording the vote, or checking a nonce and reserving it, each happen with
no other writer in between. Custody writes a few rows per request, so one writer at a time costs nothing that
matters, and it keeps the rules the same on both databases. Reads take no lock; each is one statement on an
autocommit connection and sees one consistent snapshot.

Transactions run at READ COMMITTED, where every statement sees everything committed before it started: a
writer that waited for the lock reads the previous writer's result, never a snapshot from before it.

Each operation is written once, on ``_PostgresTransaction``, which runs against one connection. Connections
come from a small pool. One that breaks (the server restarted, or an administrator ended the session) is
dropped, and the next call opens a new one; a call that meets a broken pooled connection before it has done
anything retries once on a fresh connection, so a server restart costs the calls in flight, not the next one.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

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
    INITIAL_STATES,
    Approval,
    RequestState,
    SignatureResult,
    SigningRequest,
    check_transition,
)
from custody.store import codec
from custody.store.base import NonceUse, StoredPolicy, StoreTransaction, VelocityUsage
from custody.store.delegating import TransactionDelegatingStore
from custody.store.migrate import Migration, for_postgresql, load_migrations

_URL_SCHEMES = ("postgresql://", "postgres://")
# The advisory lock every custody writer takes first: "custody!" in ASCII, a 64-bit key unlikely to collide
# with another application's advisory locks on a shared server.
WRITE_LOCK_KEY = 0x637573746F647921
_DEFAULT_LOCK_TIMEOUT_SECONDS = 10.0
_DEFAULT_CONNECT_TIMEOUT_SECONDS = 5
_MAX_IDLE_CONNECTIONS = 16
_MAX_LIST_LIMIT = 1000
_MAX_AUDIT_LIST_LIMIT = 10000
# Events read per statement while streaming the whole log, as in the SQLite store.
_AUDIT_BATCH_SIZE = 5000

_Parameters = ParamSpec("_Parameters")
_Result = TypeVar("_Result")
_Operation = Callable[Concatenate["_PostgresTransaction", _Parameters], _Result]

# What each operation does, in words for error messages ("could not store the key: ..."), by method name.
_ACTIONS: dict[str, str] = {}


@dataclass(frozen=True)
class _Server:
    """Where the database is, for messages: host, port and database name, never the user or password."""

    host: str
    port: str
    dbname: str

    def __str__(self) -> str:
        return f"the PostgreSQL database {self.dbname} at {self.host}:{self.port}"


def _operation(
    action: str,
) -> Callable[[_Operation[_Parameters, _Result]], _Operation[_Parameters, _Result]]:
    """Mark a transaction method as a store operation: it refuses to run on an ended transaction, and psycopg's
    errors inside it become custody's errors that say what was being done."""

    def decorate(method: _Operation[_Parameters, _Result]) -> _Operation[_Parameters, _Result]:
        _ACTIONS[method.__name__] = action

        @functools.wraps(method)
        def run(
            transaction: _PostgresTransaction, /, *args: _Parameters.args, **kwargs: _Parameters.kwargs
        ) -> _Result:
            transaction.check_open(action)
            with _translated_errors(action, transaction.server):
                return method(transaction, *args, **kwargs)

        return run

    return decorate


class _PostgresTransaction:
    """Every store operation, run on one connection.

    Inside ``PostgresStore.transaction()`` the connection is in a transaction holding the write lock, so the
    operations see each other's writes and commit together. Once the block ends the object refuses further
    use: its connection has gone back to the pool, where another thread may be using it.

    Uniqueness is checked before writing, under the write lock, rather than left to the constraints: a
    statement that fails aborts a PostgreSQL transaction as a whole, while the caller of, say, ``reserve_nonce``
    may catch AlreadyExists and carry on in the same transaction, as it can on SQLite.
    """

    def __init__(self, connection: psycopg.Connection[DictRow], server: _Server) -> None:
        self._connection = connection
        self.server = server
        self._open = True
        # The sequence and hash of the last event this transaction appended. Under the write lock nobody else
        # can append until it commits, so a second append chains on this without reading the head again;
        # appending thousands of events in one transaction then costs one statement each, not two.
        self._appended: tuple[int, bytes] | None = None

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
        if self._exists("SELECT 1 FROM keys WHERE label = %s", key.label):
            raise AlreadyExists(f"a key labelled {key.label} already exists")
        if self._exists("SELECT 1 FROM keys WHERE key_id = %s", key.key_id):
            raise AlreadyExists(f"a key with id {key.key_id} already exists")
        self._insert("keys", codec.KEY_COLUMNS, row)

    @_operation("read the key")
    def get_key(self, label: str) -> Key | None:
        row = self._one("SELECT * FROM keys WHERE label = %s", (label,))
        return None if row is None else codec.key_from_row(row)

    @_operation("list the keys")
    def list_keys(self) -> Sequence[Key]:
        return [codec.key_from_row(row) for row in self._all("SELECT * FROM keys ORDER BY label", ())]

    @_operation("change the key's state")
    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        updated_at = codec.encode_time(at, "at")
        row = self._one(
            "UPDATE keys SET state = %s, updated_at = %s WHERE label = %s AND state = %s RETURNING *",
            (new.value, updated_at, label, expected.value),
        )
        if row is None:
            current = self._one("SELECT state FROM keys WHERE label = %s", (label,))
            if current is None:
                raise NotFound(f"there is no key labelled {label}")
            raise Aborted(
                f"the key {label} is no longer in state {expected.value}; it is now {current['state']}"
            )
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
        codec.check_key_reference(request)
        row = codec.request_to_row(request)
        if self._exists("SELECT 1 FROM requests WHERE request_id = %s", request.request_id):
            raise AlreadyExists(f"a request with id {request.request_id} already exists")
        if request.key_id:
            key_row = self._one("SELECT label FROM keys WHERE key_id = %s", (request.key_id,))
            if key_row is None:
                raise NotFound(f"there is no key with id {request.key_id}")
            if key_row["label"] != request.key_label:
                raise InvalidInput(
                    f"the key with id {request.key_id} is labelled {key_row['label']}, not {request.key_label}",
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
                conditions.append(f"{column} = %s")
                parameters.append(value)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        parameters.append(_clamp(limit))
        query = f"SELECT * FROM requests {where} ORDER BY created_at DESC, request_id DESC LIMIT %s"  # noqa: S608
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
        # As on SQLite: every transition drops the signing claim, and a governance request in APPROVED has
        # taken effect and is final. PostgreSQL cannot infer a type for a parameter that is only ever NULL
        # inside COALESCE, so each one is cast to its column's type.
        row = self._one(
            "UPDATE requests SET state = %s, updated_at = %s, error = COALESCE(%s::text, error),"  # noqa: S608
            " signature = COALESCE(%s::bytea, signature), signed_tx = COALESCE(%s::bytea, signed_tx),"
            " tx_hash = COALESCE(%s::bytea, tx_hash), not_before = COALESCE(%s::text, not_before),"
            " claim_holder = NULL, claim_until = NULL"
            " WHERE request_id = %s AND state = %s"
            f" AND NOT (state = 'APPROVED' AND kind IN ({codec.GOVERNANCE_KINDS_SQL}))"
            " RETURNING *",
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
        if row is None:
            current = self._one("SELECT state, kind FROM requests WHERE request_id = %s", (request_id,))
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
        if new in codec.UNSIGNED_FINAL_STATES:
            # The request will never be signed, so the nonce it held goes back for another request to take.
            self._connection.execute("DELETE FROM nonces WHERE request_id = %s", (request_id,))
        return codec.request_from_row(row)

    @_operation("claim the request for signing")
    def claim_signing(self, request_id: str, claimant: str, now: datetime, lease_until: datetime) -> bool:
        if lease_until <= now:
            raise InvalidInput("a signing claim must last beyond now", field="lease_until")
        now_text = codec.encode_time(now, "now")
        # Besides a free (or lapsed) claim, the request must be due to be signed: a signing kind, its
        # time-lock passed and its lifetime not, so that the claim is the one gate before the HSM.
        cursor = self._connection.execute(
            "UPDATE requests SET claim_holder = %s, claim_until = %s"  # noqa: S608
            " WHERE request_id = %s AND state = 'APPROVED'"
            f" AND kind IN ({codec.SIGNING_KINDS_SQL})"
            " AND (claim_holder IS NULL OR claim_until < %s)"
            " AND (not_before IS NULL OR not_before <= %s)"
            " AND (expires_at IS NULL OR expires_at > %s)",
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
            f" AND kind IN ({codec.SIGNING_KINDS_SQL})"
            " AND (not_before IS NULL OR not_before <= %s)"
            " AND (claim_holder IS NULL OR claim_until < %s)"
            " AND (expires_at IS NULL OR expires_at > %s)"
            " ORDER BY created_at, request_id LIMIT %s",
            (now_text, now_text, now_text, _clamp(limit)),
        )

    @_operation("find the expired requests")
    def expired_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        return self._requests(
            "SELECT * FROM requests"  # noqa: S608
            " WHERE (state = 'PENDING_APPROVAL'"
            f" OR (state = 'APPROVED' AND kind IN ({codec.SIGNING_KINDS_SQL})))"
            " AND expires_at IS NOT NULL AND expires_at <= %s"
            " ORDER BY expires_at, request_id LIMIT %s",
            (codec.encode_time(now, "now"), _clamp(limit)),
        )

    @_operation("measure the key's recent use")
    def velocity_usage(self, key_label: str, since: datetime) -> VelocityUsage:
        rows = self._all(
            "SELECT value_wei FROM requests WHERE key_label = %s AND state IN ('APPROVED', 'SIGNED')"  # noqa: S608
            f" AND kind IN ({codec.SIGNING_KINDS_SQL}) AND created_at >= %s",
            (key_label, codec.encode_time(since, "since")),
        )
        # Summed here rather than in SQL: the values are decimal text because they exceed 64-bit integers.
        return VelocityUsage(count=len(rows), total_value=sum(int(row["value_wei"]) for row in rows))

    @_operation("find the requests waiting under an older policy")
    def pending_requests_before_version(self, version: int) -> Sequence[SigningRequest]:
        return self._requests(
            "SELECT * FROM requests WHERE policy_version < %s"  # noqa: S608
            " AND (state = 'PENDING_APPROVAL'"
            f" OR (state = 'APPROVED' AND kind IN ({codec.SIGNING_KINDS_SQL})))"
            " ORDER BY created_at, request_id",
            (version,),
        )

    # Approvals.

    @_operation("store the approval")
    def insert_approval(self, approval: Approval) -> None:
        row = codec.approval_to_row(approval)
        if self._request_row(approval.request_id) is None:
            raise NotFound(f"there is no request with id {approval.request_id}")
        if self._one(
            "SELECT 1 FROM approvals WHERE request_id = %s AND approver = %s",
            (approval.request_id, approval.approver),
        ):
            raise AlreadyExists(
                f"{approval.approver} already gave a verdict on request {approval.request_id}"
            )
        self._insert("approvals", codec.APPROVAL_COLUMNS, row)

    @_operation("list the approvals")
    def list_approvals(self, request_id: str) -> Sequence[Approval]:
        rows = self._all(
            "SELECT * FROM approvals WHERE request_id = %s ORDER BY created_at, approver", (request_id,)
        )
        return [codec.approval_from_row(row) for row in rows]

    # Nonces.

    @_operation("read the nonce's holder")
    def nonce_holder(self, key_id: str, chain_id: int, scope: str, nonce: int) -> NonceUse | None:
        return self._nonce_holder(key_id, chain_id, scope, nonce)

    @_operation("reserve the nonce")
    def reserve_nonce(self, use: NonceUse) -> None:
        row = codec.nonce_to_row(use)
        if self._request_row(use.request_id) is None:
            raise NotFound(f"there is no request with id {use.request_id} to hold nonce {use.nonce}")
        holder = self._nonce_holder(use.key_id, use.chain_id, use.scope, use.nonce)
        if holder is not None:
            raise AlreadyExists(
                f"nonce {use.nonce} of key {use.key_id} on chain {use.chain_id} is already held by request"
                f" {holder.request_id}"
            )
        self._insert("nonces", codec.NONCE_COLUMNS, row)

    @_operation("hand the nonce to the replacement request")
    def move_nonce(self, use: NonceUse, from_request_id: str) -> None:
        row = codec.nonce_to_row(use)
        if self._request_row(use.request_id) is None:
            raise NotFound(f"there is no request with id {use.request_id} to take over nonce {use.nonce}")
        cursor = self._connection.execute(
            "UPDATE nonces SET request_id = %s, payload_hash = %s, created_at = %s"
            " WHERE key_id = %s AND chain_id = %s AND scope = %s AND nonce = %s AND request_id = %s",
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
            holder = self._nonce_holder(use.key_id, use.chain_id, use.scope, use.nonce)
            held = "nobody holds it" if holder is None else f"request {holder.request_id} holds it"
            raise Aborted(
                f"nonce {use.nonce} of key {use.key_id} on chain {use.chain_id} is not held by request"
                f" {from_request_id}; {held}"
            )

    # Audit log.

    @_operation("write the audit event")
    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        details = codec.encode_audit_details(draft)
        # The head is read under the write lock, so no other writer, in this process or another replica, can
        # append between this read and the insert: the chain never forks, and the primary key on sequence
        # backs that up.
        if self._appended is None:
            head = self._one("SELECT sequence, hash FROM audit_events ORDER BY sequence DESC LIMIT 1", ())
            self._appended = (0, GENESIS_HASH) if head is None else (head["sequence"], bytes(head["hash"]))
        last_sequence, previous_hash = self._appended
        event = chain_event(draft, last_sequence + 1, previous_hash)
        row = codec.audit_event_to_row(event, details)
        self._insert("audit_events", codec.AUDIT_COLUMNS, row)
        self._appended = (event.sequence, event.hash)
        # Returned as it reads back from the database (UTC time, details parsed from the stored JSON), so the
        # caller holds exactly what a later reader will see.
        return codec.audit_event_from_row(row)

    @_operation("read the head of the audit log")
    def audit_head(self) -> AuditEvent | None:
        row = self._one("SELECT * FROM audit_events ORDER BY sequence DESC LIMIT 1", ())
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
        # Times are fixed-width UTC text compared byte by byte, so comparing the text compares the times.
        conditions = ["sequence > %s"]
        parameters: list[Any] = [after_sequence]
        for condition, value in (
            ("request_id = %s", request_id),
            ("actor = %s", actor),
            ("kind = %s", kind),
            ("time >= %s", codec.encode_optional_time(since, "since")),
            ("time < %s", codec.encode_optional_time(until, "until")),
        ):
            if value is not None:
                conditions.append(condition)
                parameters.append(value)
        parameters.append(min(max(limit, 1), _MAX_AUDIT_LIST_LIMIT))
        query = (
            f"SELECT * FROM audit_events WHERE {' AND '.join(conditions)}"  # noqa: S608
            " ORDER BY sequence LIMIT %s"
        )
        # Converted row by row from the cursor, so a long page never exists twice in memory.
        return [codec.audit_event_from_row(row) for row in self._connection.execute(query, parameters)]

    @_operation("read the last audit event of a kind")
    def last_audit_event_of_kind(self, kind: str) -> AuditEvent | None:
        row = self._one("SELECT * FROM audit_events WHERE kind = %s ORDER BY sequence DESC LIMIT 1", (kind,))
        return None if row is None else codec.audit_event_from_row(row)

    # Policy versions.

    @_operation("read the active policy")
    def active_policy(self) -> StoredPolicy | None:
        row = self._one("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1", ())
        return None if row is None else codec.policy_from_row(row)

    @_operation("activate the policy")
    def activate_policy(self, policy: StoredPolicy) -> None:
        row = codec.policy_to_row(policy)
        if self._one("SELECT 1 FROM policy_versions WHERE version = %s", (policy.version,)):
            raise AlreadyExists(f"policy version {policy.version} already exists")
        active = self._one("SELECT MAX(version) AS version FROM policy_versions", ())
        active_version = None if active is None else active["version"]
        if active_version is not None and active_version >= policy.version:
            raise Aborted(
                f"policy version {policy.version} is older than the active version {active_version}"
            )
        self._insert("policy_versions", codec.POLICY_COLUMNS, row)

    # Housekeeping.

    @_operation("read the schema version")
    def schema_version(self) -> int:
        return _stored_version(self._connection)

    # Helpers.

    def _one(self, query: str, parameters: Sequence[Any]) -> DictRow | None:
        return self._connection.execute(query, parameters).fetchone()

    def _all(self, query: str, parameters: Sequence[Any]) -> list[DictRow]:
        return self._connection.execute(query, parameters).fetchall()

    def _exists(self, query: str, value: str) -> bool:
        return self._one(query, (value,)) is not None

    def _insert(self, table: str, columns: Sequence[str], row: dict[str, Any]) -> None:
        # Table and column names come from this package's own constants, never from input.
        query = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})"  # noqa: S608
        self._connection.execute(query, [row[column] for column in columns])

    def _request_row(self, request_id: str) -> DictRow | None:
        return self._one("SELECT * FROM requests WHERE request_id = %s", (request_id,))

    def _requests(self, query: str, parameters: Sequence[Any]) -> list[SigningRequest]:
        return [codec.request_from_row(row) for row in self._all(query, parameters)]

    def _nonce_holder(self, key_id: str, chain_id: int, scope: str, nonce: int) -> NonceUse | None:
        row = self._one(
            "SELECT * FROM nonces WHERE key_id = %s AND chain_id = %s AND scope = %s AND nonce = %s",
            (key_id, chain_id, scope, codec.encode_nonce(nonce)),
        )
        return None if row is None else codec.nonce_from_row(row)


class PostgresStore(TransactionDelegatingStore):
    """The Store port over one PostgreSQL database; safe to share between threads, processes and replicas."""

    _transaction_type = _PostgresTransaction

    def __init__(
        self,
        url: str,
        *,
        lock_timeout_seconds: float = _DEFAULT_LOCK_TIMEOUT_SECONDS,
        connect_timeout_seconds: int = _DEFAULT_CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        # The URL may carry a password, so it is kept for connecting and never put into a message.
        self._url = url
        self._server, self._connect_options = _parse_url(url, connect_timeout_seconds)
        self._lock_timeout = f"{max(1, round(lock_timeout_seconds * 1000))}ms"
        self._lock = threading.Lock()
        # Writers in this process queue here, so that at most one of this store's connections at a time waits
        # on the advisory lock; other processes and replicas queue on the advisory lock itself.
        self._write_lock = threading.Lock()
        # Which threads are inside a write transaction: a second one from the same thread would wait for the
        # write lock its own thread holds, forever.
        self._writing = threading.local()
        self._idle: list[psycopg.Connection[DictRow]] = []
        self._closed = False
        self._migrations = tuple(for_postgresql(migration) for migration in load_migrations())
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Open the store a ``postgresql://user[:password]@host[:port]/dbname[?options]`` URL names
        (``postgres://`` too); the options are libpq's (``sslmode=verify-full``, ``sslrootcert=...``)."""
        return cls(url)

    def __repr__(self) -> str:
        return f"PostgresStore({self._server})"

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """One transaction holding the write lock: everything done through the yielded object commits together
        when the block ends, or is rolled back when it raises."""
        return self._write_transaction("write to the database")

    # Housekeeping.

    def schema_version(self) -> int:
        return self._read(_PostgresTransaction.schema_version)

    def close(self) -> None:
        """Close every connection; connections in use close when their operation ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # Internals.

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
        action = _ACTIONS[operation.__name__]
        with self._connection(action) as connection:
            try:
                return self._run(connection, operation, *args, **kwargs)
            except StoreUnavailable:
                if not self._was_broken(connection):
                    raise
        # Reading changes nothing, so a read that met a broken connection (one that sat in the pool while the
        # server restarted, say) is simply run again on a new one.
        with self._connection(action) as connection:
            return self._run(connection, operation, *args, **kwargs)

    def _run(
        self,
        connection: psycopg.Connection[DictRow],
        operation: _Operation[_Parameters, _Result],
        *args: _Parameters.args,
        **kwargs: _Parameters.kwargs,
    ) -> _Result:
        transaction = _PostgresTransaction(connection, self._server)
        try:
            return operation(transaction, *args, **kwargs)
        finally:
            transaction.end()

    @contextmanager
    def _write_transaction(self, action: str) -> Iterator[_PostgresTransaction]:
        if getattr(self._writing, "active", False):
            raise InternalError(
                f"could not {action}: this thread already has a store transaction open, and a second one would"
                " wait forever for the first; do the work through the open transaction"
            )
        self._writing.active = True
        try:
            with self._write_lock, self._locked_connection(action) as connection:
                transaction = _PostgresTransaction(connection, self._server)
                try:
                    yield transaction
                finally:
                    transaction.end()
        finally:
            self._writing.active = False

    @contextmanager
    def _locked_connection(self, action: str) -> Iterator[psycopg.Connection[DictRow]]:
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

    def _begin(self, connection: psycopg.Connection[DictRow]) -> None:
        connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))

    def _commit(self, connection: psycopg.Connection[DictRow], action: str) -> None:
        # PostgreSQL answers COMMIT in a transaction where a statement failed with a silent ROLLBACK. A
        # caller who caught that statement's error and carried on must not believe the rest was kept.
        if connection.info.transaction_status == TransactionStatus.INERROR:
            raise InternalError(
                f"could not {action}: a statement in the transaction failed, so nothing in it was kept"
            )
        connection.execute("COMMIT")

    def _migrate(self) -> None:
        latest = self._migrations[-1].version
        stored = self.schema_version()
        self._refuse_newer(stored, latest)
        for migration in self._migrations:
            if migration.version > stored:
                self._apply(migration, latest)

    def _apply(self, migration: Migration, latest: int) -> None:
        action = f"upgrade the database schema to version {migration.version}"
        with self._locked_connection(action) as connection, _translated_errors(action, self._server):
            # Several replicas starting together all wait for the write lock; the first applies the migration
            # and the others find it done.
            stored = _stored_version(connection)
            self._refuse_newer(stored, latest)
            if stored >= migration.version:
                return
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                (migration.version, codec.encode_time(datetime.now(UTC), "applied_at")),
            )

    def _refuse_newer(self, stored: int, latest: int) -> None:
        if stored > latest:
            raise ConfigurationError(
                f"the database schema is version {stored} but this custody knows up to {latest};"
                f" upgrade custody before using {self._server}"
            )

    def _open(self, action: str) -> psycopg.Connection[DictRow]:
        try:
            connection = psycopg.connect(
                self._url, autocommit=True, row_factory=dict_row, **self._connect_options
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"could not {action}: {_describe_connect_failure(exc, self._server)}"
            ) from exc
        try:
            with _translated_errors(action, self._server):
                # A writer waits this long for the write lock before giving up, as SQLite's busy timeout does.
                connection.execute("SELECT set_config('lock_timeout', %s, false)", (self._lock_timeout,))
        except BaseException:
            connection.close()
            raise
        return connection

    @contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection[DictRow]]:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the store has been closed")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._open(action)
        try:
            yield connection
        finally:
            self._release(connection)

    def _release(self, connection: psycopg.Connection[DictRow]) -> None:
        # A connection that broke, or was left inside a transaction (a failed ROLLBACK), is not safe to hand
        # to the next caller.
        reusable = not connection.closed and connection.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if reusable and not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def _was_broken(self, connection: psycopg.Connection[DictRow]) -> bool:
        """Whether ``connection`` failed because it is gone; if so, the idle ones went with the same server
        restart, so they are closed too and the retry opens a fresh connection."""
        if not connection.broken:
            return False
        with self._lock:
            idle, self._idle = self._idle, []
        for other in idle:
            other.close()
        return True


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


def _clamp(limit: int) -> int:
    return min(max(limit, 1), _MAX_LIST_LIMIT)


def _stored_version(connection: psycopg.Connection[DictRow]) -> int:
    # Read from pg_tables like any table, so that the statement's fresh snapshot applies: name lookups such as
    # to_regclass() go through a catalog cache that a transaction which waited for the write lock may not have
    # refreshed, and would miss the table another replica created meanwhile.
    present = connection.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables"
        " WHERE schemaname = current_schema() AND tablename = 'schema_version') AS present"
    ).fetchone()
    if present is None or not present["present"]:
        return 0
    row = connection.execute("SELECT MAX(version) AS version FROM schema_version").fetchone()
    return 0 if row is None or row["version"] is None else int(row["version"])


def _rollback_quietly(connection: psycopg.Connection[DictRow]) -> None:
    # The error that caused the rollback is the one worth reporting; on a broken connection the server has
    # already rolled back on its own, and ROLLBACK fails harmlessly.
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

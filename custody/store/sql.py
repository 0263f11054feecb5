"""What the SQLite and PostgreSQL stores share: every store operation, written once in SQL that both databases
run (``SqlTransaction``), and the store around the operations (``SqlStore``): a pool of connections, one
writer at a time, reads that take no lock, and the schema migrations.

Queries are written with ``?`` placeholders, SQLite's style, and never hold a ``?`` anywhere else; each
backend's transaction runs them in its driver's style. Rows are read by column name, which both drivers' row
types allow. What really differs between the databases stays with each backend: opening a connection and
judging whether it may be pooled again, taking the write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock
on PostgreSQL), turning the driver's errors into custody's, and finding the ``schema_version`` table.

Uniqueness is checked before writing, under the write lock, rather than left to the constraints: a statement
that fails aborts a PostgreSQL transaction as a whole, while the caller of, say, ``reserve_nonce`` may catch
AlreadyExists and carry on in the same transaction, and it must be able to on either database. The constraints
stay as the backstop.
"""

from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, TypeVar

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
    PayloadKind,
    RequestState,
    SignatureResult,
    SigningRequest,
    check_transition,
)
from custody.store import codec
from custody.store.base import DaemonKey, NonceUse, StoredPolicy, StoreTransaction, VelocityUsage
from custody.store.delegating import TransactionDelegatingStore
from custody.store.migrate import Migration

_MAX_IDLE_CONNECTIONS = 16
_MAX_LIST_LIMIT = 1000
_MAX_AUDIT_LIST_LIMIT = 10000

_Parameters = ParamSpec("_Parameters")
_Result = TypeVar("_Result")
Operation = Callable[Concatenate["SqlTransaction", _Parameters], _Result]

# What each operation does, in words for error messages ("could not store the key: ..."), by method name.
ACTIONS: dict[str, str] = {}


class Cursor(Protocol):
    """What the operations use of a driver's cursor; sqlite3's and psycopg's both have it."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class _Closable(Protocol):
    def close(self) -> None: ...


_Connection = TypeVar("_Connection", bound=_Closable)


def operation(
    action: str,
) -> Callable[[Operation[_Parameters, _Result]], Operation[_Parameters, _Result]]:
    """Mark a transaction method as a store operation: it refuses to run on an ended transaction, and the
    driver's errors inside it become custody's errors that say what was being done."""

    def decorate(method: Operation[_Parameters, _Result]) -> Operation[_Parameters, _Result]:
        ACTIONS[method.__name__] = action

        @functools.wraps(method)
        def run(
            transaction: SqlTransaction, /, *args: _Parameters.args, **kwargs: _Parameters.kwargs
        ) -> _Result:
            transaction.check_open(action)
            with transaction.translated_errors(action):
                return method(transaction, *args, **kwargs)

        return run

    return decorate


class SqlTransaction(ABC):
    """Every store operation, run on one connection.

    Inside a store's ``transaction()`` the connection is in a transaction holding the write lock, so the
    operations see each other's writes and commit together. Once the block ends the object refuses further
    use: its connection has gone back to the pool, where another thread may be using it.

    A backend supplies how a statement runs (``_execute``), how its driver's errors are translated
    (``translated_errors``) and the query that finds the ``schema_version`` table.
    """

    # A query that returns a row when the schema_version table exists and none when it does not.
    _SCHEMA_VERSION_TABLE_QUERY: ClassVar[str]

    def __init__(self) -> None:
        self._open = True
        # The sequence and hash of the last event this transaction appended. Under the write lock nobody else
        # can append until it commits, so a second append chains on this without reading the head again;
        # appending thousands of events in one transaction then costs one statement each, not two.
        self._appended: tuple[int, bytes] | None = None
        # What this transaction read or wrote itself while holding the write lock, which no other writer can
        # change before it commits: the consistency checks of later operations in it take these from here
        # instead of reading them again. A transaction without the write lock (a single read) remembers nothing.
        self.holds_write_lock = False
        self._key_labels: dict[str, str] = {}  # key id -> label
        self._own_requests: set[str] = set()
        self._free_nonces: set[tuple[str, int, str, int]] = set()

    def end(self) -> None:
        self._open = False

    def check_open(self, action: str) -> None:
        if not self._open:
            raise InternalError(
                f"could not {action}: the store transaction it was called on has already ended"
            )

    @abstractmethod
    def translated_errors(self, action: str) -> AbstractContextManager[None]:
        """Turn the driver's exceptions inside the block into custody's errors, saying what was being done."""

    @abstractmethod
    def _execute(self, query: str, parameters: Sequence[Any] = ()) -> Cursor:
        """Run one statement written with ``?`` placeholders."""

    def _execute_later(self, action: str, query: str, parameters: Sequence[Any] = ()) -> None:
        """Run a write whose answer nobody reads. A backend whose every statement is a round trip to a server
        may hold it back, under the write lock, and send it with the next statement that needs an answer or
        with the commit, in one round trip (custody/store/postgres.py); an error it meets is raised there,
        naming ``action``, and the transaction commits nothing. Uniqueness a caller may want to catch is never
        left to these writes: it is checked by a read first, which runs at once."""
        self._execute(query, parameters)

    # Keys.

    @operation("store the key")
    def insert_key(self, key: Key) -> None:
        row = codec.key_to_row(key)
        if self._exists("SELECT 1 FROM keys WHERE label = ?", key.label):
            raise AlreadyExists(f"a key labelled {key.label} already exists")
        if self._exists("SELECT 1 FROM keys WHERE key_id = ?", key.key_id):
            raise AlreadyExists(f"a key with id {key.key_id} already exists")
        self._insert("keys", codec.KEY_COLUMNS, row)
        self._know_key(key)

    @operation("read the key")
    def get_key(self, label: str) -> Key | None:
        row = self._execute("SELECT * FROM keys WHERE label = ?", (label,)).fetchone()
        return None if row is None else self._know_key(codec.key_from_row(row))

    @operation("list the keys")
    def list_keys(self) -> Sequence[Key]:
        return [
            codec.key_from_row(row) for row in self._execute("SELECT * FROM keys ORDER BY label").fetchall()
        ]

    @operation("change the key's state")
    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        updated_at = codec.encode_time(at, "at")
        # Counting the freeze in the same statement keeps the count exact however freezes race.
        freezing = 1 if new is KeyState.FROZEN else 0
        cursor = self._execute(
            "UPDATE keys SET state = ?, updated_at = ?, freezes = freezes + ? WHERE label = ? AND state = ?",
            (new.value, updated_at, freezing, label, expected.value),
        )
        # The row is read back rather than taken from UPDATE ... RETURNING, which SQLite only has since 3.35:
        # older SQLite libraries still ship with the Python of long-lived distributions.
        row = self._execute("SELECT * FROM keys WHERE label = ?", (label,)).fetchone()
        if row is None:
            raise NotFound(f"there is no key labelled {label}")
        if cursor.rowcount == 0:
            raise Aborted(f"the key {label} is no longer in state {expected.value}; it is now {row['state']}")
        return self._know_key(codec.key_from_row(row))

    @operation("find the key's waiting unfreezes")
    def waiting_unfreezes(self, key_label: str) -> Sequence[SigningRequest]:
        return self._requests(
            "SELECT * FROM requests WHERE key_label = ? AND kind = ? AND state = 'PENDING_APPROVAL'"
            " ORDER BY created_at, request_id",
            (key_label, PayloadKind.KEY_UNFREEZE.value),
        )

    @operation("read the daemon's own key")
    def daemon_key(self, purpose: str) -> DaemonKey | None:
        row = self._execute("SELECT * FROM daemon_keys WHERE purpose = ?", (purpose,)).fetchone()
        return None if row is None else codec.daemon_key_from_row(row)

    @operation("store the daemon's own key")
    def insert_daemon_key(self, key: DaemonKey) -> None:
        if self._exists("SELECT 1 FROM daemon_keys WHERE purpose = ?", key.purpose):
            raise AlreadyExists(f"the daemon's {key.purpose} key is already stored")
        self._insert("daemon_keys", codec.DAEMON_KEY_COLUMNS, codec.daemon_key_to_row(key))

    # Requests.

    @operation("store the request")
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
        if request.key_id:
            label = self._key_labels.get(request.key_id)
            if label is None:
                key_row = self._execute(
                    "SELECT label FROM keys WHERE key_id = ?", (request.key_id,)
                ).fetchone()
                if key_row is None:
                    raise NotFound(f"there is no key with id {request.key_id}")
                label = key_row["label"]
            if label != request.key_label:
                raise InvalidInput(
                    f"the key with id {request.key_id} is labelled {label}, not {request.key_label}",
                    field="key_label",
                )
        if request.replaces is not None and self._request_row(request.replaces) is None:
            raise NotFound(
                f"request {request.request_id} replaces request {request.replaces}, which does not exist"
            )
        # The primary key says whether the id is taken, in the insert itself: one statement instead of two.
        if not self._insert("requests", codec.REQUEST_COLUMNS, row, unless_taken="request_id"):
            raise AlreadyExists(f"a request with id {request.request_id} already exists")
        if self.holds_write_lock:
            self._own_requests.add(request.request_id)

    @operation("read the request")
    def get_request(self, request_id: str) -> SigningRequest | None:
        row = self._request_row(request_id)
        return None if row is None else codec.request_from_row(row)

    @operation("list the requests")
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

    @operation("change the request's state")
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
        assignments = ["state = ?", "updated_at = ?"]
        parameters: list[Any] = [new.value, codec.encode_time(at, "at")]
        # A value that is not given leaves what the request already holds. Each assignment pairs a fixed column
        # name with a bound value, so the query text never contains input; and no parameter is ever bound to a
        # NULL that PostgreSQL would have to guess a type for.
        for column, value in (
            ("error", error),
            ("signature", None if result is None else result.signature),
            ("signed_tx", None if result is None else result.signed_tx),
            ("tx_hash", None if result is None else result.tx_hash),
            ("not_before", codec.encode_optional_time(not_before, "not_before")),
        ):
            if value is not None:
                assignments.append(f"{column} = ?")
                parameters.append(value)
        parameters += [request_id, expected.value]
        # Every transition drops the signing claim: it only ever guards an APPROVED request, and a request
        # leaving APPROVED is done with signing. A governance request in APPROVED has taken effect and is
        # final, which the last condition enforces even though the state machine lets signing requests on.
        cursor = self._execute(
            f"UPDATE requests SET {', '.join(assignments)}, claim_holder = NULL, claim_until = NULL"  # noqa: S608
            " WHERE request_id = ? AND state = ?"
            f" AND NOT (state = 'APPROVED' AND kind IN ({codec.GOVERNANCE_KINDS_SQL}))"
            " RETURNING *",
            parameters,
        )
        # The changed row comes back with the UPDATE; only a refused transition reads the row to say why.
        row = cursor.fetchone()
        if row is None:
            row = self._request_row(request_id)
            if row is None:
                raise NotFound(f"there is no request with id {request_id}")
            if row["state"] == expected.value:
                raise WrongState(
                    f"request {request_id} is a {row['kind']} request that took effect when it was approved"
                    " and can no longer change"
                )
            raise Aborted(
                f"the request {request_id} is no longer in state {expected.value}; it is now {row['state']}"
            )
        if new in codec.UNSIGNED_FINAL_STATES:
            self._release_nonce(row)
        return codec.request_from_row(row)

    def _release_nonce(self, ended: Any) -> None:
        """Free the nonce of a request that will never be signed, unless a request it replaced was signed.

        A replacement took the nonce over from the request it replaces. If the replacement ends unsigned and
        an earlier request in that chain of replacements was signed, the nonce goes back to the signed one: a
        signature for that nonce exists, so the nonce is not free, and a different payload for it needs a
        replacement again, with the approvals the policy asks for.
        """
        request_id = ended["request_id"]
        seen = {request_id}
        earlier_id = ended["replaces"]
        while earlier_id is not None and earlier_id not in seen:
            seen.add(earlier_id)
            earlier = self._request_row(earlier_id)
            if earlier is None:
                break
            if earlier["state"] == RequestState.SIGNED.value:
                # The row becomes again what the signed request reserved when it was submitted.
                self._execute(
                    "UPDATE nonces SET request_id = ?, payload_hash = ?, created_at = ? WHERE request_id = ?",
                    (earlier_id, earlier["payload_hash"], earlier["created_at"], request_id),
                )
                return
            earlier_id = earlier["replaces"]
        self._execute("DELETE FROM nonces WHERE request_id = ?", (request_id,))

    @operation("claim the request for signing")
    def claim_signing(self, request_id: str, claimant: str, now: datetime, lease_until: datetime) -> bool:
        if lease_until <= now:
            raise InvalidInput("a signing claim must last beyond now", field="lease_until")
        # Only the conditional update that keeps two claimants apart lives here. Whether the request may be
        # signed at all (its time window, its key, its approvals) is decided once, by
        # custody.domain.signing.signing_refusal, in the same write transaction before this runs.
        cursor = self._execute(
            "UPDATE requests SET claim_holder = ?, claim_until = ?"
            " WHERE request_id = ? AND state = 'APPROVED' AND (claim_holder IS NULL OR claim_until < ?)",
            (
                claimant,
                codec.encode_time(lease_until, "lease_until"),
                request_id,
                codec.encode_time(now, "now"),
            ),
        )
        return cursor.rowcount == 1

    @operation("find the requests due for signing")
    def due_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        now_text = codec.encode_time(now, "now")
        return self._requests(
            "SELECT * FROM requests WHERE state = 'APPROVED'"  # noqa: S608
            f" AND kind IN ({codec.SIGNING_KINDS_SQL})"
            " AND (not_before IS NULL OR not_before <= ?)"
            " AND (claim_holder IS NULL OR claim_until < ?)"
            " AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY created_at, request_id LIMIT ?",
            (now_text, now_text, now_text, _clamp(limit)),
        )

    @operation("find the expired requests")
    def expired_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        return self._requests(
            "SELECT * FROM requests"  # noqa: S608
            " WHERE (state = 'PENDING_APPROVAL'"
            f" OR (state = 'APPROVED' AND kind IN ({codec.SIGNING_KINDS_SQL})))"
            " AND expires_at IS NOT NULL AND expires_at <= ?"
            " ORDER BY expires_at, request_id LIMIT ?",
            (codec.encode_time(now, "now"), _clamp(limit)),
        )

    @operation("measure the key's recent use")
    def velocity_usage(self, key_label: str, since: datetime) -> VelocityUsage:
        rows = self._execute(
            # Requests still waiting for approvals count too: otherwise any number of them could each pass the
            # limit alone and all be approved and signed afterwards.
            "SELECT value_wei, token_amounts FROM requests WHERE key_label = ?"  # noqa: S608
            " AND state IN ('PENDING_APPROVAL', 'APPROVED', 'SIGNED')"
            f" AND kind IN ({codec.SIGNING_KINDS_SQL}) AND created_at >= ?",
            (key_label, codec.encode_time(since, "since")),
        ).fetchall()
        # Summed here rather than in SQL: the values are decimal text because they exceed 64-bit integers.
        token_amounts: dict[str, int] = {}
        for row in rows:
            for token, amount in codec.decode_token_amounts(row["token_amounts"]).items():
                token_amounts[token] = token_amounts.get(token, 0) + amount
        return VelocityUsage(
            count=len(rows),
            total_value=sum(int(row["value_wei"]) for row in rows),
            token_amounts=token_amounts,
        )

    @operation("find the requests waiting under an older policy")
    def pending_requests_before_version(self, version: int) -> Sequence[SigningRequest]:
        return self._requests(
            "SELECT * FROM requests WHERE policy_version < ?"  # noqa: S608
            " AND (state = 'PENDING_APPROVAL'"
            f" OR (state = 'APPROVED' AND kind IN ({codec.SIGNING_KINDS_SQL})))"
            " ORDER BY created_at, request_id",
            (version,),
        )

    # Approvals.

    @operation("store the approval")
    def insert_approval(self, approval: Approval) -> None:
        row = codec.approval_to_row(approval)
        if self._request_row(approval.request_id) is None:
            raise NotFound(f"there is no request with id {approval.request_id}")
        if self._execute(
            "SELECT 1 FROM approvals WHERE request_id = ? AND approver = ?",
            (approval.request_id, approval.approver),
        ).fetchone():
            raise AlreadyExists(
                f"{approval.approver} already gave a verdict on request {approval.request_id}"
            )
        self._insert("approvals", codec.APPROVAL_COLUMNS, row)

    @operation("list the approvals")
    def list_approvals(self, request_id: str) -> Sequence[Approval]:
        rows = self._execute(
            "SELECT * FROM approvals WHERE request_id = ? ORDER BY created_at, approver", (request_id,)
        ).fetchall()
        return [codec.approval_from_row(row) for row in rows]

    # Nonces.

    @operation("read the nonce's holder")
    def nonce_holder(self, key_id: str, chain_id: int, scope: str, nonce: int) -> NonceUse | None:
        holder = self._nonce_holder(key_id, chain_id, scope, nonce)
        if holder is None and self.holds_write_lock:
            self._free_nonces.add((key_id, chain_id, scope, nonce))
        return holder

    @operation("reserve the nonce")
    def reserve_nonce(self, use: NonceUse) -> None:
        row = codec.nonce_to_row(use)
        if use.request_id not in self._own_requests and self._request_row(use.request_id) is None:
            raise NotFound(f"there is no request with id {use.request_id} to hold nonce {use.nonce}")
        slot = (use.key_id, use.chain_id, use.scope, use.nonce)
        if slot not in self._free_nonces:
            holder = self._nonce_holder(*slot)
            if holder is not None:
                raise AlreadyExists(
                    f"nonce {use.nonce} of key {use.key_id} on chain {use.chain_id} is already held by request"
                    f" {holder.request_id}"
                )
        self._insert_later(ACTIONS["reserve_nonce"], "nonces", codec.NONCE_COLUMNS, row)
        self._free_nonces.discard(slot)

    @operation("hand the nonce to the replacement request")
    def move_nonce(self, use: NonceUse, from_request_id: str) -> None:
        row = codec.nonce_to_row(use)
        if use.request_id not in self._own_requests and self._request_row(use.request_id) is None:
            raise NotFound(f"there is no request with id {use.request_id} to take over nonce {use.nonce}")
        cursor = self._execute(
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
            holder = self._nonce_holder(use.key_id, use.chain_id, use.scope, use.nonce)
            held = "nobody holds it" if holder is None else f"request {holder.request_id} holds it"
            raise Aborted(
                f"nonce {use.nonce} of key {use.key_id} on chain {use.chain_id} is not held by request"
                f" {from_request_id}; {held}"
            )

    # Audit log.

    @operation("write the audit event")
    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        details = codec.encode_audit_details(draft)
        # The head is read under the write lock, so no other writer, in this process or another, can append
        # between this read and the insert: the chain never forks, and the primary key on sequence backs that up.
        if self._appended is None:
            head = self._execute(
                "SELECT sequence, hash FROM audit_events ORDER BY sequence DESC LIMIT 1"
            ).fetchone()
            self._appended = (0, GENESIS_HASH) if head is None else (head["sequence"], bytes(head["hash"]))
        last_sequence, previous_hash = self._appended
        event = chain_event(draft, last_sequence + 1, previous_hash)
        row = codec.audit_event_to_row(event, details)
        self._insert_later(ACTIONS["append_audit"], "audit_events", codec.AUDIT_COLUMNS, row)
        self._appended = (event.sequence, event.hash)
        # Returned as it reads back from the database (UTC time, details parsed from the stored JSON), so the
        # caller holds exactly what a later reader will see.
        return codec.audit_event_from_row(row)

    @operation("read the head of the audit log")
    def audit_head(self) -> AuditEvent | None:
        row = self._execute("SELECT * FROM audit_events ORDER BY sequence DESC LIMIT 1").fetchone()
        if self.holds_write_lock and self._appended is None:
            # The head read under the write lock is the one the next append chains on.
            self._appended = (0, GENESIS_HASH) if row is None else (row["sequence"], bytes(row["hash"]))
        return None if row is None else codec.audit_event_from_row(row)

    @operation("list the audit events")
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
        return [codec.audit_event_from_row(row) for row in self._execute(query, parameters)]

    @operation("read the last audit event of a kind")
    def last_audit_event_of_kind(self, kind: str) -> AuditEvent | None:
        row = self._execute(
            "SELECT * FROM audit_events WHERE kind = ? ORDER BY sequence DESC LIMIT 1", (str(kind),)
        ).fetchone()
        return None if row is None else codec.audit_event_from_row(row)

    # Policy versions.

    @operation("read the active policy")
    def active_policy(self) -> StoredPolicy | None:
        row = self._execute("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1").fetchone()
        return None if row is None else codec.policy_from_row(row)

    @operation("activate the policy")
    def activate_policy(self, policy: StoredPolicy) -> None:
        row = codec.policy_to_row(policy)
        if self._execute("SELECT 1 FROM policy_versions WHERE version = ?", (policy.version,)).fetchone():
            raise AlreadyExists(f"policy version {policy.version} already exists")
        active = self._execute("SELECT MAX(version) AS version FROM policy_versions").fetchone()["version"]
        if active is not None and active >= policy.version:
            raise Aborted(f"policy version {policy.version} is older than the active version {active}")
        self._insert("policy_versions", codec.POLICY_COLUMNS, row)

    # Seals.

    @operation("store a seal")
    def put_seal(self, subject: str, seal: bytes) -> None:
        self._execute_later(
            ACTIONS["put_seal"],
            "INSERT INTO seals (subject, seal) VALUES (?, ?)"
            " ON CONFLICT (subject) DO UPDATE SET seal = excluded.seal",
            (subject, seal),
        )

    @operation("read the seals")
    def seals(self, subjects: Sequence[str]) -> dict[str, bytes]:
        if not subjects:
            return {}
        placeholders = ", ".join("?" for _ in subjects)
        rows = self._execute(
            f"SELECT subject, seal FROM seals WHERE subject IN ({placeholders})",  # noqa: S608
            list(subjects),
        ).fetchall()
        return {row["subject"]: bytes(row["seal"]) for row in rows}

    # Schema.

    @operation("read the schema version")
    def schema_version(self) -> int:
        return self.stored_version()

    def stored_version(self) -> int:
        """The schema version the database is at; 0 before the first migration."""
        if self._execute(self._SCHEMA_VERSION_TABLE_QUERY).fetchone() is None:
            return 0
        version = self._execute("SELECT MAX(version) AS version FROM schema_version").fetchone()["version"]
        return 0 if version is None else int(version)

    def apply_migration(self, migration: Migration) -> None:
        """Run the migration's statements and record the version it produces."""
        for statement in migration.statements:
            self._execute(statement)
        self._execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (migration.version, codec.encode_time(datetime.now(UTC), "applied_at")),
        )

    # Helpers.

    def _exists(self, query: str, value: str) -> bool:
        return self._execute(query, (value,)).fetchone() is not None

    def _insert(
        self, table: str, columns: Sequence[str], row: dict[str, Any], *, unless_taken: str | None = None
    ) -> bool:
        """Insert ``row``; with ``unless_taken`` (a unique column), insert nothing when its value is already
        there. Whether the row was inserted."""
        query = _insert_statement(table, columns)
        if unless_taken is not None:
            query += f" ON CONFLICT ({unless_taken}) DO NOTHING"
        return self._execute(query, [row[column] for column in columns]).rowcount == 1

    def _insert_later(self, action: str, table: str, columns: Sequence[str], row: dict[str, Any]) -> None:
        """Insert ``row`` as a write whose answer nobody reads (``_execute_later``)."""
        self._execute_later(action, _insert_statement(table, columns), [row[column] for column in columns])

    def _request_row(self, request_id: str) -> Any:
        return self._execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()

    def _requests(self, query: str, parameters: Sequence[Any]) -> list[SigningRequest]:
        return [codec.request_from_row(row) for row in self._execute(query, parameters).fetchall()]

    def _know_key(self, key: Key) -> Key:
        if self.holds_write_lock:
            self._key_labels[key.key_id] = key.label
        return key

    def _nonce_holder(self, key_id: str, chain_id: int, scope: str, nonce: int) -> NonceUse | None:
        row = self._execute(
            "SELECT * FROM nonces WHERE key_id = ? AND chain_id = ? AND scope = ? AND nonce = ?",
            (key_id, chain_id, scope, codec.encode_nonce(nonce)),
        ).fetchone()
        return None if row is None else codec.nonce_from_row(row)


class SqlStore(TransactionDelegatingStore, ABC, Generic[_Connection]):
    """The Store port over one database, safe to share between threads: its methods run each operation on a
    pooled connection, a read as one statement without a lock and a write in a transaction of its own that
    holds the write lock.

    A backend supplies its connections (``_open``, ``_reusable``, ``_was_broken``), the transaction that
    holds the write lock (``_locked_connection``), its ``SqlTransaction`` (``_new_transaction``) and where
    the database is, for messages (``_location``); its constructor calls ``_prepare_schema`` last.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Writers in this process queue on this lock rather than on the database's, so that at most one of this
        # store's connections at a time waits for the write lock: SQLite's busy handler sleeps in growing steps
        # while it waits, which under many threads turns microseconds of waiting into tens of milliseconds.
        # Other processes and replicas still queue on the database's own lock.
        self._write_lock = threading.Lock()
        # Which threads are inside a write transaction: a second one from the same thread would wait for the
        # write lock its own thread holds, forever.
        self._writing = threading.local()
        self._idle: list[_Connection] = []
        self._closed = False

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """One transaction holding the write lock: everything done through the yielded object commits together
        when the block ends, or is rolled back when it raises."""
        return self._write_transaction("write to the database")

    # Housekeeping.

    def schema_version(self) -> int:
        return self._read(SqlTransaction.schema_version)

    def close(self) -> None:
        """Close every connection; connections in use close when their operation ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # What a backend supplies.

    @property
    @abstractmethod
    def _location(self) -> str:
        """Where the database is, in words for messages: never a password."""

    @abstractmethod
    def _open(self, action: str) -> _Connection:
        """A new connection, ready for autocommit reads; ``action`` says what it is for, in messages."""

    @abstractmethod
    def _reusable(self, connection: _Connection) -> bool:
        """Whether ``connection`` may go back to the pool; asked holding the pool's lock."""

    @abstractmethod
    def _was_broken(self, connection: _Connection) -> bool:
        """Whether ``connection`` failed because it is gone, so that work which changed nothing may be run
        again on a new one."""

    @abstractmethod
    def _locked_connection(self, action: str) -> AbstractContextManager[_Connection]:
        """A connection inside a transaction holding the write lock, committed when the block ends and rolled
        back when it raises (including when the commit itself fails)."""

    @abstractmethod
    def _new_transaction(self, connection: _Connection) -> SqlTransaction:
        """The operations, run on ``connection``."""

    # Internals.

    def _write(
        self,
        operation: Operation[_Parameters, _Result],
        *args: _Parameters.args,
        **kwargs: _Parameters.kwargs,
    ) -> _Result:
        with self._write_transaction(ACTIONS[operation.__name__]) as transaction:
            return operation(transaction, *args, **kwargs)

    def _read(
        self,
        operation: Operation[_Parameters, _Result],
        *args: _Parameters.args,
        **kwargs: _Parameters.kwargs,
    ) -> _Result:
        # Each read is one statement on an autocommit connection, so it sees one consistent snapshot without
        # waiting for writers.
        action = ACTIONS[operation.__name__]
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
        connection: _Connection,
        operation: Operation[_Parameters, _Result],
        *args: _Parameters.args,
        **kwargs: _Parameters.kwargs,
    ) -> _Result:
        with self._operations(connection) as transaction:
            return operation(transaction, *args, **kwargs)

    @contextmanager
    def _operations(self, connection: _Connection) -> Iterator[SqlTransaction]:
        """The operations on ``connection``, refused once the block ends and the connection may move on."""
        transaction = self._new_transaction(connection)
        try:
            yield transaction
        finally:
            transaction.end()

    @contextmanager
    def _write_transaction(self, action: str) -> Iterator[SqlTransaction]:
        if getattr(self._writing, "active", False):
            raise InternalError(
                f"could not {action}: this thread already has a store transaction open, and a second one would"
                " wait forever for the first; do the work through the open transaction"
            )
        self._writing.active = True
        try:
            with (
                self._write_lock,
                self._locked_connection(action) as connection,
                self._operations(connection) as transaction,
            ):
                transaction.holds_write_lock = True
                yield transaction
        finally:
            self._writing.active = False

    def _prepare_schema(self, migrations: Sequence[Migration]) -> None:
        """Bring the database up to the newest of ``migrations``, or refuse one that is newer than them; a store
        that fails here is closed, as nobody will use it."""
        try:
            latest = migrations[-1].version
            stored = self.schema_version()
            _refuse_newer(stored, latest, self._location)
            for migration in migrations:
                if migration.version > stored:
                    self._migrate(migration, latest)
        except BaseException:
            self.close()
            raise

    def _migrate(self, migration: Migration, latest: int) -> None:
        action = f"upgrade the database schema to version {migration.version}"
        with (
            self._locked_connection(action) as connection,
            self._operations(connection) as transaction,
            transaction.translated_errors(action),
        ):
            # Several stores starting together (threads, processes, replicas) all wait for the write lock; the
            # first applies the migration and the others find it done.
            stored = transaction.stored_version()
            _refuse_newer(stored, latest, self._location)
            if stored < migration.version:
                transaction.apply_migration(migration)

    @contextmanager
    def _connection(self, action: str) -> Iterator[_Connection]:
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

    def _release(self, connection: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS and self._reusable(connection):
                self._idle.append(connection)
                return
        connection.close()


def _refuse_newer(stored: int, latest: int, location: str) -> None:
    if stored > latest:
        raise ConfigurationError(
            f"the database schema is version {stored} but this custody knows up to {latest};"
            f" upgrade custody before using {location}"
        )


def _insert_statement(table: str, columns: Sequence[str]) -> str:
    # Table and column names come from this package's own constants, never from input.
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608


def _clamp(limit: int) -> int:
    return min(max(limit, 1), _MAX_LIST_LIMIT)

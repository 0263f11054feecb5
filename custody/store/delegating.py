"""The Store methods that run one StoreTransaction operation in a transaction of its own, shared by every
backend: a backend supplies its transaction class and how it runs a read and a write."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from custody.audit.events import AuditDraft, AuditEvent
from custody.domain.keys import Key, KeyState
from custody.domain.requests import Approval, RequestState, SignatureResult, SigningRequest
from custody.store.base import DaemonKey, NonceUse, StoredPolicy, StoreTransaction, VelocityUsage

# Events per statement when the whole audit log is read for verification: large enough to be fast, small
# enough that memory stays flat however long the log grows.
AUDIT_BATCH_SIZE = 5000

_Result = TypeVar("_Result")


class TransactionDelegatingStore:
    """Each method runs the operation of the same name of ``_transaction_type`` through ``_read`` (one
    statement, no write lock) or ``_write`` (a transaction of its own, holding the write lock)."""

    _transaction_type: ClassVar[type[StoreTransaction]]

    def _read(self, operation: Callable[..., _Result], *args: Any, **kwargs: Any) -> _Result:
        raise NotImplementedError

    def _write(self, operation: Callable[..., _Result], *args: Any, **kwargs: Any) -> _Result:
        raise NotImplementedError

    # Keys.

    def insert_key(self, key: Key) -> None:
        self._write(self._transaction_type.insert_key, key)

    def get_key(self, label: str) -> Key | None:
        return self._read(self._transaction_type.get_key, label)

    def list_keys(self) -> Sequence[Key]:
        return self._read(self._transaction_type.list_keys)

    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        return self._write(self._transaction_type.set_key_state, label, expected, new, at)

    def waiting_unfreezes(self, key_label: str) -> Sequence[SigningRequest]:
        return self._read(self._transaction_type.waiting_unfreezes, key_label)

    def daemon_key(self, purpose: str) -> DaemonKey | None:
        return self._read(self._transaction_type.daemon_key, purpose)

    def insert_daemon_key(self, key: DaemonKey) -> None:
        self._write(self._transaction_type.insert_daemon_key, key)

    # Seals.

    def put_seal(self, subject: str, seal: bytes) -> None:
        self._write(self._transaction_type.put_seal, subject, seal)

    def seals(self, subjects: Sequence[str]) -> dict[str, bytes]:
        return self._read(self._transaction_type.seals, subjects)

    # Requests.

    def insert_request(self, request: SigningRequest) -> None:
        self._write(self._transaction_type.insert_request, request)

    def get_request(self, request_id: str) -> SigningRequest | None:
        return self._read(self._transaction_type.get_request, request_id)

    def list_requests(
        self,
        *,
        state: RequestState | None = None,
        key_label: str | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> Sequence[SigningRequest]:
        return self._read(
            self._transaction_type.list_requests,
            state=state,
            key_label=key_label,
            requester=requester,
            limit=limit,
        )

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
        return self._write(
            self._transaction_type.transition_request,
            request_id,
            expected,
            new,
            at,
            result=result,
            error=error,
            not_before=not_before,
        )

    def claim_signing(self, request_id: str, claimant: str, now: datetime, lease_until: datetime) -> bool:
        return self._write(self._transaction_type.claim_signing, request_id, claimant, now, lease_until)

    def due_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        return self._read(self._transaction_type.due_requests, now, limit)

    def expired_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        return self._read(self._transaction_type.expired_requests, now, limit)

    def velocity_usage(self, key_label: str, since: datetime) -> VelocityUsage:
        return self._read(self._transaction_type.velocity_usage, key_label, since)

    def pending_requests_before_version(self, version: int) -> Sequence[SigningRequest]:
        return self._read(self._transaction_type.pending_requests_before_version, version)

    # Approvals.

    def insert_approval(self, approval: Approval) -> None:
        self._write(self._transaction_type.insert_approval, approval)

    def list_approvals(self, request_id: str) -> Sequence[Approval]:
        return self._read(self._transaction_type.list_approvals, request_id)

    # Nonces.

    def nonce_holder(self, key_id: str, chain_id: int, scope: str, nonce: int) -> NonceUse | None:
        return self._read(self._transaction_type.nonce_holder, key_id, chain_id, scope, nonce)

    def reserve_nonce(self, use: NonceUse) -> None:
        self._write(self._transaction_type.reserve_nonce, use)

    def move_nonce(self, use: NonceUse, from_request_id: str) -> None:
        self._write(self._transaction_type.move_nonce, use, from_request_id)

    # Audit log.

    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        return self._write(self._transaction_type.append_audit, draft)

    def audit_head(self) -> AuditEvent | None:
        return self._read(self._transaction_type.audit_head)

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
        return self._read(
            self._transaction_type.list_audit_events,
            request_id=request_id,
            actor=actor,
            kind=kind,
            since=since,
            until=until,
            after_sequence=after_sequence,
            limit=limit,
        )

    def last_audit_event_of_kind(self, kind: str) -> AuditEvent | None:
        return self._read(self._transaction_type.last_audit_event_of_kind, kind)

    def iter_audit_events(self, after_sequence: int = 0) -> Iterator[AuditEvent]:
        """Every event after ``after_sequence``, ascending, one batch per statement.

        No connection is held between batches, so a slow consumer blocks nobody. The log is append-only, so
        batches read from successive snapshots still form one unbroken run of sequence numbers.
        """
        last = after_sequence
        more = True
        while more:
            batch = self._read(
                self._transaction_type.list_audit_events, after_sequence=last, limit=AUDIT_BATCH_SIZE
            )
            more = len(batch) == AUDIT_BATCH_SIZE
            if batch:
                last = batch[-1].sequence
            yield from batch
            # Dropped before the next batch is read, so that two batches are never held at once.
            del batch

    # Policy versions.

    def active_policy(self) -> StoredPolicy | None:
        return self._read(self._transaction_type.active_policy)

    def activate_policy(self, policy: StoredPolicy) -> None:
        self._write(self._transaction_type.activate_policy, policy)

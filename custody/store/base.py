"""The storage port: what the use cases need from a database, whichever database it is.

``Store.transaction()`` opens one database transaction that takes the write lock at once (``BEGIN
IMMEDIATE`` in SQLite, a serializable-safe equivalent elsewhere): everything done through the yielded
``StoreTransaction`` commits together when the block ends, or not at all when it raises. Use cases use it to
make "may I?" and "record that I did" one step: count an approval and move the request, or activate a policy
and supersede what was pending under the old one.

Every method of ``StoreTransaction`` is also available on ``Store`` itself, where it runs in a transaction of
its own. ``transition_request`` is a conditional update: it changes a request only while it is still in the
expected state, so of two callers racing from one state exactly one wins and the other gets ``Aborted``. A
signature is part of the same update that marks the request SIGNED and is committed before the method returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from custody.audit.events import AuditDraft, AuditEvent
from custody.domain.keys import Key, KeyState
from custody.domain.requests import Approval, RequestState, SignatureResult, SigningRequest


@dataclass(frozen=True)
class VelocityUsage:
    count: int
    total_value: int  # wei
    token_amounts: dict[str, int] = field(default_factory=dict)  # base units per token (EIP-55)


@dataclass(frozen=True)
class StoredPolicy:
    version: int
    document: str  # the TOML text exactly as proposed
    activated_at: datetime
    request_id: str | None  # the policy-change request that activated it; None for the bootstrap policy


@dataclass(frozen=True)
class DaemonKey:
    """An HSM key the daemon made or adopted for itself, found again by its CKA_ID and never by its label."""

    purpose: str  # what the key is for, e.g. "audit" for the audit log's checkpoint key
    key_id: str  # hex of the CKA_ID
    public_key: bytes | None  # the public half of a key pair, to check the token's object against
    created_at: datetime


@dataclass(frozen=True)
class NonceUse:
    """Which request holds a nonce. ``scope`` is "account" for an account's transaction nonce; a Safe's own
    nonce will use "safe:<address>", so one table serves both."""

    key_id: str
    chain_id: int
    scope: str
    nonce: int
    request_id: str
    payload_hash: bytes
    created_at: datetime


class StoreTransaction(Protocol):
    # Keys.
    def insert_key(self, key: Key) -> None:
        """Store a new key; raises AlreadyExists when the label or key id is taken."""

    def get_key(self, label: str) -> Key | None: ...

    def list_keys(self) -> Sequence[Key]: ...

    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        """Conditional update of a key's state; raises NotFound or Aborted. A move to FROZEN (from either
        state) is a new freeze: it counts one more in the key's ``freezes``."""

    def waiting_unfreezes(self, key_label: str) -> Sequence[SigningRequest]:
        """The key's unfreeze requests still waiting for the admin quorum (PENDING_APPROVAL), oldest first."""

    def daemon_key(self, purpose: str) -> DaemonKey | None:
        """The daemon's own HSM key for ``purpose``; None before it was first stored."""

    def insert_daemon_key(self, key: DaemonKey) -> None:
        """Store the daemon's own HSM key; raises AlreadyExists when one is stored for that purpose."""

    # Requests.
    def insert_request(self, request: SigningRequest) -> None:
        """Store a new request in its initial state; raises AlreadyExists for a duplicate request id."""

    def get_request(self, request_id: str) -> SigningRequest | None: ...

    def list_requests(
        self,
        *,
        state: RequestState | None = None,
        key_label: str | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> Sequence[SigningRequest]:
        """Newest first."""

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
        """Move a request from ``expected`` to ``new`` and return the stored row.

        Raises NotFound for an unknown id, WrongState when the transition is not one of the state machine's,
        and Aborted when the stored state is no longer ``expected`` (another caller won).
        """

    def claim_signing(self, request_id: str, claimant: str, now: datetime, lease_until: datetime) -> bool:
        """Take the right to call the HSM for an APPROVED request, until ``lease_until``.

        True when this caller now holds the claim: the request is APPROVED and unclaimed, or its previous
        claim lapsed before ``now`` (its holder died). Keeps two workers or replicas from signing one request.
        Whether the request may be signed now is not this method's question: the caller asks
        custody.domain.signing.signing_refusal in the same transaction first.
        """

    def due_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        """APPROVED requests of the signing kinds whose time-lock has passed (``not_before`` unset or at most
        ``now``) and that nobody holds a live claim on, oldest first."""

    def expired_requests(self, now: datetime, limit: int) -> Sequence[SigningRequest]:
        """PENDING_APPROVAL or APPROVED requests (and unsigned) whose ``expires_at`` is at most ``now``."""

    def velocity_usage(self, key_label: str, since: datetime) -> VelocityUsage:
        """Requests of a key created at or after ``since`` that wait for approvals, were approved or were signed
        (PENDING_APPROVAL, APPROVED, SIGNED): how many, and the wei they move."""

    def pending_requests_before_version(self, version: int) -> Sequence[SigningRequest]:
        """Requests still waiting (PENDING_APPROVAL, or APPROVED and unsigned) decided under an older policy."""

    # Approvals.
    def insert_approval(self, approval: Approval) -> None:
        """Store an approval or rejection; raises AlreadyExists when this approver already gave a verdict."""

    def list_approvals(self, request_id: str) -> Sequence[Approval]:
        """In the order they were counted."""

    # Nonces. A nonce is held by a request that is waiting, approved or signed; when the holder ends unsigned
    # (denied, rejected, expired, cancelled, failed) the store releases the nonce in that same transition.
    def nonce_holder(self, key_id: str, chain_id: int, scope: str, nonce: int) -> NonceUse | None: ...

    def reserve_nonce(self, use: NonceUse) -> None:
        """Record that ``use.request_id`` holds the nonce; raises AlreadyExists when another request holds it
        (a unique constraint backs the caller's check)."""

    def move_nonce(self, use: NonceUse, from_request_id: str) -> None:
        """Hand a held nonce to a replacement request; raises Aborted unless ``from_request_id`` holds it."""

    # Audit log.
    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        """Chain an event after the current head, in this transaction: if it cannot be written, nothing in the
        transaction is (fail closed)."""

    def audit_head(self) -> AuditEvent | None: ...

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
        """Ascending by sequence; ``limit`` clamped to 1..10000."""

    def last_audit_event_of_kind(self, kind: str) -> AuditEvent | None: ...

    # Policy versions.
    def active_policy(self) -> StoredPolicy | None:
        """The newest activated policy; None before the first one is stored."""

    def activate_policy(self, policy: StoredPolicy) -> None:
        """Store and activate a policy version; raises Aborted unless it is newer than the active one."""

    # Seals (custody/domain/seals.py): one HMAC computed in the HSM per record the daemon relies on to sign.
    def put_seal(self, subject: str, seal: bytes) -> None:
        """Store the seal of the record ``subject`` names, replacing the one stored before."""

    def seals(self, subjects: Sequence[str]) -> dict[str, bytes]:
        """The stored seals of ``subjects``; a subject without a seal is missing from the answer."""


class Store(StoreTransaction, Protocol):
    def transaction(self) -> AbstractContextManager[StoreTransaction]: ...

    def iter_audit_events(self, after_sequence: int = 0) -> Iterator[AuditEvent]:
        """Every event after ``after_sequence`` in ascending order, read in batches (for verification)."""

    def schema_version(self) -> int: ...

    def close(self) -> None: ...

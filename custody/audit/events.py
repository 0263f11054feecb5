"""Audit events and the hash that chains them.

Every state change custody makes is recorded as an event in the same database transaction as the change. Each
event's hash covers a canonical, versioned encoding of the event and the previous event's hash, so editing,
deleting, inserting or reordering any event breaks every hash after it. Verification lives in
``custody/audit/chain.py``; this module fixes what an event is and how its hash is computed, which the store
needs to append events and every verifier needs to check them.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from custody.domain.canonical_json import canonical_json

EVENT_ENCODING_PREFIX = b"custody audit event v1\n"
# The previous hash of the first event: there is nothing before it.
GENESIS_HASH = bytes(32)


class AuditKind(enum.StrEnum):
    """What an audit event records. Events read back from a log keep their kind as text, so that a log written
    by another version of custody still verifies; the daemon writes only these."""

    ANCHOR_RETIRED = "anchor.retired"
    APPROVAL_COUNTED = "approval.counted"
    APPROVAL_REFUSED = "approval.refused"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    AUTH_REFUSED = "auth.refused"
    KEY_CREATED = "key.created"
    KEY_FROZEN = "key.frozen"
    KEY_UNFROZEN = "key.unfrozen"
    PERMISSION_DENIED = "permission.denied"
    POLICY_ACTIVATED = "policy.activated"
    POLICY_PROPOSED = "policy.proposed"
    REQUEST_APPROVED = "request.approved"
    REQUEST_CANCELLED = "request.cancelled"
    REQUEST_DENIED = "request.denied"
    REQUEST_EXPIRED = "request.expired"
    REQUEST_FAILED = "request.failed"
    REQUEST_REJECTED = "request.rejected"
    REQUEST_SIGNED = "request.signed"
    REQUEST_SUBMITTED = "request.submitted"
    SEAL_MISMATCH = "seal.mismatch"
    SEALS_CREATED = "seals.created"


@dataclass(frozen=True)
class AuditDraft:
    """An event before the store gives it its place in the chain."""

    time: datetime  # timezone-aware
    actor: str  # the principal, or "custody" for the daemon's own work (worker, startup)
    kind: AuditKind
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # JSON values only; never secrets


@dataclass(frozen=True)
class AuditEvent:
    sequence: int  # 1, 2, 3, ... without gaps
    time: datetime
    actor: str
    kind: str
    request_id: str | None
    details: Mapping[str, Any]
    previous_hash: bytes
    hash: bytes


def format_time(value: datetime) -> str:
    """Fixed-width UTC with microseconds, so the encoding of a time never depends on how it was made."""
    if value.tzinfo is None:
        raise ValueError("audit event times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_encoding(sequence: int, draft: AuditDraft | AuditEvent, previous_hash: bytes) -> bytes:
    """The bytes an event's hash covers: a version prefix, then compact JSON with sorted keys."""
    body = {
        "sequence": sequence,
        "time": format_time(draft.time),
        "actor": draft.actor,
        "kind": draft.kind,
        "request_id": draft.request_id,
        "details": dict(draft.details),
        "previous_hash": previous_hash.hex(),
    }
    return EVENT_ENCODING_PREFIX + canonical_json(body, ascii_only=True).encode("ascii")


def event_hash(sequence: int, draft: AuditDraft | AuditEvent, previous_hash: bytes) -> bytes:
    return hashlib.sha256(canonical_encoding(sequence, draft, previous_hash)).digest()


def chain_event(draft: AuditDraft, sequence: int, previous_hash: bytes) -> AuditEvent:
    """Give a draft its place after the event whose hash is ``previous_hash``."""
    return AuditEvent(
        sequence=sequence,
        time=draft.time,
        actor=draft.actor,
        kind=draft.kind,
        request_id=draft.request_id,
        details=dict(draft.details),
        previous_hash=previous_hash,
        hash=event_hash(sequence, draft, previous_hash),
    )

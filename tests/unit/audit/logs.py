"""Building real audit logs for the verification tests: chained with chain_event, checkpoints signed by Ed25519.

The checkpoint writer here does what the daemon does: after every ``checkpoint_every`` ordinary events it signs
the statement for the head with the audit key and chains the checkpoint draft right after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custody.audit.chain import checkpoint_draft, checkpoint_statement
from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, chain_event, event_hash

START = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
KINDS = ("request.submitted", "approval.counted", "request.approved", "request.signed", "key.frozen")


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ordinary_draft(index: int) -> AuditDraft:
    """A varied, realistic event: nested details, numbers, nulls, non-ASCII text and no request on some."""
    details: dict[str, Any] = {"nonce": index, "chain_id": 1, "to": f"0x{index:040x}", "note": None}
    if index % 3 == 0:
        details["reason"] = "approver café refused: quorum 2 of treasury"
        details["amounts"] = [index, -index, 1.5, {"wei": str(10**18 + index)}]
    return AuditDraft(
        time=START + timedelta(seconds=index, microseconds=index * 7),
        actor="custody" if index % 5 == 0 else f"alice-{index % 2}",
        kind=KINDS[index % len(KINDS)],
        request_id=None if index % 4 == 0 else f"req_{index:032x}",
        details=details,
    )


def sign_checkpoint(private_key: Ed25519PrivateKey, head: AuditEvent) -> AuditDraft:
    signature = private_key.sign(checkpoint_statement(head.sequence, head.hash))
    return checkpoint_draft(
        head, raw_public_key(private_key), signature, head.time + timedelta(milliseconds=1)
    )


def iter_log(count: int, private_key: Ed25519PrivateKey, checkpoint_every: int) -> Iterator[AuditEvent]:
    """``count`` events in all, a checkpoint after every ``checkpoint_every`` ordinary ones."""
    previous: AuditEvent | None = None
    ordinary = 0
    since_checkpoint = 0
    for sequence in range(1, count + 1):
        if previous is not None and since_checkpoint == checkpoint_every:
            draft = sign_checkpoint(private_key, previous)
            since_checkpoint = 0
        else:
            ordinary += 1
            since_checkpoint += 1
            draft = ordinary_draft(ordinary)
        event = chain_event(draft, sequence, previous.hash if previous is not None else GENESIS_HASH)
        yield event
        previous = event


def build_log(count: int, private_key: Ed25519PrivateKey, checkpoint_every: int = 4) -> list[AuditEvent]:
    return list(iter_log(count, private_key, checkpoint_every))


def rehash(event: AuditEvent, previous_hash: bytes | None = None) -> AuditEvent:
    """What a forger with database access does after editing an event: recompute its hash (and link)."""
    linked = replace(event, previous_hash=event.previous_hash if previous_hash is None else previous_hash)
    return replace(linked, hash=event_hash(linked.sequence, linked, linked.previous_hash))


def rechain(events: list[AuditEvent], start: int) -> list[AuditEvent]:
    """Recompute every link and hash from position ``start`` on, as a forger rewriting the rest of the log."""
    out = list(events[:start])
    for event in events[start:]:
        out.append(rehash(event, out[-1].hash if out else GENESIS_HASH))
    return out

"""The anchor: what the daemon keeps about its audit log outside the database, so that a database restored to an
older copy, truncated or rewritten is noticed.

Whoever can write the database can put an older copy back, with every seal and every checkpoint of that time:
each row then verifies, and the daemon would act on state it already moved past (a key frozen since, requests
signed since and their nonces). The HSM token is outside that writer's reach (its objects need the PIN), so the
daemon keeps there, in a private token data object labelled ``custody-anchor``, the last audit event it
vouches for: its sequence and hash, and the CKA_ID of the seal key, so that the token also remembers that
seals exist. It rewrites the anchor at every checkpoint and at start; at start and in online verification the
database's audit log must still hold that event with that hash.

This module is the anchor's encoding and the comparison, without I/O; custody/app/anchor.py reads and writes the
token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from custody.audit.events import AuditEvent
from custody.domain.canonical_json import canonical_json

ANCHOR_LABEL = "custody-anchor"
# An anchor an operator retired deliberately (docs/operations.md) is kept under this label until the next start
# records it in the audit log.
RETIRED_ANCHOR_LABEL = "custody-retired-anchor"
_FORMAT = "custody anchor v1"
_HASH_BYTES = 32


class AuditReader(Protocol):
    def audit_head(self) -> AuditEvent | None: ...

    def list_audit_events(self, *, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEvent]: ...


@dataclass(frozen=True)
class Anchor:
    """The audit event the daemon vouches for, and the seal key of the database it belongs to."""

    seal_key_id: str  # hex CKA_ID of the seal key
    sequence: int
    hash: bytes
    # True when the daemon that wrote the anchor sealed the last event of every write transaction (see
    # custody/audit/head.py): from then on, the audit log's head at start must carry such a seal too. An anchor
    # of an older version says False, and the head found at start is trusted as it verifies.
    heads_sealed: bool = False

    def encode(self) -> bytes:
        body: dict[str, object] = {
            "format": _FORMAT,
            "seal_key_id": self.seal_key_id,
            "sequence": self.sequence,
            "hash": self.hash.hex(),
        }
        if self.heads_sealed:
            body["heads_sealed"] = True
        return canonical_json(body, ascii_only=True).encode("ascii")

    @classmethod
    def decode(cls, value: bytes) -> Anchor:
        """The anchor ``value`` encodes; ValueError naming what is wrong when it is not one."""
        try:
            body = json.loads(value.decode("ascii"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("it is not the JSON custody writes") from None
        if not isinstance(body, dict) or body.get("format") != _FORMAT:
            raise ValueError(f"its format is not {_FORMAT!r}")
        seal_key_id, sequence, hash_text = body.get("seal_key_id"), body.get("sequence"), body.get("hash")
        if not isinstance(seal_key_id, str) or not isinstance(hash_text, str):
            raise ValueError("its seal key id or hash is not text")
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
            raise ValueError("its sequence is not a positive whole number")
        try:
            bytes.fromhex(seal_key_id)
            hash_value = bytes.fromhex(hash_text)
        except ValueError:
            raise ValueError("its seal key id or hash is not hexadecimal") from None
        if len(hash_value) != _HASH_BYTES:
            raise ValueError("its hash is not 32 bytes")
        heads_sealed = body.get("heads_sealed", False)
        if not isinstance(heads_sealed, bool):
            raise ValueError("its heads_sealed is not true or false")
        return cls(seal_key_id=seal_key_id, sequence=sequence, hash=hash_value, heads_sealed=heads_sealed)

    @classmethod
    def of(cls, seal_key_id: bytes, event: AuditEvent) -> Anchor:
        """The anchor this version writes for ``event``: it seals every write transaction's last event."""
        return cls(seal_key_id=seal_key_id.hex(), sequence=event.sequence, hash=event.hash, heads_sealed=True)

    def describe(self) -> str:
        return f"audit event {self.sequence} (hash {self.hash.hex()[:16]}...) of seal key {self.seal_key_id}"


def latest_for(anchors: Iterable[Anchor], seal_key_id: bytes) -> Anchor | None:
    """The furthest anchor of the seal key ``seal_key_id``: a crash between writing a new anchor and removing the
    old one leaves both, and the newer one counts."""
    mine = [anchor for anchor in anchors if anchor.seal_key_id == seal_key_id.hex()]
    return max(mine, key=lambda anchor: anchor.sequence, default=None)


@dataclass(frozen=True)
class AnchorMismatch:
    sequence: int  # the anchored event's sequence
    problem: str  # one sentence naming what differs


def anchor_mismatch(anchor: Anchor, reader: AuditReader) -> AnchorMismatch | None:
    """How the database's audit log differs from what ``anchor`` vouches for, or None when it holds that event
    with that hash (events after it are the database's own, checked by the chain's verification)."""
    found = reader.list_audit_events(after_sequence=anchor.sequence - 1, limit=1)
    head = reader.audit_head()
    return event_mismatch(
        anchor.sequence,
        anchor.hash,
        found[0] if found and found[0].sequence == anchor.sequence else None,
        head.sequence if head is not None else 0,
        holder="the database's audit log",
        voucher="the HSM token's anchor",
    )


def event_mismatch(
    sequence: int, expected_hash: bytes, found: AuditEvent | None, ends_at: int, *, holder: str, voucher: str
) -> AnchorMismatch | None:
    """How a log (``holder``) that ends at ``ends_at`` and holds ``found`` at ``sequence`` differs from the event
    ``voucher`` recorded there with ``expected_hash``; None when it holds that very event."""
    if found is None:
        if ends_at < sequence:
            problem = (
                f"{holder} ends at event {ends_at}, but {voucher} vouches for event {sequence}: the database was"
                " restored to an older copy or its newest events were deleted"
            )
        else:
            problem = (
                f"audit event {sequence}, which {voucher} vouches for, is missing from {holder}: the audit log"
                " was rewritten"
            )
        return AnchorMismatch(sequence, problem)
    if found.hash != expected_hash:
        return AnchorMismatch(
            sequence,
            f"audit event {sequence} in {holder} has hash {found.hash.hex()[:16]}..., but {voucher} vouches for"
            f" hash {expected_hash.hex()[:16]}...: the audit log was rewritten or the database replaced by"
            " another",
        )
    return None

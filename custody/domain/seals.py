"""What the daemon seals: the canonical bytes of each stored record that lets a request be signed.

Whoever can write the database must not gain the power to sign. So every record the signing decision relies on
(the active policy version, a request's decision fields, a request's move to APPROVED with its time-lock, a
key's state) is sealed with an HMAC key held in the HSM: the daemon computes the seal over the bytes defined
here when it writes the record and recomputes it before it relies on the record. A database writer has no seal
key, so an edited, inserted or copied row does not verify.

Each encoding starts with a prefix naming its format and binds the record's identity (the policy version, the
request id, the key label and id), so a seal copied from one record to another does not verify either. The
functions are pure: the same record gives the same bytes in every process and on every backend.

The audit log is sealed too: every write transaction that appends events seals its last event's place and hash
(``sealed_audit_head``), so events a database writer appends, however well chained, carry no seal.

What a seal does not cover: restoring a whole row, together with its seal, to an older sealed value of the
same record (a key's state before its latest freeze, say). Seals authenticate records, not their freshness.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from custody.domain.canonical_json import canonical_json
from custody.domain.keys import Key
from custody.domain.requests import SigningRequest

_POLICY_PREFIX = b"custody sealed policy v1\n"
_DECISION_PREFIX = b"custody sealed decision v1\n"
_APPROVAL_PREFIX = b"custody sealed approval v1\n"
_KEY_PREFIX = b"custody sealed key v2\n"
_KEY_PREFIX_BEFORE_FREEZE_COUNTS = b"custody sealed key v1\n"
_AUDIT_HEAD_PREFIX = b"custody sealed audit head v1\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def policy_subject(version: int) -> str:
    """The name of a policy version's seal in the store."""
    return f"policy:{version}"


def decision_subject(request_id: str) -> str:
    """The name of a request's decision seal in the store."""
    return f"request:{request_id}:decision"


def approval_subject(request_id: str) -> str:
    """The name of the seal of a request's move to APPROVED in the store."""
    return f"request:{request_id}:approved"


def key_subject(label: str) -> str:
    """The name of a key's seal in the store."""
    return f"key:{label}"


def audit_head_subject(sequence: int) -> str:
    """The name of the seal of the audit event a write transaction ended with, in the store."""
    return f"audit-head:{sequence}"


def sealed_audit_head(sequence: int, event_hash: bytes) -> bytes:
    """The last audit event a write transaction appended, by its place and hash. The hash chain binds every
    event before it, so this one seal authenticates the whole log up to it as written by a daemon holding the
    seal key."""
    return _AUDIT_HEAD_PREFIX + _encode({"sequence": sequence, "hash": event_hash.hex()})


def sealed_policy(version: int, document: str) -> bytes:
    """A policy version as activated: its number and its exact text."""
    return _POLICY_PREFIX + _encode({"version": version, "document": document})


def sealed_decision(request: SigningRequest) -> bytes:
    """What was decided about a request when it was submitted, and what it was decided on.

    Everything that lets it be signed or sets who must approve it: its key, the payload's hash and digest, the
    kind, the rule, the action, the quorum, the time-lock it was given, the policy version, its lifetime and
    the request whose nonce it takes over. The state is not here: it changes, and the one move that lets a
    request be signed later has a seal of its own (``sealed_approval``).
    """
    decision = request.decision
    return _DECISION_PREFIX + _encode(
        {
            "request_id": request.request_id,
            "key_label": request.key_label,
            "key_id": request.key_id,
            "requester": request.requester,
            "kind": request.kind.value,
            "chain_id": request.chain_id,
            "payload_hash": request.payload_hash.hex(),
            "digest": request.digest.hex(),
            "action": decision.action.value,
            "rule": decision.rule,
            "policy_version": decision.policy_version,
            "quorum": [[term.group, term.threshold] for term in decision.quorum],
            "timelock_seconds": decision.timelock_seconds,
            "expires_at": _time(request.expires_at),
            "replaces": request.replaces,
        }
    )


def sealed_approval(request_id: str, not_before: datetime | None) -> bytes:
    """A request's move to APPROVED, by policy at submission or by a completed quorum, with the earliest
    moment it may be signed (None without a time-lock)."""
    return _APPROVAL_PREFIX + _encode(
        {"request_id": request_id, "state": "APPROVED", "not_before": _time(not_before)}
    )


def sealed_key(key: Key) -> bytes:
    """A key as the daemon last wrote it: its identity, public key, state and freeze count. The count rises with
    every freeze, so a row from before a freeze carries a lower one than the audit log's latest freeze names."""
    return _KEY_PREFIX + _encode({**_key_fields(key), "freezes": key.freezes})


def sealed_key_before_freeze_counts(key: Key) -> bytes:
    """A key as versions before the freeze count was sealed sealed it: what a start checks such a seal against
    before it seals the key again with its count."""
    return _KEY_PREFIX_BEFORE_FREEZE_COUNTS + _encode(_key_fields(key))


def _key_fields(key: Key) -> dict[str, object]:
    return {
        "label": key.label,
        "key_id": key.key_id,
        "address": key.address,
        "public_key": key.public_key.hex(),
        "state": key.state.value,
    }


def _encode(value: dict[str, object]) -> bytes:
    return canonical_json(value, ascii_only=True).encode("ascii")


def _time(moment: datetime | None) -> int | None:
    # Microseconds since the epoch: the same instant gives the same number whatever time zone the datetime
    # was read back in.
    return None if moment is None else (moment - _EPOCH) // timedelta(microseconds=1)

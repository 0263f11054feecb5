"""Conversions between domain objects and database rows, shared by the database adapters.

Rows are read as mappings from column name to value, so both the SQLite and the PostgreSQL adapters can use
these functions with their own row types.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from custody.audit.events import AuditDraft, AuditEvent, format_time
from custody.domain.canonical_json import canonical_json
from custody.domain.errors import InvalidInput
from custody.domain.keys import Key, KeyState
from custody.domain.requests import (
    FINAL_STATES,
    GOVERNANCE_KINDS,
    SIGNING_KINDS,
    Approval,
    Decision,
    DecisionAction,
    PayloadKind,
    QuorumTerm,
    RequestState,
    SignatureResult,
    SigningRequest,
    Verdict,
)
from custody.store.base import DaemonKey, NonceUse, StoredPolicy


class Row(Protocol):
    """A database row that can be indexed by column name (sqlite3.Row, a psycopg dict row, a dict)."""

    def __getitem__(self, column: str, /) -> Any: ...


# Fixed width with microseconds and a literal "Z", so that text order is time order in every database.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIME_LENGTH = len("2026-01-01T00:00:00.000000Z")

# The largest value a BIGINT column holds; Python integers are unbounded, database integers are not.
_MAX_BIGINT = 2**63 - 1

# Wei amounts are stored as decimal text; an Ethereum value is a 256-bit unsigned integer.
_MAX_WEI = 2**256 - 1

# Nonces are decimal text too: an account nonce reaches 2**64 - 1 and a Safe's nonce is a 256-bit integer.
_MAX_NONCE = 2**256 - 1

# SQL lists of the kinds, built from the domain's own sets so that the queries follow the domain. They hold
# fixed enum values only, never input, so writing them into query text is safe.
SIGNING_KINDS_SQL = ", ".join(
    f"'{kind.value}'" for kind in sorted(SIGNING_KINDS, key=lambda kind: kind.value)
)
GOVERNANCE_KINDS_SQL = ", ".join(
    f"'{kind.value}'" for kind in sorted(GOVERNANCE_KINDS, key=lambda kind: kind.value)
)

# The final states a request reaches without a signature: its nonce is free again for another request.
UNSIGNED_FINAL_STATES = FINAL_STATES - {RequestState.SIGNED}

KEY_COLUMNS = ("key_id", "label", "address", "public_key", "state", "freezes", "created_at", "updated_at")

REQUEST_COLUMNS = (
    "request_id",
    "key_label",
    "key_id",
    "requester",
    "kind",
    "chain_id",
    "payload",
    "payload_hash",
    "digest",
    "decision_action",
    "decision_rule",
    "decision_reason",
    "policy_version",
    "state",
    "signature",
    "signed_tx",
    "tx_hash",
    "error",
    "summary",
    "created_at",
    "updated_at",
    "expires_at",
    "not_before",
    "policy_trace",
    "value_wei",
    "quorum",
    "timelock_seconds",
    "replaces",
    "token_amounts",
)

APPROVAL_COLUMNS = ("request_id", "approver", "verdict", "statement", "signature", "reason", "created_at")

POLICY_COLUMNS = ("version", "document", "activated_at", "request_id")

AUDIT_COLUMNS = ("sequence", "time", "actor", "kind", "request_id", "details", "previous_hash", "hash")

NONCE_COLUMNS = ("key_id", "chain_id", "scope", "nonce", "request_id", "payload_hash", "created_at")


def encode_time(value: datetime, field: str) -> str:
    """UTC text for ``value``; a naive datetime is refused because its time zone would be a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("a time without a time zone cannot be stored; pass an aware datetime", field=field)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def decode_time(text: str) -> datetime:
    # datetime.fromisoformat costs a tenth of strptime, which a request's rows call about ten times; it
    # accepts more forms than the one encode_time writes, so the shape is checked first.
    if len(text) != _TIME_LENGTH or text[10] != "T" or text[-1] != "Z":
        raise ValueError(f"time data {text!r} does not match format {_TIME_FORMAT!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def encode_optional_time(value: datetime | None, field: str) -> str | None:
    return None if value is None else encode_time(value, field)


def _decode_optional_time(text: str | None) -> datetime | None:
    return None if text is None else decode_time(text)


def _check_bigint(value: int, field: str) -> int:
    if not 0 <= value <= _MAX_BIGINT:
        raise InvalidInput(f"must be between 0 and {_MAX_BIGINT}, got {value}", field=field)
    return value


def _encode_wei(value: int, field: str) -> str:
    if not 0 <= value <= _MAX_WEI:
        raise InvalidInput(f"must be a wei amount between 0 and 2**256 - 1, got {value}", field=field)
    return str(value)


def encode_token_amounts(amounts: dict[str, int]) -> str:
    for token, amount in amounts.items():
        _encode_wei(amount, f"token_amounts[{token}]")
    return canonical_json({token: str(amount) for token, amount in amounts.items()}, ascii_only=True)


def decode_token_amounts(text: str) -> dict[str, int]:
    return {token: int(amount) for token, amount in json.loads(text).items()}


def _encode_quorum(quorum: tuple[QuorumTerm, ...]) -> str:
    terms = []
    for term in quorum:
        _check_bigint(term.threshold, "quorum")
        terms.append({"group": term.group, "threshold": term.threshold})
    return canonical_json(terms, ascii_only=True)


def _decode_quorum(text: str) -> tuple[QuorumTerm, ...]:
    return tuple(QuorumTerm(group=term["group"], threshold=term["threshold"]) for term in json.loads(text))


def _key_reference(value: str) -> str | None:
    # The domain writes "" for the key of a policy change, which concerns no key; the database says NULL, so
    # that the foreign key to keys applies to every request that does name one.
    return value or None


def key_to_row(key: Key) -> dict[str, Any]:
    created_at = encode_time(key.created_at, "created_at")
    return {
        "key_id": key.key_id,
        "label": key.label,
        "address": key.address,
        "public_key": key.public_key,
        "state": key.state.value,
        "freezes": key.freezes,
        "created_at": created_at,
        "updated_at": created_at,
    }


def key_from_row(row: Row) -> Key:
    return Key(
        label=row["label"],
        key_id=row["key_id"],
        address=row["address"],
        public_key=bytes(row["public_key"]),
        state=KeyState(row["state"]),
        created_at=decode_time(row["created_at"]),
        freezes=row["freezes"],
    )


DAEMON_KEY_COLUMNS = ("purpose", "key_id", "public_key", "created_at")


def daemon_key_to_row(key: DaemonKey) -> dict[str, Any]:
    return {
        "purpose": key.purpose,
        "key_id": key.key_id,
        "public_key": key.public_key,
        "created_at": encode_time(key.created_at, "created_at"),
    }


def daemon_key_from_row(row: Row) -> DaemonKey:
    public_key = row["public_key"]
    return DaemonKey(
        purpose=row["purpose"],
        key_id=row["key_id"],
        public_key=None if public_key is None else bytes(public_key),
        created_at=decode_time(row["created_at"]),
    )


def check_key_reference(request: SigningRequest) -> None:
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


def request_to_row(request: SigningRequest) -> dict[str, Any]:
    result = request.result
    return {
        "request_id": request.request_id,
        "key_label": _key_reference(request.key_label),
        "key_id": _key_reference(request.key_id),
        "requester": request.requester,
        "kind": request.kind.value,
        "chain_id": None if request.chain_id is None else _check_bigint(request.chain_id, "chain_id"),
        "payload": request.payload,
        "payload_hash": request.payload_hash,
        "digest": request.digest,
        "decision_action": request.decision.action.value,
        "decision_rule": request.decision.rule,
        "decision_reason": request.decision.reason,
        "policy_version": _check_bigint(request.decision.policy_version, "policy_version"),
        "state": request.state.value,
        "signature": None if result is None else result.signature,
        "signed_tx": None if result is None else result.signed_tx,
        "tx_hash": None if result is None else result.tx_hash,
        "error": request.error,
        "summary": canonical_json(request.summary, ascii_only=True),
        "created_at": encode_time(request.created_at, "created_at"),
        "updated_at": encode_time(request.updated_at, "updated_at"),
        "expires_at": encode_optional_time(request.expires_at, "expires_at"),
        "not_before": encode_optional_time(request.not_before, "not_before"),
        "policy_trace": request.policy_trace,
        "value_wei": _encode_wei(request.value, "value"),
        "quorum": _encode_quorum(request.decision.quorum),
        "timelock_seconds": _check_bigint(request.decision.timelock_seconds, "timelock_seconds"),
        "replaces": request.replaces,
        "token_amounts": encode_token_amounts(request.token_amounts),
    }


def _optional_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def request_from_row(row: Row) -> SigningRequest:
    signature = _optional_bytes(row["signature"])
    result = (
        None
        if signature is None
        else SignatureResult(
            signature=signature,
            signed_tx=_optional_bytes(row["signed_tx"]),
            tx_hash=_optional_bytes(row["tx_hash"]),
        )
    )
    return SigningRequest(
        request_id=row["request_id"],
        key_label=row["key_label"] or "",
        key_id=row["key_id"] or "",
        requester=row["requester"],
        kind=PayloadKind(row["kind"]),
        chain_id=row["chain_id"],
        payload=bytes(row["payload"]),
        payload_hash=bytes(row["payload_hash"]),
        digest=bytes(row["digest"]),
        decision=Decision(
            action=DecisionAction(row["decision_action"]),
            rule=row["decision_rule"],
            reason=row["decision_reason"],
            policy_version=row["policy_version"],
            quorum=_decode_quorum(row["quorum"]),
            timelock_seconds=row["timelock_seconds"],
        ),
        state=RequestState(row["state"]),
        created_at=decode_time(row["created_at"]),
        updated_at=decode_time(row["updated_at"]),
        result=result,
        error=row["error"],
        summary=json.loads(row["summary"]),
        expires_at=_decode_optional_time(row["expires_at"]),
        not_before=_decode_optional_time(row["not_before"]),
        policy_trace=row["policy_trace"],
        value=int(row["value_wei"]),
        replaces=row["replaces"],
        token_amounts=decode_token_amounts(row["token_amounts"]),
    )


def approval_to_row(approval: Approval) -> dict[str, Any]:
    return {
        "request_id": approval.request_id,
        "approver": approval.approver,
        "verdict": approval.verdict.value,
        "statement": approval.statement,
        "signature": approval.signature,
        "reason": approval.reason,
        "created_at": encode_time(approval.created_at, "created_at"),
    }


def approval_from_row(row: Row) -> Approval:
    return Approval(
        request_id=row["request_id"],
        approver=row["approver"],
        verdict=Verdict(row["verdict"]),
        statement=bytes(row["statement"]),
        signature=bytes(row["signature"]),
        reason=row["reason"],
        created_at=decode_time(row["created_at"]),
    )


def policy_to_row(policy: StoredPolicy) -> dict[str, Any]:
    return {
        "version": _check_bigint(policy.version, "version"),
        "document": policy.document,
        "activated_at": encode_time(policy.activated_at, "activated_at"),
        "request_id": policy.request_id,
    }


def policy_from_row(row: Row) -> StoredPolicy:
    return StoredPolicy(
        version=row["version"],
        document=row["document"],
        activated_at=decode_time(row["activated_at"]),
        request_id=row["request_id"],
    )


def encode_audit_details(draft: AuditDraft) -> str:
    """The details as the event hash covers them: compact JSON with sorted keys, ASCII only.

    Stored in exactly this form, so that reading the row back and encoding the details again gives the same
    bytes and the stored hash recomputes. A draft that could not be hashed (a naive time, details that are not
    JSON) is refused here, before anything is written.
    """
    if draft.time.tzinfo is None or draft.time.utcoffset() is None:
        raise InvalidInput(
            f"the time of a {draft.kind} audit event has no time zone; pass an aware datetime", field="time"
        )
    try:
        return canonical_json(dict(draft.details), ascii_only=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"the details of a {draft.kind} audit event must be JSON values under text keys: {exc}",
            field="details",
        ) from exc


def audit_event_to_row(event: AuditEvent, details: str) -> dict[str, Any]:
    return {
        "sequence": _check_bigint(event.sequence, "sequence"),
        "time": format_time(event.time),
        "actor": event.actor,
        "kind": str(event.kind),
        "request_id": event.request_id,
        "details": details,
        "previous_hash": event.previous_hash,
        "hash": event.hash,
    }


def audit_event_from_row(row: Row) -> AuditEvent:
    return AuditEvent(
        sequence=row["sequence"],
        time=decode_time(row["time"]),
        actor=row["actor"],
        kind=row["kind"],
        request_id=row["request_id"],
        details=json.loads(row["details"]),
        previous_hash=bytes(row["previous_hash"]),
        hash=bytes(row["hash"]),
    )


def encode_nonce(nonce: int) -> str:
    if not 0 <= nonce <= _MAX_NONCE:
        raise InvalidInput(f"must be a nonce between 0 and 2**256 - 1, got {nonce}", field="nonce")
    return str(nonce)


def nonce_to_row(use: NonceUse) -> dict[str, Any]:
    return {
        "key_id": use.key_id,
        "chain_id": _check_bigint(use.chain_id, "chain_id"),
        "scope": use.scope,
        "nonce": encode_nonce(use.nonce),
        "request_id": use.request_id,
        "payload_hash": use.payload_hash,
        "created_at": encode_time(use.created_at, "created_at"),
    }


def nonce_from_row(row: Row) -> NonceUse:
    return NonceUse(
        key_id=row["key_id"],
        chain_id=row["chain_id"],
        scope=row["scope"],
        nonce=int(row["nonce"]),
        request_id=row["request_id"],
        payload_hash=bytes(row["payload_hash"]),
        created_at=decode_time(row["created_at"]),
    )

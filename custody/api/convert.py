"""Conversions between domain objects and protobuf messages. Nothing here decides anything."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from custody.api._gen import custody_pb2 as pb
from custody.audit.events import AuditEvent, format_time
from custody.domain.canonical_json import canonical_json
from custody.domain.errors import InvalidInput
from custody.domain.keys import Key, KeyState
from custody.domain.quorum import QuorumProgress
from custody.domain.requests import Approval, Decision, PayloadKind, RequestState, SigningRequest

# Protobuf enum values are typed as their own int subtypes in the stubs, so the tables are plain ints here.
_KEY_STATES: dict[KeyState, Any] = {
    KeyState.ACTIVE: pb.KEY_STATE_ACTIVE,
    KeyState.FROZEN: pb.KEY_STATE_FROZEN,
}
_KINDS: dict[PayloadKind, Any] = {
    PayloadKind.TRANSACTION: pb.PAYLOAD_KIND_TRANSACTION,
    PayloadKind.TYPED_DATA: pb.PAYLOAD_KIND_TYPED_DATA,
    PayloadKind.MESSAGE: pb.PAYLOAD_KIND_MESSAGE,
    PayloadKind.POLICY_CHANGE: pb.PAYLOAD_KIND_POLICY_CHANGE,
    PayloadKind.KEY_UNFREEZE: pb.PAYLOAD_KIND_KEY_UNFREEZE,
    PayloadKind.AUTHORIZATION: pb.PAYLOAD_KIND_AUTHORIZATION,
}
_KINDS_FROM_PB: dict[int, PayloadKind] = {value: kind for kind, value in _KINDS.items()}
_STATES: dict[RequestState, Any] = {
    state: pb.RequestState.Value(f"REQUEST_STATE_{state.value}") for state in RequestState
}
_STATES_FROM_PB: dict[int, RequestState] = {value: state for state, value in _STATES.items()}


def timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def key_to_pb(key: Key) -> pb.Key:
    return pb.Key(
        label=key.label,
        key_id=key.key_id,
        address=key.address,
        public_key=key.public_key,
        state=_KEY_STATES[key.state],
        created_at=timestamp(key.created_at),
    )


def kind_from_pb(value: int) -> PayloadKind:
    kind = _KINDS_FROM_PB.get(value)
    if kind is None:
        raise InvalidInput("must be TRANSACTION, TYPED_DATA, MESSAGE or AUTHORIZATION", field="kind")
    return kind


def state_from_pb(value: int) -> RequestState | None:
    """None for UNSPECIFIED (no filter); InvalidInput for a number this version does not know."""
    if value == pb.REQUEST_STATE_UNSPECIFIED:
        return None
    state = _STATES_FROM_PB.get(value)
    if state is None:
        raise InvalidInput(f"unknown request state {value}", field="state")
    return state


def decision_to_pb(decision: Decision) -> pb.Decision:
    return pb.Decision(
        action=decision.action.value,
        rule=decision.rule or "",
        reason=decision.reason,
        policy_version=decision.policy_version,
        quorum=[pb.QuorumTerm(group=term.group, threshold=term.threshold) for term in decision.quorum],
        timelock_seconds=decision.timelock_seconds,
    )


def approval_to_pb(approval: Approval) -> pb.ApprovalRecord:
    return pb.ApprovalRecord(
        approver=approval.approver,
        verdict=approval.verdict.value,
        reason=approval.reason,
        created_at=timestamp(approval.created_at),
        statement=approval.statement,
        signature=approval.signature,
    )


def request_to_pb(
    request: SigningRequest,
    address: str,
    approvals: tuple[Approval, ...] = (),
    progress: QuorumProgress | None = None,
) -> pb.SigningRequest:
    message = pb.SigningRequest(
        request_id=request.request_id,
        key_label=request.key_label,
        key_id=request.key_id,
        address=address,
        requester=request.requester,
        kind=_KINDS[request.kind],
        chain_id=request.chain_id or 0,
        payload=request.payload,
        payload_hash=request.payload_hash,
        digest=request.digest,
        decision=decision_to_pb(request.decision),
        state=_STATES[request.state],
        error=request.error or "",
        created_at=timestamp(request.created_at),
        updated_at=timestamp(request.updated_at),
        summary=request.summary,
        expires_at=timestamp(request.expires_at) if request.expires_at else "",
        not_before=timestamp(request.not_before) if request.not_before else "",
        approvals=[approval_to_pb(approval) for approval in approvals],
        quorum_progress=progress.describe() if progress is not None else "",
        replaces=request.replaces or "",
    )
    if request.result is not None:
        message.signature = request.result.signature
        if request.result.signed_tx is not None:
            message.signed_tx = request.result.signed_tx
        if request.result.tx_hash is not None:
            message.tx_hash = request.result.tx_hash
    return message


def audit_event_to_pb(event: AuditEvent) -> pb.AuditEvent:
    """Times and details exactly as they were hashed, so a client can recompute every hash."""
    return pb.AuditEvent(
        sequence=event.sequence,
        time=format_time(event.time),
        actor=event.actor,
        kind=event.kind,
        request_id=event.request_id or "",
        # The same text as the stored details and the event hash, so clients can verify offline.
        details_json=canonical_json(dict(event.details), ascii_only=True),
        previous_hash=event.previous_hash,
        hash=event.hash,
    )


def parse_timestamp(value: str, field: str) -> datetime | None:
    """An RFC 3339 time from a request (empty means unset); naive times are taken as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"not an RFC 3339 time: {value!r}", field=field) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

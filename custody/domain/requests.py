"""Signing requests and the state machine they move through.

A request is created from a parsed payload and a policy decision. Every later change is a transition from one
expected state to another; the store applies it as a conditional update so that two threads or two replicas
can never both move a request out of the same state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime

from custody.domain.errors import WrongState


class PayloadKind(enum.Enum):
    TRANSACTION = "transaction"
    TYPED_DATA = "typed_data"
    MESSAGE = "message"


class RequestState(enum.Enum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    SIGNED = "SIGNED"
    DENIED = "DENIED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        RequestState.SIGNED,
        RequestState.DENIED,
        RequestState.REJECTED,
        RequestState.EXPIRED,
        RequestState.CANCELLED,
        RequestState.FAILED,
    }
)

# The only transitions a request may make. A request that policy signs at once is created APPROVED and moves
# to SIGNED (or FAILED when the HSM cannot sign); a denied request is created DENIED.
ALLOWED_TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    RequestState.PENDING_APPROVAL: frozenset(
        {
            RequestState.APPROVED,
            RequestState.REJECTED,
            RequestState.EXPIRED,
            RequestState.CANCELLED,
            RequestState.FAILED,
        }
    ),
    RequestState.APPROVED: frozenset(
        {RequestState.SIGNED, RequestState.FAILED, RequestState.CANCELLED, RequestState.EXPIRED}
    ),
}

INITIAL_STATES = frozenset({RequestState.PENDING_APPROVAL, RequestState.APPROVED, RequestState.DENIED})


def check_transition(current: RequestState, target: RequestState) -> None:
    """Raise WrongState unless ``current -> target`` is a transition of the state machine."""
    if target not in ALLOWED_TRANSITIONS.get(current, frozenset()):
        raise WrongState(f"a request in state {current.value} cannot become {target.value}")


@dataclass(frozen=True)
class Decision:
    """What the policy said about a request, kept with the request for ``policy explain`` and audits."""

    action: str  # "sign", "deny" (approval quorums arrive with the approvals work)
    rule: str | None  # name of the matching rule; None when nothing matched (deny by default)
    reason: str
    policy_version: int


@dataclass(frozen=True)
class SignatureResult:
    """What signing produced. ``signature`` is the 65-byte r || s || v with v in {27, 28} for typed data and
    messages, and r || s || y-parity for transactions; ``signed_tx`` and ``tx_hash`` are set for transactions."""

    signature: bytes
    signed_tx: bytes | None = None
    tx_hash: bytes | None = None


@dataclass(frozen=True)
class SigningRequest:
    request_id: str
    key_label: str
    key_id: str
    requester: str
    kind: PayloadKind
    chain_id: int | None
    payload: bytes  # the canonical payload bytes as submitted (UTF-8 JSON, or the raw message)
    payload_hash: bytes  # SHA-256 of ``payload``; lets later checks detect an edited row
    digest: bytes  # the 32 bytes the HSM signs, computed by the daemon from the parsed payload
    decision: Decision
    state: RequestState
    created_at: datetime
    updated_at: datetime
    result: SignatureResult | None = None
    error: str | None = None
    summary: dict[str, str] = field(default_factory=dict)

    def moved_to(
        self,
        target: RequestState,
        at: datetime,
        *,
        result: SignatureResult | None = None,
        error: str | None = None,
    ) -> SigningRequest:
        """Return this request in ``target``; raises WrongState for a transition the machine forbids."""
        check_transition(self.state, target)
        return replace(
            self,
            state=target,
            updated_at=at,
            result=result if result is not None else self.result,
            error=error if error is not None else self.error,
        )

"""Signing requests and the state machine they move through.

A request is created from a parsed payload and a policy decision. Every later change is a transition from one
expected state to another; the store applies it as a conditional update so that two threads or two replicas
can never both move a request out of the same state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from custody.domain.errors import WrongState


class PayloadKind(enum.Enum):
    TRANSACTION = "transaction"
    TYPED_DATA = "typed_data"
    MESSAGE = "message"
    # An EIP-7702 authorization: the key's account would run another contract's code (chains/evm/authorizations.py).
    AUTHORIZATION = "authorization"
    # Governance requests change custody itself and are never signed by the HSM: the approver quorum of the
    # policy in force signs off, and the change takes effect in the transaction that records the quorum.
    POLICY_CHANGE = "policy_change"
    KEY_UNFREEZE = "key_unfreeze"

    @property
    def is_governance(self) -> bool:
        return self in GOVERNANCE_KINDS


SIGNING_KINDS = frozenset(
    {PayloadKind.TRANSACTION, PayloadKind.TYPED_DATA, PayloadKind.MESSAGE, PayloadKind.AUTHORIZATION}
)
GOVERNANCE_KINDS = frozenset({PayloadKind.POLICY_CHANGE, PayloadKind.KEY_UNFREEZE})


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


class DecisionAction(enum.StrEnum):
    """What the policy decided about a request. A string enum, because the same words are stored in the
    database, sent over gRPC and shown to people."""

    SIGN = "sign"  # signed at once
    DENY = "deny"  # refused; recorded DENIED
    APPROVE = "approve"  # held until its quorum approves


@dataclass(frozen=True)
class QuorumTerm:
    """``threshold`` distinct approvers of ``group``."""

    group: str
    threshold: int

    def describe(self) -> str:
        return f"{self.threshold} of {self.group}"


@dataclass(frozen=True)
class Decision:
    """What the policy said about a request, kept with the request for ``policy explain`` and audits.

    For ``approve`` the quorum, lifetime and time-lock are copied from the rule, so the request carries the
    terms it was accepted under even after the rule changes.
    """

    action: DecisionAction
    rule: str | None  # name of the matching rule; None when nothing matched (deny by default)
    reason: str
    policy_version: int
    quorum: tuple[QuorumTerm, ...] = ()  # all terms must be met (AND); empty unless the action is APPROVE
    timelock_seconds: int = 0

    def __post_init__(self) -> None:
        # Comparisons use identity (``action is DecisionAction.SIGN``), which a plain string equal to "sign"
        # would fail silently; a decision built from a stored or received string is turned into the enum
        # here, and an unknown word is refused.
        object.__setattr__(self, "action", DecisionAction(self.action))

    def describe_quorum(self) -> str:
        return " AND ".join(term.describe() for term in self.quorum)


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
    expires_at: datetime | None = None  # a request not signed (or carried out) by then becomes EXPIRED
    not_before: datetime | None = None  # set when approved under a time-lock: the earliest moment to sign
    # The policy's evaluation as JSON ({"rules": [{"rule", "matched", "conditions": [...]}]}), kept for
    # ``policy explain``: it shows what was decided at submission, not what today's data would say.
    policy_trace: str = ""
    value: int = 0  # wei the request moves (transactions); counted by velocity limits
    replaces: str | None = None  # the request whose nonce this one explicitly takes over
    # Base units per token (EIP-55) the request moves or allows, as its intents state; counted by token
    # velocity limits as ``value`` is by ether velocity limits.
    token_amounts: dict[str, int] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """Final states end every request; a governance request also ends once approved (it took effect)."""
        return self.state.is_final or (self.kind.is_governance and self.state is RequestState.APPROVED)


class Verdict(enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class Approval:
    """One approver's signed verdict on one request, as counted by the daemon.

    ``statement`` is the canonical approval statement (custody/domain/approvals.py) and ``signature`` the
    approver's Ed25519 signature over it; both are kept so anyone can re-verify the count later.
    """

    request_id: str
    approver: str
    verdict: Verdict
    statement: bytes
    signature: bytes
    reason: str
    created_at: datetime

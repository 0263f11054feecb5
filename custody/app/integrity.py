"""Checks that a stored request is still what was submitted and approved, made before anything counts or signs.

The database is not trusted to be unchanged: a row edited behind the daemon's back must neither gather
approvals nor be signed. The daemon therefore recomputes the payload hash and the digest from the stored
payload, and re-verifies every counted approval statement against those recomputed values and the approvers'
keys in the policy, so that a forged row would also need forged Ed25519 signatures. Before the HSM signs, the
active policy is also asked again, on facts taken from the recomputed payload, so that a row whose stored
decision was edited to "sign" is not signed without the approvals the policy wants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from custody.chains.evm import ParsedPayload, parse_payload
from custody.domain.approvals import ApprovalStatement, verify_signature
from custody.domain.errors import CustodyError
from custody.domain.policy import Policy, RequestFacts, VelocityUsage
from custody.domain.quorum import quorum_progress
from custody.domain.requests import Approval, SigningRequest, Verdict


@dataclass(frozen=True)
class Recomputed:
    payload_hash: bytes
    digest: bytes
    parsed: ParsedPayload | None  # None for governance requests, which the HSM never signs

    def matches(self, request: SigningRequest) -> bool:
        return self.payload_hash == request.payload_hash and self.digest == request.digest


def recompute(request: SigningRequest) -> Recomputed:
    """Hash and digest as the daemon computes them now from the stored payload."""
    payload_hash = hashlib.sha256(request.payload).digest()
    if request.kind.is_governance:
        return Recomputed(payload_hash=payload_hash, digest=payload_hash, parsed=None)
    try:
        parsed = parse_payload(request.kind, request.payload)
    except CustodyError:
        # A stored payload that no longer parses cannot match anything that was approved.
        return Recomputed(payload_hash=payload_hash, digest=b"", parsed=None)
    return Recomputed(payload_hash=payload_hash, digest=parsed.digest, parsed=parsed)


def verified_approvers(
    request: SigningRequest, approvals: Sequence[Approval], policy: Policy, recomputed: Recomputed
) -> list[str]:
    """The approvers whose stored approval statement still binds this request and verifies with their key.

    Statement expiry is not checked again: it limits when a statement may be counted, and it was counted in time.
    """
    approvers = []
    for approval in approvals:
        if approval.verdict is not Verdict.APPROVE:
            continue
        approver = policy.approver(approval.approver)
        if approver is None:
            continue
        try:
            statement = ApprovalStatement.from_bytes(approval.statement)
            verify_signature(approver.public_key, approval.statement, approval.signature, approval.approver)
        except CustodyError:
            continue
        if (
            statement.request_id == request.request_id
            and statement.approver == approval.approver
            and statement.decision is Verdict.APPROVE
            and statement.digest == recomputed.digest
            and statement.payload_hash == recomputed.payload_hash
            and statement.chain_id == request.chain_id
            and statement.key_id == request.key_id
            and statement.policy_version == request.decision.policy_version == policy.version
        ):
            approvers.append(approval.approver)
    return approvers


def request_facts(key_label: str, parsed: ParsedPayload, *, replacement: bool) -> RequestFacts:
    """What the policy looks at, taken from the payload as the daemon parsed it."""
    return RequestFacts(
        key_label=key_label,
        kind=parsed.kind,
        chain_id=parsed.chain_id,
        transaction_type=parsed.transaction_type,
        to=parsed.to,
        value=parsed.value,
        selector=parsed.selector,
        replacement=replacement,
        max_fee_wei=parsed.max_fee_wei,
    )


def _no_earlier_usage(key_label: str, window_seconds: int) -> VelocityUsage:
    return VelocityUsage(count=0, total_value=0)


def policy_problem(
    request: SigningRequest, approvals: Sequence[Approval], policy: Policy, recomputed: Recomputed
) -> str | None:
    """Why the active policy does not let this request be signed now, or None when it does.

    The policy is evaluated again on the recomputed payload. Velocity limits are evaluated as if the key had
    used nothing yet: the usage now includes requests that came after this one, which were not there when it
    was decided, so only the checks that do not depend on history can be repeated. A deny, or an approve whose
    quorum the re-verified approvals do not meet, stops the signature whatever the stored decision says.
    """
    if recomputed.parsed is None or not recomputed.matches(request):
        return "the stored request no longer matches its payload"
    facts = request_facts(request.key_label, recomputed.parsed, replacement=request.replaces is not None)
    decision = policy.evaluate(facts, _no_earlier_usage).decision
    if decision.action not in ("sign", "approve"):
        return f"the active policy (version {policy.version}) does not allow it: {decision.reason}"
    if decision.action == "sign" and request.decision.action != "approve":
        return None
    # Approvals count only under the version they were given for; a policy change ends pending requests.
    if request.decision.policy_version != policy.version:
        return f"it was approved under policy version {request.decision.policy_version}, not the active one"
    approvers = [
        approver
        for approver in verified_approvers(request, approvals, policy, recomputed)
        if approver != request.requester
    ]
    members = policy.group_members()
    quorums = [request.decision.quorum] + ([decision.quorum] if decision.action == "approve" else [])
    if not all(quorum_progress(quorum, members, approvers).met for quorum in quorums):
        return "its stored approvals no longer verify or no longer meet the quorum"
    return None

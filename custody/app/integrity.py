"""Checks that a stored request is still what was submitted and approved, made before anything counts or signs.

The database is not trusted to be unchanged: a row edited behind the daemon's back must neither gather
approvals nor be signed. The daemon therefore recomputes the payload hash and the digest from the stored
payload, and re-verifies every counted approval statement against those recomputed values and the approvers'
keys in the policy, so that a forged row would also need forged Ed25519 signatures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from custody.chains.evm import ParsedPayload, parse_payload
from custody.domain.approvals import ApprovalStatement, verify_signature
from custody.domain.errors import CustodyError
from custody.domain.policy import Policy
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

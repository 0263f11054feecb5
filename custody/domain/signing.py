"""May this request be signed now? The one answer, used when the signing claim is taken and again right before
the HSM is called.

The database is not trusted to be unchanged, and time passes between the moment a request is decided and the
moment it is signed. So the answer is computed from what the daemon holds at that moment: the request as
stored, the key as stored, every stored verdict, the active policy, and what the daemon recomputed itself from
the stored payload (never the stored digest or hash). Every reason a request may not be signed is here, in the
order a person would look for it: its state, its time window, its key, whether its row still matches its
payload, and whether the active policy with the verified approvals still allows it.

Whether the records it reads carry valid seals is asked by the caller (a seal is checked with the HSM's key)
and handed in as a fact like the others.

The function is pure: callers read the facts (inside the claim's transaction, or just before the HSM call) and
act on the answer (leave the request waiting, or fail it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from custody.domain.approvals import ApprovalStatement, binding_problem, verify_signature
from custody.domain.errors import CustodyError
from custody.domain.keys import Key, KeyState
from custody.domain.policy import Policy, RequestFacts
from custody.domain.quorum import quorum_progress
from custody.domain.requests import Approval, Decision, DecisionAction, RequestState, SigningRequest, Verdict


@dataclass(frozen=True)
class Recomputed:
    """What the daemon computes now from a stored request's payload, never read from the row itself."""

    payload_hash: bytes
    digest: bytes  # empty when the stored payload no longer parses
    facts: RequestFacts | None  # what the policy judges; None for governance requests and unparsable payloads

    def matches(self, request: SigningRequest) -> bool:
        return self.payload_hash == request.payload_hash and self.digest == request.digest


@dataclass(frozen=True)
class Refusal:
    """Why a request may not be signed now, and the state it must end in when waiting cannot change that.

    A request that may still become signable (its time-lock has not passed, its key is frozen) waits:
    ``ends_as`` is None. One that never can is ended by the caller in ``ends_as``: EXPIRED when its lifetime
    ran out, FAILED when its row, its key or the policy no longer allow it.
    """

    reason: str
    ends_as: RequestState | None
    # True when the refusal is that a sealed record did not verify: someone wrote the database behind the
    # daemon's back, which the caller reports (audit event, metric, log, health) as well as ending the request.
    seal_mismatch: bool = False


def verdict_refusal(request: SigningRequest, recomputed: Recomputed, now: datetime) -> Refusal | None:
    """Why no verdict can count on ``request`` any more, or None when one may.

    A pending request past its lifetime ends EXPIRED, and one whose row no longer matches its payload (it was
    edited in the database) ends FAILED, so that it gathers nothing more. The other checks of a verdict (who
    gives it, what the statement binds) are the approval statement's, in custody.domain.approvals.
    """
    pending = request.state is RequestState.PENDING_APPROVAL
    if pending and request.expires_at is not None and request.expires_at <= now:
        return Refusal(
            f"request {request.request_id} expired at {request.expires_at.isoformat()}",
            ends_as=RequestState.EXPIRED,
        )
    if not recomputed.matches(request):
        return Refusal(
            f"request {request.request_id} no longer matches its payload; it will not be approved or signed",
            ends_as=RequestState.FAILED if pending else None,
        )
    return None


def key_refusal(request: SigningRequest, key: Key | None) -> Refusal | None:
    """Why the key of ``request`` may not sign for it now. Also asked when the signature is committed, since
    a key may be frozen while the HSM signs."""
    if key is None:
        return Refusal(f"there is no key labelled {request.key_label!r}", ends_as=RequestState.FAILED)
    if key.key_id != request.key_id:
        return Refusal(
            f"it was submitted for key id {request.key_id}, but key {key.label!r} is now {key.key_id}",
            ends_as=RequestState.FAILED,
        )
    if key.state is KeyState.FROZEN:
        return Refusal(f"key {key.label!r} is frozen and signs nothing until it is unfrozen", ends_as=None)
    return None


def verified_approvers(
    request: SigningRequest, approvals: Sequence[Approval], policy: Policy, recomputed: Recomputed
) -> list[str]:
    """The approvers whose stored approval statement still binds this request and verifies with their key in
    ``policy``. The requester's own approval never counts.

    Statement expiry is not checked again: it limits when a statement may be counted, and it was counted in
    time.
    """
    approvers = []
    for approval in approvals:
        if approval.verdict is not Verdict.APPROVE or approval.approver == request.requester:
            continue
        approver = policy.approver(approval.approver)
        if approver is None:
            continue
        try:
            statement = ApprovalStatement.from_bytes(approval.statement)
            verify_signature(approver.public_key, approval.statement, approval.signature, approval.approver)
        except CustodyError:
            continue
        if statement.decision is not Verdict.APPROVE:
            continue
        problem = binding_problem(
            statement,
            request,
            approver=approval.approver,
            expected_digest=recomputed.digest,
            expected_payload_hash=recomputed.payload_hash,
            active_policy_version=policy.version,
        )
        if problem is None:
            approvers.append(approval.approver)
    return approvers


def signing_refusal(
    request: SigningRequest,
    *,
    key: Key | None,
    approvals: Sequence[Approval],
    policy: Policy,
    recomputed: Recomputed,
    decision_now: Decision | None,
    seal_problem: str | None,
    now: datetime,
) -> Refusal | None:
    """Why ``request`` may not be signed at ``now``, or None when it may.

    ``seal_problem`` is the caller's answer to whether the seals of the request (its decision, its move to
    APPROVED with its time-lock), of its key and of ``policy`` verify with the HSM's seal key (None when they
    all do; custody/domain/seals.py says what each covers). A record whose seal fails was written by someone
    without the seal key, so nothing else it says is believed: the request ends FAILED.

    ``decision_now`` is what the active ``policy`` decides about ``recomputed.facts`` (None when there are no
    facts to judge); velocity limits are left out of it, because the usage counted now includes requests that
    came after this one. A deny, or an approve whose quorum the re-verified approvals do not meet, stops the
    signature whatever decision the row stores.
    """
    if request.kind.is_governance:
        return Refusal("a governance request takes effect when approved and is never signed", ends_as=None)
    if request.state is not RequestState.APPROVED:
        return Refusal(f"it is {request.state.value}, not APPROVED", ends_as=None)
    if seal_problem is not None:
        return Refusal(
            f"its stored state is not what the daemon sealed: {seal_problem}",
            ends_as=RequestState.FAILED,
            seal_mismatch=True,
        )
    if request.expires_at is not None and request.expires_at <= now:
        return Refusal("the request expired before it could be signed", ends_as=RequestState.EXPIRED)
    if request.not_before is not None and request.not_before > now:
        return Refusal(f"its time-lock holds it until {request.not_before.isoformat()}", ends_as=None)
    refusal = key_refusal(request, key)
    if refusal is not None:
        return refusal
    if recomputed.facts is None or not recomputed.matches(request):
        return Refusal("the stored request no longer matches its payload", ends_as=RequestState.FAILED)
    if decision_now is None or decision_now.action is DecisionAction.DENY:
        reason = decision_now.reason if decision_now is not None else "it was not evaluated"
        return Refusal(
            f"the active policy (version {policy.version}) does not allow it: {reason}",
            ends_as=RequestState.FAILED,
        )
    if decision_now.action is DecisionAction.SIGN and request.decision.action is not DecisionAction.APPROVE:
        return None
    # Approvals count only under the version they were given for; a policy change ends pending requests.
    if request.decision.policy_version != policy.version:
        return Refusal(
            f"it was approved under policy version {request.decision.policy_version}, not the active one",
            ends_as=RequestState.FAILED,
        )
    approvers = verified_approvers(request, approvals, policy, recomputed)
    members = policy.group_members()
    quorums = [request.decision.quorum]
    if decision_now.action is DecisionAction.APPROVE:
        quorums.append(decision_now.quorum)
    if not all(quorum_progress(quorum, members, approvers).met for quorum in quorums):
        return Refusal(
            "its stored approvals no longer verify or no longer meet the quorum", ends_as=RequestState.FAILED
        )
    return None

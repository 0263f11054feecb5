"""Use cases for approvers: approve or reject a pending request with a signed approval statement.

Counting a verdict and acting on it is one database transaction: the statement is checked against the
daemon's own stored request (recomputed, not trusted), the verdict is recorded, and when it completes the
quorum the request moves to APPROVED and, without a time-lock, the signing claim is taken in the same step.
Two approvals racing to the threshold therefore cannot both complete it, and only one of them signs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from custody.app.audit import DAEMON_ACTOR, AuditUseCases
from custody.app.integrity import Prepared, Sealer, prepare
from custody.app.policy import PolicyUseCases, require_request, unfreeze_lifts
from custody.app.signing import ChangeNotifier, SigningUseCases
from custody.audit.events import AuditKind
from custody.domain.approvals import ApprovalStatement, check_statement, verify_signature
from custody.domain.errors import CustodyError, FailedPrecondition, InvalidInput, PermissionDenied
from custody.domain.ids import validate_request_id
from custody.domain.keys import KeyState
from custody.domain.policy import Policy
from custody.domain.principals import Principal, Role
from custody.domain.quorum import TallyOutcome, tally_verdict
from custody.domain.requests import (
    Approval,
    DecisionAction,
    PayloadKind,
    RequestState,
    SigningRequest,
    Verdict,
)
from custody.domain.signing import Recomputed, verdict_refusal, verified_approvers
from custody.policy_file import parse_policy_text
from custody.store.base import Store, StoredPolicy, StoreTransaction

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class _Counted:
    request: SigningRequest
    # Set when this verdict completed the quorum and took the signing claim: the parse to sign with.
    claimed: Prepared | None = None


class ApprovalUseCases:
    def __init__(
        self,
        store: Store,
        *,
        policies: PolicyUseCases,
        signing: SigningUseCases,
        audit: AuditUseCases,
        clock: Callable[[], datetime],
        notifier: ChangeNotifier,
        sealer: Sealer,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._audit = audit
        self._policies = policies
        self._signing = signing
        self._clock = clock
        self._notifier = notifier

    def approve(
        self, caller: Principal, request_id: str, statement: bytes, signature: bytes
    ) -> SigningRequest:
        return self._verdict(
            caller,
            request_id,
            statement_bytes=statement,
            signature=signature,
            verdict=Verdict.APPROVE,
            reason="",
        )

    def reject(
        self, caller: Principal, request_id: str, statement: bytes, signature: bytes, reason: str
    ) -> SigningRequest:
        if not reason.strip():
            raise InvalidInput("say why the request is rejected", field="reason")
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidInput(f"must be at most {MAX_REASON_CHARS} characters", field="reason")
        return self._verdict(
            caller,
            request_id,
            statement_bytes=statement,
            signature=signature,
            verdict=Verdict.REJECT,
            reason=reason,
        )

    def _verdict(
        self,
        caller: Principal,
        request_id: str,
        *,
        statement_bytes: bytes,
        signature: bytes,
        verdict: Verdict,
        reason: str,
    ) -> SigningRequest:
        try:
            counted = self._take_verdict(
                caller,
                request_id,
                statement_bytes=statement_bytes,
                signature=signature,
                verdict=verdict,
                reason=reason,
            )
        except CustodyError as error:
            # A refused verdict changes no request, so it is recorded on its own, with why it was refused.
            self._audit.record_refusal(
                caller.name, AuditKind.APPROVAL_REFUSED, error, request_id=request_id, verdict=verdict.value
            )
            raise
        # Signing happens after the verdict was counted and committed: a signing failure is the request's
        # (recorded as request.failed, or retried by the worker), never a refusal of the verdict.
        if counted.claimed is not None:
            return self._signing.sign_if_claimed(counted.request, counted.claimed)
        return counted.request

    def _take_verdict(
        self,
        caller: Principal,
        request_id: str,
        *,
        statement_bytes: bytes,
        signature: bytes,
        verdict: Verdict,
        reason: str,
    ) -> _Counted:
        caller.require(Role.APPROVER, f"{verdict.value} requests")
        validate_request_id(request_id)
        statement = ApprovalStatement.from_bytes(statement_bytes)
        if statement.decision is not verdict:
            raise InvalidInput(
                f"the statement says {statement.decision.value}, but this call is {verdict.value}",
                field="statement",
            )
        now = self._clock()
        with self._store.transaction() as tx:
            request = require_request(tx, request_id)
            active = self._policies.active(tx)
            policy = active.policy
            # The policy names the approvers whose keys count and the admin quorum a governance request takes
            # effect with: a row the daemon did not seal counts nothing and activates nothing. The mismatch is
            # recorded and committed; the verdict is refused.
            unsealed = self._sealer.policy_problem(tx, policy.version, active.document)
            if unsealed is not None:
                self._audit.record(
                    tx,
                    DAEMON_ACTOR,
                    AuditKind.SEAL_MISMATCH,
                    request.request_id,
                    reason=f"a verdict was not counted: {unsealed}",
                )
                closed = None
            else:
                approver = policy.approver(caller.name)
                if approver is None:
                    raise PermissionDenied(
                        f"{caller.name} is not an approver in policy version {policy.version}"
                    )
                prepared = prepare(request, now)
                closed = verdict_refusal(request, prepared.recomputed, now)
                if closed is None:
                    counted = self._count(
                        tx,
                        caller,
                        request,
                        policy=policy,
                        approver_key=approver.public_key,
                        prepared=prepared,
                        statement=statement,
                        statement_bytes=statement_bytes,
                        signature=signature,
                        reason=reason,
                        now=now,
                    )
                elif closed.ends_as is not None:
                    self._signing.end(tx, request, closed, now)
        if unsealed is not None:
            log.error("a verdict on request %s was not counted: %s", request_id, unsealed)
            raise FailedPrecondition(
                f"the verdict was not counted: the policy in force cannot be trusted ({unsealed})"
            )
        self._notifier.changed()
        if closed is not None:
            # The request may have been ended (expired, or its row edited) and that change is committed; the
            # verdict itself did not count.
            raise FailedPrecondition(closed.reason)
        log.info(
            "%s by %s on request %s: now %s",
            verdict.value,
            caller.name,
            request_id,
            counted.request.state.value,
        )
        return counted

    def _count(
        self,
        tx: StoreTransaction,
        caller: Principal,
        request: SigningRequest,
        *,
        policy: Policy,
        approver_key: bytes,
        prepared: Prepared,
        statement: ApprovalStatement,
        statement_bytes: bytes,
        signature: bytes,
        reason: str,
        now: datetime,
    ) -> _Counted:
        recomputed = prepared.recomputed
        check_statement(
            statement,
            request,
            approver=caller.name,
            expected_digest=recomputed.digest,
            expected_payload_hash=recomputed.payload_hash,
            active_policy_version=policy.version,
            now=int(now.timestamp()),
        )
        verify_signature(approver_key, statement_bytes, signature, caller.name)
        approval = Approval(
            request_id=request.request_id,
            approver=caller.name,
            verdict=statement.decision,
            statement=statement_bytes,
            signature=signature,
            reason=reason,
            created_at=now,
        )
        outcome = tally_verdict(
            self._as_the_policy_decides(request, policy),
            self._trusted_earlier_verdicts(tx, request, policy, recomputed),
            approval,
            policy.group_members(),
        )
        tx.insert_approval(approval)
        self._audit.record(
            tx,
            caller.name,
            AuditKind.APPROVAL_COUNTED,
            request.request_id,
            verdict=approval.verdict.value,
            statement_sha256="0x" + hashlib.sha256(statement_bytes).hexdigest(),
            outcome=outcome.value,
        )
        if outcome is TallyOutcome.COUNTED:
            return _Counted(request=tx.get_request(request.request_id) or request)
        if outcome is TallyOutcome.REJECTED:
            rejected = tx.transition_request(
                request.request_id,
                RequestState.PENDING_APPROVAL,
                RequestState.REJECTED,
                now,
                error=f"rejected by {caller.name}: {reason}",
            )
            self._audit.record(tx, caller.name, AuditKind.REQUEST_REJECTED, request.request_id, reason=reason)
            return _Counted(request=rejected)
        if request.kind.is_governance:
            unchanged = self._carry_out(tx, request, now)
            if unchanged is not None:
                cancelled = tx.transition_request(
                    request.request_id,
                    RequestState.PENDING_APPROVAL,
                    RequestState.CANCELLED,
                    now,
                    error=unchanged,
                )
                self._audit.record(
                    tx, DAEMON_ACTOR, AuditKind.REQUEST_CANCELLED, request.request_id, reason=unchanged
                )
                return _Counted(request=cancelled)
            approved = tx.transition_request(
                request.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, now
            )
            self._audit.record(
                tx,
                DAEMON_ACTOR,
                AuditKind.REQUEST_APPROVED,
                request.request_id,
                payload_kind=request.kind.value,
            )
            return _Counted(request=approved)
        timelock = request.decision.timelock_seconds
        approved = tx.transition_request(
            request.request_id,
            RequestState.PENDING_APPROVAL,
            RequestState.APPROVED,
            now,
            not_before=now + timedelta(seconds=timelock) if timelock else None,
        )
        self._audit.record(
            tx,
            DAEMON_ACTOR,
            AuditKind.REQUEST_APPROVED,
            request.request_id,
            not_before=approved.not_before.isoformat() if approved.not_before else None,
        )
        if timelock or not self._signing.claim(
            tx, approved, now, prepared, policy=policy, key=tx.get_key(request.key_label)
        ):
            return _Counted(request=tx.get_request(request.request_id) or approved)
        return _Counted(request=approved, claimed=prepared)

    @staticmethod
    def _as_the_policy_decides(request: SigningRequest, policy: Policy) -> SigningRequest:
        """The request with the quorum its verdicts are counted against: for a policy change or an unfreeze,
        which take effect as soon as the quorum is met, the active policy's admin quorum rather than the one
        stored in the row. A signing request's stored quorum is checked against the policy again before the
        HSM signs."""
        if not request.kind.is_governance:
            return request
        governance = policy.governance_decision()
        if (
            governance.action is not DecisionAction.APPROVE
            or request.decision.policy_version != policy.version
        ):
            raise FailedPrecondition(
                f"request {request.request_id} was proposed under policy version"
                f" {request.decision.policy_version}, which is no longer active"
            )
        return replace(request, decision=replace(request.decision, quorum=governance.quorum))

    @staticmethod
    def _trusted_earlier_verdicts(
        tx: StoreTransaction, request: SigningRequest, policy: Policy, recomputed: Recomputed
    ) -> list[Approval]:
        """The earlier verdicts on the request that may count: every rejection, and only those approvals whose
        signed statements still verify, so that an approval row written into the database behind the
        daemon's back adds nothing to the quorum."""
        earlier = tx.list_approvals(request.request_id)
        verified = set(verified_approvers(request, earlier, policy, recomputed))
        return [
            approval
            for approval in earlier
            if approval.verdict is Verdict.REJECT or approval.approver in verified
        ]

    def _carry_out(self, tx: StoreTransaction, request: SigningRequest, now: datetime) -> str | None:
        """Make an approved governance request take effect, in the transaction that approves it. Returns why
        it changed nothing, when it could not take effect (an unfreeze of a freeze that is no longer the key's)."""
        if request.kind is PayloadKind.POLICY_CHANGE:
            document = request.payload.decode("utf-8")
            new_policy = parse_policy_text(document, f"policy change {request.request_id}")
            tx.activate_policy(
                StoredPolicy(
                    version=new_policy.version,
                    document=document,
                    activated_at=now,
                    request_id=request.request_id,
                )
            )
            # Requests waiting under the old version were judged by rules and approvers that no longer hold;
            # they end here and are submitted again under the new policy.
            self._audit.record(
                tx, DAEMON_ACTOR, AuditKind.POLICY_ACTIVATED, request.request_id, version=new_policy.version
            )
            for waiting in tx.pending_requests_before_version(new_policy.version):
                if waiting.request_id == request.request_id:
                    continue
                reason = f"superseded by policy version {new_policy.version}; submit it again"
                tx.transition_request(
                    waiting.request_id, waiting.state, RequestState.CANCELLED, now, error=reason
                )
                self._audit.record(
                    tx, DAEMON_ACTOR, AuditKind.REQUEST_CANCELLED, waiting.request_id, reason=reason
                )
            log.info("policy version %d is active (request %s)", new_policy.version, request.request_id)
        elif request.kind is PayloadKind.KEY_UNFREEZE:
            return self._unfreeze(tx, request, now)
        return None

    def _unfreeze(self, tx: StoreTransaction, request: SigningRequest, now: datetime) -> str | None:
        """Lift the freeze the request names, and only while it is still the key's current freeze: an unfreeze
        approved after the key was frozen again, or unfrozen meanwhile, leaves the key as it is."""
        label = request.key_label
        lifts = unfreeze_lifts(request.payload)
        key = tx.get_key(label)
        if key is None or key.state is not KeyState.FROZEN or lifts != key.freezes:
            named = "no freeze" if lifts is None else f"freeze {lifts}"
            now_is = (
                "the key is not frozen"
                if key is None or key.state is not KeyState.FROZEN
                else f"the key's current freeze is {key.freezes}"
            )
            unchanged = f"this unfreeze lifts {named} of key {label}, but {now_is}; nothing changed"
            log.warning("unfreeze request %s changed nothing: %s", request.request_id, unchanged)
            return unchanged
        tx.set_key_state(label, KeyState.FROZEN, KeyState.ACTIVE, now)
        self._audit.record(
            tx, DAEMON_ACTOR, AuditKind.KEY_UNFROZEN, request.request_id, key=label, freeze=lifts
        )
        log.info("key %s unfrozen, freeze %d lifted (request %s)", label, lifts, request.request_id)
        return None

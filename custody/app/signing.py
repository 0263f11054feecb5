"""Use cases for signing requests: submit, read, list, watch, cancel, and the one path that signs.

Signing happens exactly once per request. Whoever moves a request to APPROVED without a time-lock (the
submission that policy signs at once, or the approval that completes a quorum) takes the signing claim in the
same transaction; the background worker takes it for time-locked requests once they are due, and for any
request whose claim lapsed because its holder died. Only the claim holder calls the HSM, and the conditional
APPROVED -> SIGNED update stores one signature even if two holders ever raced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from custody.app.integrity import Recomputed, recompute, verified_approvers
from custody.app.policy import PolicyUseCases
from custody.chains.evm import MAX_PAYLOAD_BYTES, parse_payload
from custody.chains.evm.signature import recoverable_signature
from custody.domain import policy as policy_rules
from custody.domain.errors import (
    Aborted,
    CustodyError,
    HsmUnavailable,
    InvalidInput,
    KeyFrozen,
    NotFound,
    PermissionDenied,
    Unavailable,
    WrongState,
)
from custody.domain.ids import new_request_id, validate_request_id
from custody.domain.keys import Key, KeyState, validate_key_label
from custody.domain.principals import Principal, Role
from custody.domain.quorum import QuorumProgress, quorum_progress
from custody.domain.requests import SIGNING_KINDS, Approval, PayloadKind, RequestState, SigningRequest
from custody.hsm.base import Hsm
from custody.store.base import Store, StoreTransaction

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 1000
# How long a signing claim holds. An HSM call takes milliseconds; a claim still held after this long belongs
# to a process that died, and the worker may take the request over.
SIGNING_LEASE = timedelta(seconds=60)


class ChangeNotifier:
    """Wakes watchers when this process changes a request. Changes made by another process sharing the database
    are seen by the watchers' periodic re-read, so this is a latency optimisation, never the source of truth."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def changed(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def generation(self) -> int:
        with self._condition:
            return self._generation

    def wait(self, seen_generation: int, timeout: float) -> int:
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen_generation, timeout=timeout)
            return self._generation


@dataclass(frozen=True)
class RequestView:
    """A request with what a person needs to judge it: the verdicts so far and who counts toward the quorum."""

    request: SigningRequest
    approvals: tuple[Approval, ...]
    progress: QuorumProgress | None


def claimant_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def velocity_lookup(tx: StoreTransaction, now: datetime) -> Callable[[str, int], policy_rules.VelocityUsage]:
    def usage(key_label: str, window_seconds: int) -> policy_rules.VelocityUsage:
        stored = tx.velocity_usage(key_label, now - timedelta(seconds=window_seconds))
        return policy_rules.VelocityUsage(count=stored.count, total_value=stored.total_value)

    return usage


class SigningUseCases:
    def __init__(
        self,
        store: Store,
        hsm: Hsm,
        policies: PolicyUseCases,
        clock: Callable[[], datetime],
        notifier: ChangeNotifier,
    ) -> None:
        self._store = store
        self._hsm = hsm
        self._policies = policies
        self._clock = clock
        self._notifier = notifier
        self._claimant = claimant_name()

    # -- submit -----------------------------------------------------------------------------------------------

    def submit(self, caller: Principal, key_label: str, kind: PayloadKind, payload: bytes) -> SigningRequest:
        """Parse the payload, decide by policy, record the request, and sign at once when policy allows.

        The daemon computes the digest itself from the parsed payload. A denied request is recorded in state
        DENIED with the reason and returned, not raised: the record is the answer. Policy is evaluated inside
        the transaction that records the request, so velocity limits count every request exactly once even
        when many arrive together.
        """
        validate_key_label(key_label)
        caller.require_key_grant(key_label)
        if kind not in SIGNING_KINDS:
            raise InvalidInput("must be TRANSACTION, TYPED_DATA or MESSAGE", field="kind")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(
                f"the payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}", field="payload"
            )
        parsed = parse_payload(kind, payload)
        now = self._clock()
        facts = policy_rules.RequestFacts(
            key_label=key_label,
            kind=parsed.kind,
            chain_id=parsed.chain_id,
            transaction_type=parsed.transaction_type,
            to=parsed.to,
            value=parsed.value,
            selector=parsed.selector,
        )
        with self._store.transaction() as tx:
            key = tx.get_key(key_label)
            if key is None:
                raise NotFound(f"there is no key labelled {key_label!r}")
            if key.state is KeyState.FROZEN:
                raise KeyFrozen(f"key {key_label!r} is frozen and signs nothing until it is unfrozen")
            active = self._policies.active(tx).policy
            evaluation = active.evaluate(facts, velocity_lookup(tx, now))
            decision = evaluation.decision
            state = {
                "sign": RequestState.APPROVED,
                "approve": RequestState.PENDING_APPROVAL,
            }.get(decision.action, RequestState.DENIED)
            lifetime = evaluation.lifetime_seconds
            request = SigningRequest(
                request_id=new_request_id(now.timestamp()),
                key_label=key_label,
                key_id=key.key_id,
                requester=caller.name,
                kind=parsed.kind,
                chain_id=parsed.chain_id,
                payload=parsed.canonical,
                payload_hash=hashlib.sha256(parsed.canonical).digest(),
                digest=parsed.digest,
                decision=decision,
                state=state,
                created_at=now,
                updated_at=now,
                summary=parsed.summary(),
                expires_at=now + timedelta(seconds=lifetime) if lifetime else None,
                policy_trace=policy_rules.trace_to_json(evaluation.trace),
                value=parsed.value,
            )
            tx.insert_request(request)
            if evaluation.freeze_key:
                tx.set_key_state(key_label, KeyState.ACTIVE, KeyState.FROZEN, now)
                log.warning("froze key %s: %s", key_label, evaluation.freeze_reason)
            claimed = state is RequestState.APPROVED and self.claim(tx, request.request_id, now)
        self._notifier.changed()
        log.info(
            "request %s by %s on key %s: %s (%s)",
            request.request_id,
            caller.name,
            key_label,
            request.state.value,
            decision.rule or "no rule",
        )
        if claimed:
            return self._sign_claimed(request, key, recompute(request))
        return request

    # -- the signing path -------------------------------------------------------------------------------------

    def sign_if_due(self, request_id: str) -> SigningRequest | None:
        """Sign an APPROVED request when it is due and nobody else holds its claim; None when not signed now.

        Called after an approval completes a quorum and by the background worker. A frozen key's requests wait;
        an expired one becomes EXPIRED instead.
        """
        now = self._clock()
        with self._store.transaction() as tx:
            request = tx.get_request(request_id)
            if request is None or request.state is not RequestState.APPROVED or request.kind.is_governance:
                return None
            if request.expires_at is not None and request.expires_at <= now:
                return tx.transition_request(
                    request_id,
                    RequestState.APPROVED,
                    RequestState.EXPIRED,
                    now,
                    error="the request expired before it could be signed",
                )
            if request.not_before is not None and request.not_before > now:
                return None
            if not self.claim(tx, request_id, now):
                return None
        return self.sign_if_claimed(request)

    def claim(self, tx: StoreTransaction, request_id: str, now: datetime) -> bool:
        """Take the signing claim on an APPROVED request in ``tx``; False while its key is frozen (its requests
        wait for the unfreeze) or while someone else holds the claim."""
        request = tx.get_request(request_id)
        if request is None:
            return False
        key = tx.get_key(request.key_label)
        if key is None or key.state is KeyState.FROZEN:
            return False
        return tx.claim_signing(request_id, self._claimant, now, now + SIGNING_LEASE)

    def sign_if_claimed(self, request: SigningRequest) -> SigningRequest:
        """Sign a request whose claim this process took in a committed transaction."""
        key = self._store.get_key(request.key_label)
        if key is None:
            raise NotFound(f"there is no key labelled {request.key_label!r}")
        return self._sign_claimed(request, key, recompute(request))

    def _sign_claimed(self, request: SigningRequest, key: Key, recomputed: Recomputed) -> SigningRequest:
        """Sign a request this process holds the claim on, and record the result before anyone sees it.

        Before the HSM is called the stored request must still match its payload and, when it needed
        approvals, its approvals must still verify and meet the quorum. The signature is returned only after
        SIGNED and the signature are committed together. If the HSM fails, the request is marked FAILED and the
        caller gets UNAVAILABLE; if the record cannot be written, nothing is returned (fail closed).
        """
        problem = self._integrity_problem(request, recomputed)
        if problem is not None:
            self._fail(request, problem)
            raise WrongState(f"request {request.request_id} was not signed: {problem}")
        assert recomputed.parsed is not None
        try:
            raw_signature = self._hsm.sign_digest(bytes.fromhex(key.key_id), recomputed.digest)
            r, s, y_parity = recoverable_signature(raw_signature, recomputed.digest, key.public_key)
            result = recomputed.parsed.assemble(r, s, y_parity)
        except HsmUnavailable as exc:
            self._fail(request, f"the HSM could not sign: {exc.message}")
            raise HsmUnavailable(
                f"the HSM is unavailable; request {request.request_id} was not signed and is marked FAILED"
            ) from exc
        except CustodyError as exc:
            self._fail(request, f"signing failed: {exc.message}")
            raise
        signed = self._store.transition_request(
            request.request_id, RequestState.APPROVED, RequestState.SIGNED, self._clock(), result=result
        )
        self._notifier.changed()
        log.info("request %s signed with key %s", request.request_id, key.label)
        return signed

    def _integrity_problem(self, request: SigningRequest, recomputed: Recomputed) -> str | None:
        if recomputed.parsed is None or not recomputed.matches(request):
            return "the stored request no longer matches its payload"
        if request.decision.action == "approve":
            policy = self._policies.active().policy
            if policy.version != request.decision.policy_version:
                return f"it was approved under policy version {request.decision.policy_version}, not the active one"
            approvers = verified_approvers(
                request, self._store.list_approvals(request.request_id), policy, recomputed
            )
            approvers = [approver for approver in approvers if approver != request.requester]
            if not quorum_progress(request.decision.quorum, policy.group_members(), approvers).met:
                return "its stored approvals no longer verify or no longer meet the quorum"
        return None

    def _fail(self, request: SigningRequest, reason: str) -> None:
        try:
            self._store.transition_request(
                request.request_id, RequestState.APPROVED, RequestState.FAILED, self._clock(), error=reason
            )
            self._notifier.changed()
        except (Aborted, Unavailable) as exc:
            # The request stays APPROVED without a signature: it is never reported as signed, and the caller
            # already receives the original error.
            log.error("could not mark request %s FAILED: %s", request.request_id, exc)

    # -- background work --------------------------------------------------------------------------------------

    def expire_overdue(self, limit: int = 100) -> int:
        """Move requests past their lifetime to EXPIRED; returns how many this call moved."""
        now = self._clock()
        moved = 0
        for request in self._store.expired_requests(now, limit):
            try:
                self._store.transition_request(
                    request.request_id, request.state, RequestState.EXPIRED, now, error="the request expired"
                )
                moved += 1
            except (Aborted, WrongState):
                continue  # Another worker or an approval moved it first.
        if moved:
            self._notifier.changed()
        return moved

    def sign_due(self, limit: int = 100) -> int:
        """Sign approved requests whose time-lock has passed (or whose claim lapsed); returns how many."""
        signed = 0
        for request in self._store.due_requests(self._clock(), limit):
            try:
                if self.sign_if_due(request.request_id) is not None:
                    signed += 1
            except CustodyError as exc:
                log.warning("could not sign due request %s: %s", request.request_id, exc.message)
        return signed

    # -- reading ----------------------------------------------------------------------------------------------

    def get(self, caller: Principal, request_id: str) -> SigningRequest:
        request = self._store.get_request(validate_request_id(request_id))
        if request is None or not self._may_see(caller, request):
            # Someone who may not see a request learns nothing about it, not even that it exists.
            raise NotFound(f"there is no request {request_id}")
        return request

    def view(self, request: SigningRequest) -> RequestView:
        approvals = tuple(self._store.list_approvals(request.request_id))
        progress = None
        if request.decision.quorum:
            approvers = [a.approver for a in approvals if a.verdict.value == "approve"]
            progress = quorum_progress(
                request.decision.quorum, self._policies.active().policy.group_members(), approvers
            )
        return RequestView(request=request, approvals=approvals, progress=progress)

    def list(
        self,
        caller: Principal,
        *,
        state: RequestState | None = None,
        key_label: str | None = None,
        limit: int = 100,
    ) -> Sequence[SigningRequest]:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"must be between 1 and {MAX_LIST_LIMIT}, got {limit}", field="limit")
        if key_label is not None:
            validate_key_label(key_label)
        if caller.sees_all_requests():
            return self._store.list_requests(state=state, key_label=key_label, limit=limit)
        caller.require(Role.REQUESTER, "list requests")
        if key_label is not None and key_label not in caller.keys:
            raise PermissionDenied(f"{caller.name} is not granted key {key_label!r}")
        return [
            request
            for request in self._store.list_requests(state=state, key_label=key_label, limit=limit)
            if self._may_see(caller, request)
        ]

    def watch(
        self, caller: Principal, request_id: str, is_active: Callable[[], bool], poll_seconds: float = 0.5
    ) -> Iterator[SigningRequest]:
        """Yield the request now and after every change, until it is final or the caller leaves."""
        current = self.get(caller, request_id)
        yield current
        generation = self._notifier.generation()
        while not current.is_final and is_active():
            generation = self._notifier.wait(generation, poll_seconds)
            latest = self.get(caller, request_id)
            if (latest.state, latest.updated_at) != (current.state, current.updated_at):
                current = latest
                yield current

    # -- cancel -----------------------------------------------------------------------------------------------

    def cancel(self, caller: Principal, request_id: str, reason: str) -> SigningRequest:
        request = self.get(caller, request_id)
        if request.requester != caller.name and not caller.has(Role.ADMIN):
            raise PermissionDenied(f"{caller.name} may cancel only its own requests")
        if len(reason) > 1000:
            raise InvalidInput("must be at most 1000 characters", field="reason")
        if request.is_final:
            raise WrongState(f"request {request_id} is {request.state.value} and can no longer be cancelled")
        cancelled = self._store.transition_request(
            request.request_id,
            request.state,
            RequestState.CANCELLED,
            self._clock(),
            error=f"cancelled by {caller.name}" + (f": {reason}" if reason else ""),
        )
        self._notifier.changed()
        return cancelled

    @staticmethod
    def _may_see(caller: Principal, request: SigningRequest) -> bool:
        return caller.sees_all_requests() or (bool(request.key_label) and request.key_label in caller.keys)

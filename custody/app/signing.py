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

from custody.app.audit import DAEMON_ACTOR, AuditUseCases
from custody.app.integrity import (
    Prepared,
    Sealer,
    prepare,
    prepared_at_submission,
    request_facts,
    sealed_records,
)
from custody.app.policy import PolicyUseCases
from custody.audit.events import AuditKind
from custody.chains.evm import MAX_PAYLOAD_BYTES, parse_payload
from custody.chains.evm.signature import recoverable_signature
from custody.domain import policy as policy_rules
from custody.domain.errors import (
    Aborted,
    CustodyError,
    HsmUnavailable,
    InvalidInput,
    KeyFrozen,
    NonceConflict,
    NotFound,
    PermissionDenied,
    Unavailable,
    WrongState,
)
from custody.domain.ids import new_request_id, validate_request_id
from custody.domain.keys import Key, KeyState, validate_key_label
from custody.domain.policy import Policy
from custody.domain.policy.conditions.token_velocity import request_token_amounts
from custody.domain.principals import Principal, Role
from custody.domain.quorum import QuorumProgress, quorum_progress
from custody.domain.requests import (
    SIGNING_KINDS,
    Approval,
    DecisionAction,
    PayloadKind,
    RequestState,
    SignatureResult,
    SigningRequest,
)
from custody.domain.signing import Refusal, key_refusal, signing_refusal, verified_approvers
from custody.hsm.base import Hsm
from custody.observability.logs import note, request_context
from custody.store.base import NonceUse, Store, StoreTransaction

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
        return policy_rules.VelocityUsage(
            count=stored.count, total_value=stored.total_value, token_amounts=stored.token_amounts
        )

    return usage


class SigningUseCases:
    def __init__(
        self,
        store: Store,
        *,
        hsm: Hsm,
        policies: PolicyUseCases,
        audit: AuditUseCases,
        clock: Callable[[], datetime],
        notifier: ChangeNotifier,
        sealer: Sealer,
        sign_in_write_transaction: bool = False,
    ) -> None:
        self._store = store
        self._hsm = hsm
        self._sealer = sealer
        # A request the policy signs at once is signed inside the transaction that records it, instead of in
        # a second one after the claim commits ([hsm] sign_in_write_transaction, docs/operations.md): one
        # commit and a handful of statements fewer, for the write lock held during the HSM call. The
        # configuration allows it only for an HSM without lanes, whose calls take microseconds.
        self._sign_in_write_transaction = sign_in_write_transaction
        self._policies = policies
        self._audit = audit
        self._clock = clock
        self._notifier = notifier
        self._claimant = claimant_name()

    # -- submit -----------------------------------------------------------------------------------------------

    def submit(
        self,
        caller: Principal,
        key_label: str,
        kind: PayloadKind,
        payload: bytes,
        *,
        replaces: str | None = None,
    ) -> SigningRequest:
        """Parse the payload, decide by policy, record the request, and sign at once when policy allows.

        The daemon computes the digest itself from the parsed payload. A denied request is recorded in state
        DENIED with the reason and returned, not raised: the record is the answer. Policy is evaluated inside
        the transaction that records the request, so velocity limits count every request exactly once even
        when many arrive together. The nonce the payload uses is checked and held in that same transaction.
        """
        validate_key_label(key_label)
        caller.require_key_grant(key_label)
        if kind not in SIGNING_KINDS:
            raise InvalidInput("must be TRANSACTION, TYPED_DATA, MESSAGE or AUTHORIZATION", field="kind")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(
                f"the payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}", field="payload"
            )
        if replaces is not None:
            validate_request_id(replaces)
        parsed = parse_payload(kind, payload)
        payload_hash = hashlib.sha256(parsed.canonical).digest()
        # Only a transaction can replace a request: of two transactions with one nonce only one can be mined,
        # but a signed EIP-7702 authorization stays valid beside a newer one for the same nonce, so
        # "replacing" it would revoke nothing.
        if replaces is not None and kind is not PayloadKind.TRANSACTION:
            raise InvalidInput(
                "only a transaction can replace a request; a signed authorization stays valid beside any"
                " other for its nonce, so it cannot be replaced; to void it, have the account use that nonce"
                " first (any transaction with it)",
                field="replaces",
            )
        now = self._clock()
        facts = request_facts(key_label, parsed, replacement=replaces is not None, now=now)
        with self._store.transaction() as tx:
            key = tx.get_key(key_label)
            if key is None:
                raise NotFound(f"there is no key labelled {key_label!r}")
            if key.state is KeyState.FROZEN:
                raise KeyFrozen(f"key {key_label!r} is frozen and signs nothing until it is unfrozen")
            key_now = key
            nonce_use = None
            if parsed.nonce_slot is not None and parsed.chain_id is not None:
                scope, nonce = parsed.nonce_slot
                nonce_use = NonceUse(key.key_id, parsed.chain_id, scope, nonce, "", payload_hash, now)
                earlier = self._nonce_check(tx, nonce_use, key_label, replaces)
                if earlier is not None:
                    # The same payload again: the answer is the request that already holds the nonce, with
                    # its stored signature when it has one. Nothing new is recorded or signed.
                    return earlier
            active = self._policies.active(tx).policy
            evaluation = active.evaluate(facts, velocity_lookup(tx, now))
            decision = evaluation.decision
            state = {
                DecisionAction.SIGN: RequestState.APPROVED,
                DecisionAction.APPROVE: RequestState.PENDING_APPROVAL,
                DecisionAction.DENY: RequestState.DENIED,
            }[decision.action]
            lifetime = evaluation.lifetime_seconds
            request = SigningRequest(
                request_id=new_request_id(now.timestamp()),
                key_label=key_label,
                key_id=key.key_id,
                requester=caller.name,
                kind=parsed.kind,
                chain_id=parsed.chain_id,
                payload=parsed.canonical,
                payload_hash=payload_hash,
                digest=parsed.digest,
                decision=decision,
                state=state,
                created_at=now,
                updated_at=now,
                summary=parsed.summary(),
                expires_at=now + timedelta(seconds=lifetime) if lifetime else None,
                policy_trace=policy_rules.trace_to_json(evaluation.trace),
                value=parsed.value,
                replaces=replaces,
                token_amounts=request_token_amounts(facts.intents),
            )
            tx.insert_request(request)
            self._audit.record(
                tx,
                caller.name,
                AuditKind.REQUEST_SUBMITTED,
                request.request_id,
                key=key_label,
                payload_kind=request.kind.value,
                chain_id=request.chain_id,
                digest="0x" + request.digest.hex(),
                payload_sha256="0x" + payload_hash.hex(),
                decision=decision.action.value,
                rule=decision.rule,
                policy_version=decision.policy_version,
                replaces=replaces,
            )
            if state is RequestState.DENIED:
                self._audit.record(
                    tx, DAEMON_ACTOR, AuditKind.REQUEST_DENIED, request.request_id, reason=decision.reason
                )
            elif nonce_use is not None:
                self._hold_nonce(tx, nonce_use, request, replaces, now)
            if evaluation.freeze_key:
                # The key as this transaction leaves it, newly sealed: what the signing question is asked on,
                # so a request a later rule decided "sign" waits for the unfreeze (the key's old row would no
                # longer match its seal).
                key_now = tx.set_key_state(key_label, KeyState.ACTIVE, KeyState.FROZEN, now)
                self._audit.record(
                    tx, DAEMON_ACTOR, AuditKind.KEY_FROZEN, key=key_label, reason=evaluation.freeze_reason
                )
                log.warning("froze key %s: %s", key_label, evaluation.freeze_reason)
            prepared = prepared_at_submission(parsed, payload_hash, facts, decision)
            signed_here: SigningRequest | CustodyError | None = None
            if state is RequestState.APPROVED and self._sign_in_write_transaction:
                signed_here = self._sign_in_transaction(
                    tx, request, now, prepared, policy=active, key=key_now
                )
                claimed = False
            else:
                claimed = state is RequestState.APPROVED and self.claim(
                    tx, request, now, prepared, policy=active, key=key_now
                )
        self._notifier.changed()
        note(
            log,
            "request %s by %s on key %s: %s (%s)",
            request.request_id,
            caller.name,
            key_label,
            request.state.value,
            decision.rule or "no rule",
        )
        if isinstance(signed_here, CustodyError):
            # The request's end (FAILED) is committed with it; the caller learns why it was not signed.
            raise signed_here
        if state is RequestState.APPROVED and key_now.state is KeyState.FROZEN:
            raise KeyFrozen(
                f"request {request.request_id} was not signed: {evaluation.freeze_reason}, so key"
                f" {key_label!r} was frozen; the request waits for the unfreeze"
            )
        if signed_here is not None:
            note(log, "request %s signed with key %s", request.request_id, key_label)
            return signed_here
        if claimed:
            return self.sign_if_claimed(request, prepared)
        return request

    def _sign_in_transaction(
        self,
        tx: StoreTransaction,
        request: SigningRequest,
        now: datetime,
        prepared: Prepared,
        *,
        policy: Policy,
        key: Key,
    ) -> SigningRequest | CustodyError | None:
        """Sign ``request``, just recorded APPROVED in ``tx``, and record its signature in ``tx`` too.

        The domain's signing question is asked once, on what ``tx`` read under the write lock: no other writer
        can freeze the key, end the request or activate a policy before ``tx`` commits, so nothing needs asking
        again and no claim is taken (no other process can see the request yet). The signature leaves this
        process only with the caller's return, after ``tx`` commits: a commit that fails drops it unseen, and
        the request was never recorded. Returns the SIGNED request; None when it may not be signed (ended in
        ``tx`` when it never can be); or the error to raise once ``tx`` has committed the request FAILED,
        when the HSM could not sign it.
        """
        refusal = self._refusal(tx, policy=policy, key=key, request=request, now=now, prepared=prepared)
        if refusal is not None:
            if refusal.ends_as is not None:
                self.end(tx, request, refusal, now)
            return None
        assert prepared.parsed is not None  # signing_refusal checked it
        digest = prepared.recomputed.digest
        try:
            raw_signature = self._hsm.sign_digest(bytes.fromhex(key.key_id), digest)
            r, s, y_parity = recoverable_signature(raw_signature, digest, key.public_key)
            result = prepared.parsed.assemble(r, s, y_parity)
        except KeyFrozen:
            # As in sign_if_claimed: signing switched off in the HSM is a freeze; nothing of this submission is
            # stored, as for any request of a frozen key.
            raise
        except (HsmUnavailable, NotFound) as exc:
            # As in sign_if_claimed: a key the store knows that the HSM cannot find is an HSM in trouble.
            self.end(tx, request, Refusal(f"the HSM could not sign: {exc.message}", RequestState.FAILED), now)
            return HsmUnavailable(
                f"the HSM is unavailable; request {request.request_id} was not signed and is marked FAILED"
            )
        except CustodyError as exc:
            self.end(tx, request, Refusal(f"signing failed: {exc.message}", RequestState.FAILED), now)
            return exc
        signed = tx.transition_request(
            request.request_id, RequestState.APPROVED, RequestState.SIGNED, self._clock(), result=result
        )
        self._record_signed(tx, signed, key, digest, result)
        return signed

    def _nonce_check(
        self, tx: StoreTransaction, use: NonceUse, key_label: str, replaces: str | None
    ) -> SigningRequest | None:
        """Refuse a second payload for a nonce unless it explicitly replaces the holder; return the holder when
        the payload is the same one again."""
        holder = tx.nonce_holder(use.key_id, use.chain_id, use.scope, use.nonce)
        where = f"nonce {use.nonce} of key {key_label!r} on chain {use.chain_id}"
        if replaces is None:
            if holder is None:
                return None
            if holder.payload_hash == use.payload_hash:
                return tx.get_request(holder.request_id)
            raise NonceConflict(
                f"{where} is already used by request {holder.request_id} with a different payload;"
                " to change it, submit a replacement of that request"
            )
        if holder is None or holder.request_id != replaces:
            raise NonceConflict(f"request {replaces} does not hold {where}, so there is nothing to replace")
        if holder.payload_hash == use.payload_hash:
            raise InvalidInput(f"the payload is identical to request {replaces}, which it claims to replace")
        return None

    def _hold_nonce(
        self,
        tx: StoreTransaction,
        use: NonceUse,
        request: SigningRequest,
        replaces: str | None,
        now: datetime,
    ) -> None:
        held = NonceUse(
            use.key_id, use.chain_id, use.scope, use.nonce, request.request_id, use.payload_hash, now
        )
        if replaces is None:
            tx.reserve_nonce(held)
            return
        tx.move_nonce(held, from_request_id=replaces)
        replaced = tx.get_request(replaces)
        if replaced is not None and not replaced.is_final:
            # The replaced request must never be signed now that its nonce belongs to the replacement.
            tx.transition_request(
                replaces,
                replaced.state,
                RequestState.CANCELLED,
                now,
                error=f"replaced by request {request.request_id}",
            )
            self._audit.record(
                tx,
                request.requester,
                AuditKind.REQUEST_CANCELLED,
                replaces,
                reason=f"replaced by {request.request_id}",
            )

    # -- the signing path -------------------------------------------------------------------------------------

    def sign_if_due(self, request_id: str) -> SigningRequest | None:
        """Sign an APPROVED request when it may be signed now and nobody else holds its claim; None when it is
        not signed now (it waits, or it was ended because it can never be signed).

        Called by the background worker for time-locked requests and for requests whose claim lapsed.
        """
        now = self._clock()
        with self._store.transaction() as tx:
            request = tx.get_request(request_id)
            if request is None:
                return None
            prepared = prepare(request, now)
            policy = self._policies.active(tx).policy
            if not self.claim(tx, request, now, prepared, policy=policy, key=tx.get_key(request.key_label)):
                return None
        return self.sign_if_claimed(request, prepared)

    def claim(
        self,
        tx: StoreTransaction,
        request: SigningRequest,
        now: datetime,
        prepared: Prepared,
        *,
        policy: Policy,
        key: Key | None,
    ) -> bool:
        """Take the signing claim on ``request`` in ``tx`` when it may be signed now; False when it may not or
        someone else holds the claim. ``policy`` and ``key`` are the active policy and the request's key as
        read in ``tx``.

        Whether it may be signed is the domain's one answer (``signing_refusal``), asked inside the write
        transaction that takes the claim, so nothing it read can change before the claim is held. A request
        that can never be signed is ended here, in the same transaction; one that may become signable (a
        time-lock, a frozen key) waits.
        """
        refusal = self._refusal(tx, policy=policy, key=key, request=request, now=now, prepared=prepared)
        if refusal is not None:
            if refusal.ends_as is not None:
                self.end(tx, request, refusal, now)
            return False
        return tx.claim_signing(request.request_id, self._claimant, now, now + SIGNING_LEASE)

    def sign_if_claimed(self, request: SigningRequest, prepared: Prepared) -> SigningRequest:
        """Sign a request whose claim this process took in a committed transaction, and record the result
        before anyone sees it.

        Right before the HSM is called the same question as at the claim is asked again on fresh reads: the
        claim was committed a moment ago, and a key frozen or a row edited since must still stop the signature.
        The signature is returned only after SIGNED and the signature are committed together, and only if the
        key was not frozen while the HSM signed. If the HSM fails, a request that was signed off by approvers
        stays APPROVED and the worker tries again once its claim lapses, until it expires, so that an HSM outage
        does not throw the approvers' work away; a request the policy signs at once is marked FAILED and its
        requester may submit it again. If the record cannot be written, nothing is returned (fail closed).
        """
        key = self._store.get_key(request.key_label)
        refusal = self._refusal(
            self._store,
            policy=self._policies.active().policy,
            key=key,
            request=request,
            now=self._clock(),
            prepared=prepared,
        )
        if refusal is not None:
            if refusal.ends_as is None:
                # A key frozen since the claim: the request waits for the unfreeze, its claim lapses.
                raise KeyFrozen(f"request {request.request_id} was not signed: {refusal.reason}")
            self._end_outside_transaction(request, refusal)
            raise WrongState(f"request {request.request_id} was not signed: {refusal.reason}")
        assert key is not None and prepared.parsed is not None  # signing_refusal checked both
        digest = prepared.recomputed.digest
        try:
            raw_signature = self._hsm.sign_digest(bytes.fromhex(key.key_id), digest)
            r, s, y_parity = recoverable_signature(raw_signature, digest, key.public_key)
            result = prepared.parsed.assemble(r, s, y_parity)
        except (HsmUnavailable, NotFound) as exc:
            # The store knows this key, so an HSM that cannot find it is an HSM in trouble (a token that went
            # away), not a request for an unknown key: the caller gets UNAVAILABLE either way.
            if request.decision.action is DecisionAction.APPROVE:
                raise HsmUnavailable(
                    f"the HSM is unavailable; request {request.request_id} was not signed, stays APPROVED and"
                    " is signed once the HSM is back, unless it expires first"
                ) from exc
            if self._fail(request, f"the HSM could not sign: {exc.message}"):
                raise HsmUnavailable(
                    f"the HSM is unavailable; request {request.request_id} was not signed and is marked FAILED"
                ) from exc
            # Marking it FAILED is a write, and every write seals the audit log's head in the same HSM: the
            # request keeps its approval and its lapsing claim, as if the signature's record had failed.
            raise HsmUnavailable(
                f"the HSM is unavailable; request {request.request_id} was not signed, could not be marked FAILED"
                " either, stays APPROVED and is signed once the HSM is back, unless it expires first"
            ) from exc
        except KeyFrozen:
            # Signing with the key is switched off in the HSM, which a freeze does: the request waits, as
            # every request of a frozen key does, and its claim lapses.
            raise
        except CustodyError as exc:
            self._fail(request, f"signing failed: {exc.message}")
            raise
        # The signature and its audit event commit together; if either cannot be written, the signature is
        # dropped and never returned (the request stays APPROVED and its claim lapses for a later retry).
        with self._store.transaction() as tx:
            if key_refusal(request, tx.get_key(key.label)) is not None:
                # The key was frozen while the HSM signed: the signature is dropped unseen, and the request
                # waits, like every request of a frozen key, for the unfreeze.
                raise KeyFrozen(
                    f"key {key.label!r} was frozen while request {request.request_id} was being signed;"
                    " the signature was discarded and the request waits for the unfreeze"
                )
            signed = tx.transition_request(
                request.request_id, RequestState.APPROVED, RequestState.SIGNED, self._clock(), result=result
            )
            self._record_signed(tx, signed, key, digest, result)
        self._notifier.changed()
        note(log, "request %s signed with key %s", request.request_id, key.label)
        return signed

    def _record_signed(
        self, tx: StoreTransaction, signed: SigningRequest, key: Key, digest: bytes, result: SignatureResult
    ) -> None:
        self._audit.record(
            tx,
            DAEMON_ACTOR,
            AuditKind.REQUEST_SIGNED,
            signed.request_id,
            key=key.label,
            address=key.address,
            digest="0x" + digest.hex(),
            signature="0x" + result.signature.hex(),
            tx_hash="0x" + result.tx_hash.hex() if result.tx_hash else None,
        )

    def _refusal(
        self,
        reader: StoreTransaction,
        *,
        policy: Policy,
        key: Key | None,
        request: SigningRequest,
        now: datetime,
        prepared: Prepared,
    ) -> Refusal | None:
        """Ask the domain's signing question, reading the verdicts and the seals through ``reader`` (a
        transaction, or the store).

        A request decided "sign" carries no quorum, so its verdicts are not read: were its stored decision
        edited, the policy asked again would want approvals that then are not there, and it is refused. The
        seals of the request, its key and the policy are checked only for an APPROVED signing request, the only
        kind the answer can let through.
        """
        seal_problem = None
        if request.state is RequestState.APPROVED and not request.kind.is_governance:
            records = sealed_records(request, key, policy, self._policies.document_of(policy))
            seal_problem = self._sealer.problem(reader, records)
        return signing_refusal(
            request,
            key=key,
            approvals=reader.list_approvals(request.request_id) if request.decision.quorum else (),
            policy=policy,
            recomputed=prepared.recomputed,
            decision_now=prepared.decision_under(policy),
            seal_problem=seal_problem,
            now=now,
        )

    def end(self, tx: StoreTransaction, request: SigningRequest, refusal: Refusal, now: datetime) -> None:
        """End a request that can never be signed (or approved), in ``tx``, with its audit event."""
        assert refusal.ends_as is not None
        tx.transition_request(request.request_id, request.state, refusal.ends_as, now, error=refusal.reason)
        if refusal.seal_mismatch:
            # Someone without the seal key wrote this row, its key or the policy: the signal that the database
            # is in other hands, so it is recorded on its own besides the request's end.
            self._audit.record(
                tx, DAEMON_ACTOR, AuditKind.SEAL_MISMATCH, request.request_id, reason=refusal.reason
            )
            log.error("request %s was not signed: %s", request.request_id, refusal.reason)
        if refusal.ends_as is RequestState.EXPIRED:
            self._audit.record(tx, DAEMON_ACTOR, AuditKind.REQUEST_EXPIRED, request.request_id)
        else:
            self._audit.record(
                tx, DAEMON_ACTOR, AuditKind.REQUEST_FAILED, request.request_id, reason=refusal.reason
            )
        log.warning("request %s ended %s: %s", request.request_id, refusal.ends_as.value, refusal.reason)

    def _fail(self, request: SigningRequest, reason: str) -> bool:
        """Mark ``request`` FAILED; returns whether that was recorded."""
        return self._end_outside_transaction(request, Refusal(reason, ends_as=RequestState.FAILED))

    def _end_outside_transaction(self, request: SigningRequest, refusal: Refusal) -> bool:
        """End ``request`` as ``refusal`` says in a transaction of its own; returns whether that was recorded."""
        try:
            with self._store.transaction() as tx:
                self.end(tx, request, refusal, self._clock())
        except (Aborted, WrongState, Unavailable) as exc:
            # The request stays APPROVED without a signature: it is never reported as signed, and the caller
            # already receives the original error.
            log.error("could not end request %s: %s", request.request_id, exc)
            return False
        self._notifier.changed()
        return True

    # -- background work --------------------------------------------------------------------------------------

    def expire_overdue(self, limit: int = 100) -> int:
        """Move requests past their lifetime to EXPIRED; returns how many this call moved."""
        now = self._clock()
        moved = 0
        for request in self._store.expired_requests(now, limit):
            try:
                # The worker runs outside any call, so it names the request its log lines are about itself.
                with request_context(request.request_id), self._store.transaction() as tx:
                    tx.transition_request(
                        request.request_id,
                        request.state,
                        RequestState.EXPIRED,
                        now,
                        error="the request expired",
                    )
                    self._audit.record(tx, DAEMON_ACTOR, AuditKind.REQUEST_EXPIRED, request.request_id)
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
            with request_context(request.request_id):
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
            # People judge a request by its progress, so it counts what signing would count: the approvals
            # that verify against the payload recomputed now, never a row merely present in the database.
            policy = self._policies.active().policy
            recomputed = prepare(request, self._clock()).recomputed
            approvers = verified_approvers(request, approvals, policy, recomputed)
            progress = quorum_progress(request.decision.quorum, policy.group_members(), approvers)
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
        with self._store.transaction() as tx:
            cancelled = tx.transition_request(
                request.request_id,
                request.state,
                RequestState.CANCELLED,
                self._clock(),
                error=f"cancelled by {caller.name}" + (f": {reason}" if reason else ""),
            )
            self._audit.record(
                tx, caller.name, AuditKind.REQUEST_CANCELLED, request.request_id, reason=reason
            )
        self._notifier.changed()
        return cancelled

    @staticmethod
    def _may_see(caller: Principal, request: SigningRequest) -> bool:
        return caller.sees_all_requests() or (bool(request.key_label) and request.key_label in caller.keys)

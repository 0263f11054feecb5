"""Use cases for signing requests: submit, read, list, watch, cancel, and the one path that signs."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from custody.chains.evm import MAX_PAYLOAD_BYTES, ParsedPayload, parse_payload
from custody.chains.evm.signature import recoverable_signature
from custody.domain.errors import (
    Aborted,
    CustodyError,
    HsmUnavailable,
    InternalError,
    InvalidInput,
    KeyFrozen,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from custody.domain.ids import new_request_id, validate_request_id
from custody.domain.keys import Key, KeyState, validate_key_label
from custody.domain.policy import Policy, RequestFacts
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState, SigningRequest
from custody.hsm.base import Hsm
from custody.store.base import Store

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 1000


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


class SigningUseCases:
    def __init__(
        self,
        store: Store,
        hsm: Hsm,
        policy: Callable[[], Policy],
        clock: Callable[[], datetime],
        notifier: ChangeNotifier | None = None,
    ) -> None:
        self._store = store
        self._hsm = hsm
        self._policy = policy
        self._clock = clock
        self._notifier = notifier or ChangeNotifier()

    # -- submit -----------------------------------------------------------------------------------------------

    def submit(self, caller: Principal, key_label: str, kind: PayloadKind, payload: bytes) -> SigningRequest:
        """Parse the payload, decide by policy, record the request, and sign at once when policy allows.

        The daemon computes the digest itself from the parsed payload. A denied request is recorded in state
        DENIED with the reason and returned, not raised: the record is the answer.
        """
        validate_key_label(key_label)
        caller.require_key_grant(key_label)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(
                f"the payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}", field="payload"
            )
        parsed = parse_payload(kind, payload)
        key = self._key(key_label)
        if key.state is KeyState.FROZEN:
            raise KeyFrozen(f"key {key_label!r} is frozen and signs nothing until it is unfrozen")

        policy = self._policy()
        evaluation = policy.evaluate(
            RequestFacts(
                key_label=key_label,
                kind=parsed.kind,
                chain_id=parsed.chain_id,
                transaction_type=parsed.transaction_type,
                to=parsed.to,
                value=parsed.value,
            )
        )
        decision = evaluation.decision
        now = self._clock()
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
            state=RequestState.APPROVED if decision.action == "sign" else RequestState.DENIED,
            created_at=now,
            updated_at=now,
            summary=parsed.summary(),
        )
        self._store.insert_request(request)
        self._notifier.changed()
        log.info(
            "request %s by %s on key %s: %s (%s)",
            request.request_id,
            caller.name,
            key_label,
            request.state.value,
            decision.rule or "no rule",
        )
        if request.state is RequestState.APPROVED:
            return self.sign_approved(request, parsed, key)
        return request

    # -- the signing path -------------------------------------------------------------------------------------

    def sign_approved(self, request: SigningRequest, parsed: ParsedPayload, key: Key) -> SigningRequest:
        """Sign an APPROVED request once and record the result before anyone sees it.

        The signature is returned only after the SIGNED state and the signature are committed together. If the
        HSM fails, the request is marked FAILED and the caller gets UNAVAILABLE; if the record cannot be
        written, nothing is returned (fail closed).
        """
        if parsed.digest != request.digest:
            # The stored digest is what policy judged; a mismatch means the stored row and the payload
            # disagree, so neither can be trusted.
            self._fail(request, "the stored digest does not match the payload")
            raise InternalError("the request's digest does not match its payload; it was not signed")
        try:
            raw_signature = self._hsm.sign_digest(bytes.fromhex(key.key_id), request.digest)
            r, s, y_parity = recoverable_signature(raw_signature, request.digest, key.public_key)
            result = parsed.assemble(r, s, y_parity)
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

    # -- reading ----------------------------------------------------------------------------------------------

    def get(self, caller: Principal, request_id: str) -> SigningRequest:
        request = self._store.get_request(validate_request_id(request_id))
        if request is None or not self._may_see(caller, request):
            # Someone who may not see a request learns nothing about it, not even that it exists.
            raise NotFound(f"there is no request {request_id}")
        return request

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
            if request.key_label in caller.keys
        ]

    def watch(
        self, caller: Principal, request_id: str, is_active: Callable[[], bool], poll_seconds: float = 0.5
    ) -> Iterator[SigningRequest]:
        """Yield the request now and after every change, until it reaches a final state or the caller leaves."""
        current = self.get(caller, request_id)
        yield current
        generation = self._notifier.generation()
        while not current.state.is_final and is_active():
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
        cancelled = self._store.transition_request(
            request.request_id,
            request.state,
            RequestState.CANCELLED,
            self._clock(),
            error=f"cancelled by {caller.name}" + (f": {reason}" if reason else ""),
        )
        self._notifier.changed()
        return cancelled

    def _key(self, label: str) -> Key:
        key = self._store.get_key(label)
        if key is None:
            raise NotFound(f"there is no key labelled {label!r}")
        return key

    @staticmethod
    def _may_see(caller: Principal, request: SigningRequest) -> bool:
        return caller.sees_all_requests() or request.key_label in caller.keys

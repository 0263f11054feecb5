"""Use cases for signing keys: create them inside the HSM, read them back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from custody.app.audit import DAEMON_ACTOR, AuditUseCases
from custody.app.policy import PolicyUseCases, governance_request, unfreeze_payload
from custody.audit.events import AuditKind
from custody.chains.evm.address import address_from_public_point
from custody.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    KeyFrozen,
    NotFound,
    PermissionDenied,
)
from custody.domain.keys import Key, KeyState, check_label_not_reserved, validate_key_label
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState, SigningRequest
from custody.hsm.base import Hsm
from custody.observability.logs import note
from custody.store.base import Store

MAX_REASON_CHARS = 1000

log = logging.getLogger(__name__)


class KeyUseCases:
    def __init__(
        self,
        store: Store,
        hsm: Hsm,
        policies: PolicyUseCases,
        audit: AuditUseCases,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._hsm = hsm
        self._policies = policies
        self._audit = audit
        self._clock = clock
        # What the start found of active keys the token refuses to sign with (see verify_keys_in_hsm).
        self.refused_by_token: list[str] = []

    def create_key(self, caller: Principal, label: str) -> Key:
        """Generate a secp256k1 key pair in the HSM and record it; only admins create keys."""
        caller.require(Role.ADMIN, "create keys")
        check_label_not_reserved(validate_key_label(label))
        # Checking first keeps the common mistake (a label in use) from leaving an orphan key pair in the token;
        # the store's unique constraint still decides a race between two admins.
        if self._store.get_key(label) is not None:
            raise AlreadyExists(f"a key labelled {label!r} already exists")
        generated = self._hsm.generate_secp256k1_key(label)
        self._hsm.check_key(generated.key_id)
        key = Key(
            label=label,
            key_id=generated.key_id.hex(),
            address=address_from_public_point(generated.public_point),
            public_key=generated.public_point,
            state=KeyState.ACTIVE,
            created_at=self._clock(),
        )
        with self._store.transaction() as tx:
            tx.insert_key(key)
            self._audit.record(
                tx, caller.name, AuditKind.KEY_CREATED, key=label, key_id=key.key_id, address=key.address
            )
        note(log, "created key %s (%s) for %s", label, key.address, caller.name)
        return key

    def get_key(self, caller: Principal, label: str) -> Key:
        del caller  # Any authenticated principal may read public key material.
        return self.get_key_record(validate_key_label(label))

    def get_key_record(self, label: str) -> Key:
        """The stored key for a label the caller already holds a request for (no permission to check)."""
        key = self._store.get_key(label)
        if key is None:
            raise NotFound(f"there is no key labelled {label!r}")
        return key

    def list_keys(self, caller: Principal) -> Sequence[Key]:
        del caller
        return self._store.list_keys()

    def freeze(self, caller: Principal, label: str, reason: str) -> Key:
        """The circuit breaker: any one security approver of the active policy stops a key from signing.

        Freezing is the safe direction, so it takes one person and no quorum. Every freeze, of an active key or
        of one already frozen, is a new freeze: it is recorded with its reason, and it cancels the key's waiting
        unfreeze, whose approvers did not know of it; an unfreeze names the freeze it lifts, so none asked for
        before this freeze can lift it.
        """
        validate_key_label(label)
        _check_reason(reason)
        policy = self._policies.active().policy
        if not policy.is_security(caller.name):
            raise PermissionDenied(
                f"{caller.name} may not freeze keys: only approvers in a security group of policy version"
                f" {policy.version} may"
            )
        now = self._clock()
        with self._store.transaction() as tx:
            key = tx.get_key(label)
            if key is None:
                raise NotFound(f"there is no key labelled {label!r}")
            frozen = tx.set_key_state(label, key.state, KeyState.FROZEN, now)
            self._audit.record(
                tx, caller.name, AuditKind.KEY_FROZEN, key=label, reason=reason, freeze=frozen.freezes
            )
            for waiting in tx.waiting_unfreezes(label):
                why = f"key {label} was frozen again (freeze {frozen.freezes}) by {caller.name}; ask again"
                tx.transition_request(
                    waiting.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, now, error=why
                )
                self._audit.record(
                    tx, DAEMON_ACTOR, AuditKind.REQUEST_CANCELLED, waiting.request_id, reason=why
                )
        log.warning(
            "key %s frozen (freeze %d) by %s: %s",
            label,
            frozen.freezes,
            caller.name,
            reason or "no reason given",
        )
        return frozen

    def request_unfreeze(self, caller: Principal, label: str, reason: str) -> tuple[Key, SigningRequest]:
        """Unfreezing needs the admin quorum: record the request the admins then approve."""
        if not (caller.has(Role.ADMIN) or caller.has(Role.APPROVER)):
            raise PermissionDenied(
                f"{caller.name} may not ask to unfreeze keys: that needs the admin or approver role"
            )
        validate_key_label(label)
        _check_reason(reason)
        now = self._clock()
        with self._store.transaction() as tx:
            key = tx.get_key(label)
            if key is None:
                raise NotFound(f"there is no key labelled {label!r}")
            if key.state is not KeyState.FROZEN:
                raise FailedPrecondition(f"key {label!r} is not frozen")
            # One unfreeze waits per key: two identical ones would let a later quorum's approvals be spent on
            # whichever is left over.
            waiting = tx.waiting_unfreezes(label)
            if waiting:
                raise FailedPrecondition(
                    f"unfreeze request {waiting[0].request_id} for key {label!r} is already waiting for the admin"
                    " quorum; approve or reject that one"
                )
            policy = self._policies.active(tx).policy
            request = governance_request(
                kind=PayloadKind.KEY_UNFREEZE,
                payload=unfreeze_payload(label, key.freezes),
                requester=caller.name,
                key_label=label,
                key_id=key.key_id,
                decision=policy.governance_decision(),
                now=now,
                summary={
                    "action": "unfreeze",
                    "key": label,
                    "address": key.address,
                    "freeze": str(key.freezes),
                    "reason": reason,
                },
            )
            tx.insert_request(request)
            self._audit.record(
                tx,
                caller.name,
                AuditKind.REQUEST_SUBMITTED,
                request.request_id,
                payload_kind=request.kind.value,
                key=label,
            )
        note(log, "unfreeze of key %s requested by %s as %s", label, caller.name, request.request_id)
        return key, request

    def verify_keys_in_hsm(self) -> None:
        """At start: every key the store knows must be in the token, sensitive and not extractable, and its
        public point must still give the recorded address. Raises the first problem found; an active key the
        token refuses to sign with is kept in ``refused_by_token`` for health."""
        for key in self._store.list_keys():
            key_id = bytes.fromhex(key.key_id)
            try:
                self._hsm.check_key(key_id)
            except KeyFrozen as exc:
                # Signing switched off in the HSM is what a freeze does; for a key the database calls active it
                # is a freeze whose record did not commit, or a database put back, and the HSM keeps refusing it.
                if key.state is not KeyState.FROZEN:
                    problem = (
                        f"at start, key {key.label} was active in the database, but {exc.message}; it signs"
                        " nothing until it is frozen and unfrozen again"
                    )
                    self.refused_by_token.append(problem)
                    log.error("%s", problem)
            if address_from_public_point(self._hsm.public_point(key_id)) != key.address:
                raise NotFound(
                    f"the HSM's key {key.label!r} no longer matches the recorded address {key.address}"
                )


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"must be at most {MAX_REASON_CHARS} characters", field="reason")

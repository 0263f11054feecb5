"""The audit log as the use cases write and read it.

Use cases record each state change with ``record(tx, ...)`` inside the transaction that makes the change: if
the event cannot be written, the transaction and the change roll back, and the caller gets UNAVAILABLE (fail
closed). Refusals change nothing, so they are recorded in a transaction of their own after the refusal.
Checkpoints sign the chain's head with the audit key in the HSM every ``checkpoint_every`` events, once the
oldest event no checkpoint covers is ``checkpoint_interval`` old, and at shutdown, so a log rewritten by someone
with database access no longer verifies against the HSM's key, and an export of a quiet daemon is covered
within about that interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from custody.app.anchor import TokenAnchor
from custody.audit.chain import (
    CHECKPOINT_KIND,
    ChainVerification,
    checkpoint_draft,
    checkpoint_statement,
    verify_events,
)
from custody.audit.events import AuditDraft, AuditEvent, AuditKind
from custody.domain.errors import (
    ConfigurationError,
    CustodyError,
    HsmUnavailable,
    InternalError,
    InvalidInput,
    PermissionDenied,
)
from custody.domain.principals import Principal, Role
from custody.hsm.base import Hsm
from custody.store.base import DaemonKey, Store, StoreTransaction

log = logging.getLogger(__name__)

AUDIT_KEY_LABEL = "custody-audit"
# The audit key's entry among the daemon's own keys in the database, which hold its CKA_ID.
AUDIT_KEY_PURPOSE = "audit"
DAEMON_ACTOR = "custody"
DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_CHECKPOINT_INTERVAL = timedelta(seconds=60)
CHECKPOINT_ATTEMPTS = 5
MAX_LIST_LIMIT = 10_000


class AuditUseCases:
    def __init__(
        self,
        store: Store,
        hsm: Hsm,
        clock: Callable[[], datetime],
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        *,
        checkpoint_interval: timedelta = DEFAULT_CHECKPOINT_INTERVAL,
        anchor: TokenAnchor | None = None,
    ) -> None:
        self._store = store
        # The anchor outside the database that each checkpoint moves forward and online verification checks.
        self._anchor = anchor
        self._hsm = hsm
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._key_id: bytes | None = None
        self._public_key: bytes | None = None
        # The last event the start's head verification reached: what the daemon remembers and anchors first.
        self.verified_head: AuditEvent | None = None

    # -- writing ----------------------------------------------------------------------------------------------

    def record(
        self, tx: StoreTransaction, actor: str, kind: AuditKind, request_id: str | None = None, **details: Any
    ) -> AuditEvent:
        """Chain an event in ``tx``; the caller's change and this event commit together or not at all."""
        return tx.append_audit(
            AuditDraft(time=self._clock(), actor=actor, kind=kind, request_id=request_id, details=details)
        )

    def record_refusal(self, actor: str, kind: AuditKind, error: CustodyError, **details: Any) -> None:
        """Record a refused call (it changed nothing). A log that cannot be written is reported, and the caller
        still gets the refusal it earned."""
        try:
            with self._store.transaction() as tx:
                self.record(tx, actor, kind, reason=error.message, error=type(error).__name__, **details)
        except CustodyError as exc:
            log.error("could not record a refused call by %s in the audit log: %s", actor, exc.message)

    # -- checkpoints ------------------------------------------------------------------------------------------

    @property
    def public_key(self) -> bytes:
        if self._public_key is None:
            raise ConfigurationError("the audit key has not been loaded from the HSM")
        return self._public_key

    def open(self) -> None:
        """At start: find the audit key in the HSM, then verify the chain's head (the last checkpoint and every
        event after it) before serving anything.

        The key is found by the CKA_ID the database stores for it, never by its label, so a key that anyone
        else labels like it changes nothing. Only a database that stores no audit key yet (a new one, or one
        from before the daemon stored it) looks the key up by label or makes it, and stores its id.
        """
        # Finding or creating the key happens under the database's write lock: replicas sharing one database
        # and one token start at the same time, and two of them must not each create an audit key.
        with self._store.transaction() as tx:
            stored = tx.daemon_key(AUDIT_KEY_PURPOSE)
            if stored is None:
                key_id, public_key = self._hsm.ensure_ed25519_key(AUDIT_KEY_LABEL)
                tx.insert_daemon_key(
                    DaemonKey(AUDIT_KEY_PURPOSE, key_id.hex(), public_key, created_at=self._clock())
                )
            else:
                key_id = bytes.fromhex(stored.key_id)
                public_key = self._hsm.ed25519_public_key(key_id)
                if public_key != stored.public_key:
                    raise ConfigurationError(
                        f"the HSM's Ed25519 key {stored.key_id} is not the audit key the database names (its"
                        " public key differs); refusing to start"
                    )
        self._key_id, self._public_key = key_id, public_key
        verification = self.verify_head()
        if not verification.ok:
            raise ConfigurationError(
                f"the audit log does not verify at sequence {verification.first_bad_sequence}:"
                f" {verification.problem}; refusing to start"
            )
        self.verified_head = verification.last_event

    def checkpoint_if_due(self) -> None:
        """Sign a checkpoint when ``checkpoint_every`` events followed the last one, or when the oldest event
        after it is ``checkpoint_interval`` old; nothing when no event followed it."""
        head = self._store.audit_head()
        if head is None or head.kind == CHECKPOINT_KIND:
            return
        last = self._store.last_audit_event_of_kind(CHECKPOINT_KIND)
        covered = last.sequence if last else 0
        if head.sequence - covered >= self._checkpoint_every or self._oldest_uncovered_is_due(covered):
            # Under a steady stream of writes the head may move while the HSM signs; each attempt's window is
            # one signature long, so a few attempts land the checkpoint unless writes never pause at all.
            for _ in range(CHECKPOINT_ATTEMPTS):
                try:
                    if self.checkpoint() is not None:
                        return
                except HsmUnavailable as exc:
                    # An HSM outage is ridden out like the worker's other steps: the checkpoint stays due, and
                    # the next round signs it once the HSM is back.
                    log.warning("could not sign a due audit checkpoint, will retry: %s", exc.message)
                    return

    def _oldest_uncovered_is_due(self, covered: int) -> bool:
        # Measured from the oldest event no checkpoint covers, not from the last checkpoint: a daemon that was
        # quiet for an hour and then wrote one event still gets that event covered within the interval, not
        # at once, and never later.
        oldest = self._store.list_audit_events(after_sequence=covered, limit=1)
        return bool(oldest) and self._clock() - oldest[0].time >= self._checkpoint_interval

    def checkpoint(self) -> AuditEvent | None:
        """Sign the current head with the audit key and chain the signature as the next event.

        The HSM signs outside the store's write transaction: that transaction is the write lock of every
        replica sharing the database, and a slow or stalled HSM must not hold up every writer. The checkpoint
        is then appended only if the head it covers is still the head, since a checkpoint must follow the
        event it covers. Returns None when there is nothing to sign or another writer moved the head
        meanwhile; the next call (the worker's, or the next shutdown's) tries again.
        """
        if self._key_id is None:
            return None
        head = self._store.audit_head()
        if head is None or head.kind == CHECKPOINT_KIND:
            return None
        signature = self._hsm.sign_ed25519(self._key_id, checkpoint_statement(head.sequence, head.hash))
        try:
            draft = checkpoint_draft(head, self.public_key, signature, self._clock())
        except ValueError:
            # Stored, a checkpoint that does not verify would stop the next start; it is never written.
            raise InternalError("the HSM's signature over the audit log's head did not verify") from None
        with self._store.transaction() as tx:
            current = tx.audit_head()
            if current is None or (current.sequence, current.hash) != (head.sequence, head.hash):
                log.info(
                    "the audit log grew past event %d while its checkpoint was signed; trying again later",
                    head.sequence,
                )
                return None
            appended = tx.append_audit(draft)
        self.anchor(appended)
        return appended

    def anchor(self, event: AuditEvent | None) -> None:
        """Move the token's anchor to ``event``. A token that cannot be written leaves the anchor where it was:
        the database only gets further ahead of it, which the next anchor covers; the failure is logged."""
        if self._anchor is None:
            return
        try:
            self._anchor.advance(event)
        except CustodyError as exc:
            log.error("could not move the HSM token's anchor of the audit log forward: %s", exc.message)

    # -- reading ----------------------------------------------------------------------------------------------

    def verify_head(self) -> ChainVerification:
        """The last checkpoint and everything around it: cheap enough for every start, whatever the log's size.

        Verification starts at the event the checkpoint covers, recomputing its hash, so an edit of the signed
        head itself is caught, and runs to the end of the log.
        """
        last = self._store.last_audit_event_of_kind(CHECKPOINT_KIND)
        if last is None:
            return verify_events(self._store.iter_audit_events(), public_key=self.public_key)
        # Every checkpoint covers the event just before it (the daemon writes it so, and verification refuses
        # any other), so the place to start follows from the checkpoint's own sequence. Its details are not
        # read here: they are what verification checks, and an edited checkpoint must be reported as a log
        # that does not verify, not crash the start.
        covered = last.sequence - 1
        start_after = None
        if covered > 1:
            before = self._store.list_audit_events(after_sequence=covered - 2, limit=1)
            if not before or before[0].sequence != covered - 1:
                return ChainVerification(
                    ok=False,
                    events_checked=0,
                    checkpoints_checked=0,
                    first_bad_sequence=covered - 1,
                    problem=f"event {covered - 1}, before the last checkpoint, is missing",
                    last_event=None,
                    unsigned_tail=0,
                )
            start_after = before[0]
        return verify_events(
            self._store.iter_audit_events(after_sequence=covered - 1),
            public_key=self.public_key,
            start_after=start_after,
        )

    def verify_chain(self, caller: Principal) -> ChainVerification:
        """The whole chain, every checkpoint, and the token's anchor: a log that verifies on its own but lacks
        the event the anchor vouches for was restored to an older copy, truncated or rewritten."""
        self._require_reader(caller)
        return self.verify_whole()

    def verify_whole(self) -> ChainVerification:
        """Every event, every checkpoint and the token's anchor, for online verification and for the daemon's own
        verification of the whole log after each start."""
        verification = verify_events(self._store.iter_audit_events(), public_key=self.public_key)
        mismatch = None if self._anchor is None or not verification.ok else self._anchor.mismatch(self._store)
        if mismatch is None:
            return verification
        return replace(verification, ok=False, first_bad_sequence=mismatch.sequence, problem=mismatch.problem)

    def list_events(
        self,
        caller: Principal,
        *,
        request_id: str | None = None,
        actor: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_sequence: int = 0,
        limit: int = 1000,
    ) -> Sequence[AuditEvent]:
        self._require_reader(caller)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"must be between 1 and {MAX_LIST_LIMIT}, got {limit}", field="limit")
        return self._store.list_audit_events(
            request_id=request_id,
            actor=actor,
            kind=kind,
            since=since,
            until=until,
            after_sequence=after_sequence,
            limit=limit,
        )

    @staticmethod
    def _require_reader(caller: Principal) -> None:
        if not (caller.has(Role.AUDITOR) or caller.has(Role.ADMIN)):
            raise PermissionDenied(
                f"{caller.name} may not read the audit log: that needs the auditor or admin role"
            )

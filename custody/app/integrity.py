"""What the daemon computes itself from a stored request before anything counts or signs.

The database is not trusted to be unchanged: a row edited behind the daemon's back must neither gather
approvals nor be signed. The daemon therefore recomputes the payload hash, the digest and the policy's facts
from the stored payload, and judges the request on those (custody/domain/signing.py), so that a forged row
would also need forged Ed25519 signatures.

A request's payload is parsed once on each path to the HSM: the submission that the policy signs at once
hands its own parse along, and a request signed later is parsed once when its claim is taken. The policy is
asked once per policy version on that path too: at submission the decision just made is the answer (same
parse, same policy version, in the same process); later the active policy is asked again on the recomputed
facts, because the stored decision is only a database row.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from custody.app.anchor import TokenAnchor, token_state
from custody.app.audit import DAEMON_ACTOR, AuditUseCases
from custody.app.freshness import CurrentState, Subjects
from custody.audit.anchor import Anchor
from custody.audit.events import AuditDraft, AuditEvent, AuditKind
from custody.audit.head import AuditReader, RememberedHead
from custody.chains.evm import ParsedPayload, parse_payload
from custody.chains.evm.intents import payload_intents
from custody.domain import seals
from custody.domain.errors import ConfigurationError, CustodyError, FailedPrecondition, Unavailable
from custody.domain.keys import Key, KeyState
from custody.domain.policy import Policy, RequestFacts, VelocityUsage
from custody.domain.requests import Decision, RequestState, SigningRequest
from custody.domain.signing import Recomputed
from custody.hsm.base import Hsm
from custody.store.base import DaemonKey, Store, StoredPolicy, StoreTransaction

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A request's payload as this process parsed it, carried along the path to the HSM."""

    recomputed: Recomputed
    parsed: ParsedPayload | None  # None for governance requests and payloads that no longer parse
    # The policy's decision on ``recomputed.facts`` per policy version, so that it is asked once per version.
    _decisions: dict[int, Decision] = field(default_factory=dict)

    def decision_under(self, policy: Policy) -> Decision | None:
        """What ``policy`` decides about the recomputed facts, velocity left out: the usage counted now
        includes requests that came after this one, which were not there when it was decided."""
        facts = self.recomputed.facts
        if facts is None:
            return None
        decision = self._decisions.get(policy.version)
        if decision is None:
            decision = policy.evaluate(facts, _no_earlier_usage).decision
            self._decisions[policy.version] = decision
        return decision


def prepared_at_submission(
    parsed: ParsedPayload, payload_hash: bytes, facts: RequestFacts, decision: Decision
) -> Prepared:
    """The submission's own parse and decision, for a request the policy signs at once."""
    return Prepared(
        recomputed=Recomputed(payload_hash=payload_hash, digest=parsed.digest, facts=facts),
        parsed=parsed,
        _decisions={decision.policy_version: decision},
    )


def prepare(request: SigningRequest, now: datetime) -> Prepared:
    """Hash, digest and facts as the daemon computes them at ``now`` from the stored payload."""
    payload_hash = hashlib.sha256(request.payload).digest()
    if request.kind.is_governance:
        return Prepared(Recomputed(payload_hash=payload_hash, digest=payload_hash, facts=None), parsed=None)
    try:
        parsed = parse_payload(request.kind, request.payload)
    except CustodyError:
        # A stored payload that no longer parses cannot match anything that was approved.
        return Prepared(Recomputed(payload_hash=payload_hash, digest=b"", facts=None), parsed=None)
    facts = request_facts(request.key_label, parsed, replacement=request.replaces is not None, now=now)
    return Prepared(Recomputed(payload_hash=payload_hash, digest=parsed.digest, facts=facts), parsed=parsed)


def request_facts(key_label: str, parsed: ParsedPayload, *, replacement: bool, now: datetime) -> RequestFacts:
    """What the policy looks at, taken from the payload as the daemon parsed it, at ``now`` (permit horizons
    are measured from it)."""
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
        intents=payload_intents(parsed),
        now=int(now.timestamp()),
    )


def _no_earlier_usage(key_label: str, window_seconds: int) -> VelocityUsage:
    return VelocityUsage(count=0, total_value=0, token_amounts={})


# Verified (record, seal) pairs remembered per process. A pair that verified once verifies for as long as the
# seal key exists, so remembering it is safe; the bound keeps memory flat on a daemon that runs for months.
_VERIFIED_CACHE_SIZE = 100_000
# Records remembered by their exact bytes and seal, per subject, the most recently checked first: the active
# policy and the keys are checked before every signature and stay in it; recent requests pass through.
_EXACT_CACHE_SIZE = 256
SEAL_KEY_PURPOSE = "seal"


class Sealer:
    """Seals records with the HSM's HMAC key and checks their seals, at most one HSM call per distinct record.

    Computing a seal is one HMAC in the HSM (tens of microseconds on SoftHSM2, a round trip on a network HSM).
    Checking one is computing it again, so the daemon remembers every (record, seal) pair that verified, by a
    SHA-256 of both: reading an unchanged row again costs a hash and a dictionary lookup, and a row edited in
    the database misses the cache and fails in the HSM.
    """

    def __init__(self, hsm: Hsm, clock: Callable[[], datetime]) -> None:
        self._hsm = hsm
        self._clock = clock
        self._key_id: bytes | None = None
        self._opening = threading.Lock()
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._verified_lock = threading.Lock()
        # subject -> (sealed bytes, seal) that verified last. The sealed policy is some kilobytes, and hashing it
        # for the fingerprint cost more than the rest of the check: comparing the exact bytes and seal read now
        # with the pair that verified is a memory comparison. Any other bytes or seal for the subject are
        # checked as before.
        self._verified_exactly: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        # The anchor in the token of the database this seal key seals (custody/app/anchor.py).
        self.anchor = TokenAnchor(hsm, lambda: self._key_id)
        # What the audit log says is current, against which a row with a valid seal is checked too; the
        # composition root sets it (custody/app/freshness.py).
        self.current: CurrentState | None = None
        # The last seal that failed, for health: someone wrote the database without the seal key.
        self.last_mismatch: str | None = None
        # Why nothing may be signed at all (the whole audit log failed verification after start); None while
        # nothing holds signing.
        self.held: str | None = None
        # The last freeze the HSM did not enforce itself (custody's database still does), for health.
        self.signing_switch_problem: str | None = None

    @property
    def is_open(self) -> bool:
        return self._key_id is not None

    @property
    def key_id(self) -> bytes | None:
        return self._key_id

    def open(self, store: Store, audit: AuditUseCases) -> None:
        """Find the seal key by the CKA_ID stored for it and check the database against the token's anchor; or,
        on a database that names no seal key and a token that holds none, make it and seal the records written
        before (saying so in the log and the audit log).

        This runs under the database's write lock, so replicas starting together make one key.
        """
        with self._opening:
            if self._key_id is not None:
                return
            retired = self.anchor.retired()
            with store.transaction() as tx:
                stored = tx.daemon_key(SEAL_KEY_PURPOSE)
                if stored is not None:
                    key_id = bytes.fromhex(stored.key_id)
                    self._hsm.check_seal_key(key_id)
                    anchored = self.anchor.check(key_id, tx)
                    self._key_id = key_id
                    sealed = 0
                    try:
                        # What this start appends is sealed as the head, and a head seal vouches for every event
                        # before it: a head the database was given while no daemon ran must be refused before
                        # anything is appended after it, or this very start would launder it.
                        if not retired:
                            self._refuse_an_unsealed_head_past(anchored, tx)
                        appended = self._record_retired(tx, audit, retired)
                        resealed = self._seal_freeze_counts(tx)
                        if resealed:
                            appended = audit.record(
                                tx,
                                DAEMON_ACTOR,
                                AuditKind.SEALS_CREATED,
                                records=resealed,
                                key_id=key_id.hex(),
                                reason="key seals now bind each key's freeze count",
                            )
                        if appended is not None:
                            self.seal_audit_head(tx, appended)
                    except BaseException:
                        self._key_id = None
                        raise
                else:
                    self._refuse_token_state_the_database_does_not_name()
                    self._refuse_seals_without_their_key(tx)
                    appended = self._record_retired(tx, audit, retired)
                    key_id = self._hsm.generate_seal_key()
                    tx.insert_daemon_key(
                        DaemonKey(
                            purpose=SEAL_KEY_PURPOSE,
                            key_id=key_id.hex(),
                            public_key=None,
                            created_at=self._clock(),
                        )
                    )
                    self._key_id = key_id
                    try:
                        sealed = self._seal_existing(tx)
                        if sealed:
                            appended = audit.record(
                                tx, DAEMON_ACTOR, AuditKind.SEALS_CREATED, records=sealed, key_id=key_id.hex()
                            )
                        if appended is not None:
                            self.seal_audit_head(tx, appended)
                    except BaseException:
                        self._key_id = None
                        raise
            # Recorded in the audit log: the retired anchors have done their work.
            self.anchor.forget_retired([value for value, _ in retired])
            if stored is not None:
                return
            if sealed:
                log.warning(
                    "sealed %d records written before this version (keys, the active policy, requests waiting"
                    " or approved) with the new HSM seal key %s; they are trusted as they stood at this start",
                    sealed,
                    key_id.hex(),
                )
            else:
                log.info("made the HSM seal key %s", key_id.hex())

    def _refuse_an_unsealed_head_past(self, anchored: Anchor | None, reader: StoreTransaction) -> None:
        """Stop the start when the log's head lies past the event the token vouches for and carries no seal of a
        daemon: events appended while no daemon ran, however well chained, are not taken in. A token whose anchor
        an older version wrote (before heads were sealed) leaves the head trusted as it verifies, as that version
        did; the start then marks the anchor, so the next one is checked."""
        head = reader.audit_head()
        if (
            anchored is None
            or not anchored.heads_sealed
            or head is None
            or head.sequence <= anchored.sequence
        ):
            return
        if not self.audit_head_sealed(reader, head):
            raise ConfigurationError(
                f"the audit log's head, event {head.sequence} ({head.kind}), lies past the event the HSM token"
                f" vouches for ({anchored.sequence}) and carries no seal of the HSM seal key: it was appended in"
                " the database, not by custody; refusing to start. Restore the database from a backup"
                " (docs/operations.md)"
            )

    def _refuse_token_state_the_database_does_not_name(self) -> None:
        """A token that holds a seal key or an anchor while the database names no seal key means the record
        of the key was deleted (with the seals, perhaps) or this is not the database the token served: making a
        new key would seal whatever the database holds now, forged rows included, so the daemon stops."""
        state = token_state(self._hsm)
        if not state.empty:
            raise ConfigurationError(
                f"the HSM token holds custody's {state.describe()}, which the database does not name: the"
                " database's record of its seal key was deleted, or this is not the database that token served;"
                " custody will not seal it anew. Restore that database, or retire the token's state on purpose"
                " with `custody audit retire-token-state` (docs/operations.md)"
            )

    @staticmethod
    def _record_retired(
        tx: StoreTransaction, audit: AuditUseCases, retired: list[tuple[bytes, Anchor]]
    ) -> AuditEvent | None:
        """Say in the audit log which anchors an operator retired since the last start; the event appended."""
        if not retired:
            return None
        event = audit.record(
            tx,
            DAEMON_ACTOR,
            AuditKind.ANCHOR_RETIRED,
            anchors=[
                {
                    "seal_key_id": anchor.seal_key_id,
                    "sequence": anchor.sequence,
                    "hash": anchor.hash.hex(),
                }
                for _, anchor in retired
            ],
        )
        log.warning(
            "the HSM token's anchor was retired by an operator: %s",
            "; ".join(anchor.describe() for _, anchor in retired),
        )
        return event

    @staticmethod
    def _refuse_seals_without_their_key(tx: StoreTransaction) -> None:
        """Stored seals without the record of the key that made them mean that record was deleted: making a
        new key would seal whatever the database holds now, forged rows included, so the daemon stops."""
        subjects = [seals.key_subject(key.label) for key in tx.list_keys()]
        active = tx.active_policy()
        if active is not None:
            subjects.append(seals.policy_subject(active.version))
        if tx.seals(subjects):
            raise ConfigurationError(
                "the database holds seals but no record of the HSM seal key that made them; it was edited"
                " outside custody. Restore the database from a backup; custody will not seal it anew"
            )

    def seal(self, data: bytes) -> bytes:
        seal = self._hsm.seal(self._require_key(), data)
        self._remember(data, seal)
        return seal

    def verifies(self, data: bytes, seal: bytes | None) -> bool:
        if seal is None:
            return False
        fingerprint = _fingerprint(data, seal)
        with self._verified_lock:
            if fingerprint in self._verified:
                self._verified.move_to_end(fingerprint)
                return True
        if not self._hsm.verify_seal(self._require_key(), data, seal):
            return False
        self._remember(data, seal)
        return True

    def problem(self, reader: StoreTransaction, records: SealedRecords) -> str | None:
        """Which of ``records`` has no seal that verifies, or which row is no longer the latest the audit log
        knows of (an older sealed copy put back); None when every seal verifies and every row is current.

        Raises Unavailable while signing is held: the request is neither signed nor ended, and waits."""
        if self.held is not None:
            raise Unavailable(f"nothing is signed: {self.held}")
        stored = reader.seals(list(records.seals))
        bad = [
            subject
            for subject, data in records.seals.items()
            if not self._verifies_subject(subject, data, stored.get(subject))
        ]
        problem: str | None = None
        if bad:
            problem = "the seal of " + ", ".join(bad) + (" is missing or does not verify")
        elif self.current is not None:
            problem = self.current.problem(records.subjects)
        if problem is not None:
            self.last_mismatch = problem
        return problem

    def switch_signing(self, key: Key, *, allowed: bool) -> bool:
        """Switch signing with ``key`` on or off in the HSM; returns whether this call changed it.

        A freeze stands in the database whatever the HSM does, so a token that cannot switch signing off is
        logged and reported, and the freeze goes on. Switching it on (an unfreeze, or putting back a freeze
        that did not commit) raises when the HSM cannot: the change it belongs to does not happen."""
        try:
            return self._hsm.set_signing_allowed(bytes.fromhex(key.key_id), allowed)
        except CustodyError as exc:
            if allowed:
                raise
            self.signing_switch_problem = (
                f"signing with frozen key {key.label} is not switched off in the HSM: {exc.message}"
            )
            log.error("%s", self.signing_switch_problem)
            return False

    def switch_back(self, switched: list[tuple[Key, bool]]) -> None:
        """Undo the switches of a transaction that is rolling back, while it still holds the write lock (so no
        other freeze or unfreeze of the key lands in between), so the HSM agrees with the database again. One
        that fails is logged: a key left switched off signs nothing until it is frozen and unfrozen again, and
        one left switched on is still refused by the database's freeze."""
        for key, allowed in reversed(switched):
            try:
                self.switch_signing(key, allowed=not allowed)
            except Exception:  # One key that cannot be switched back must not keep the others as they are.
                log.exception("could not switch signing back for key %s after a rollback", key.label)

    def key_row_verifies(self, reader: StoreTransaction, key: Key) -> bool:
        """Whether ``key``, as read, carries the daemon's seal."""
        subject = seals.key_subject(key.label)
        return self._verifies_subject(subject, seals.sealed_key(key), reader.seals([subject]).get(subject))

    def seal_audit_head(self, tx: StoreTransaction, event: AuditEvent) -> None:
        """Seal ``event``, the last one ``tx`` appended, in ``tx``: one HMAC per write transaction authenticates
        every event it appended, and through the hash chain every event before them."""
        sealed = seals.sealed_audit_head(event.sequence, event.hash)
        # Not remembered as verified: this process never walks past its own heads, and a head per transaction
        # would push the seals read before every signature out of that cache.
        tx.put_seal(seals.audit_head_subject(event.sequence), self._hsm.seal(self._require_key(), sealed))

    def audit_head_sealed(self, reader: AuditReader, event: AuditEvent) -> bool:
        """Whether ``event`` is the last event of a write transaction of a daemon holding the seal key. A head
        without that seal was appended by someone else: reported for health and the log."""
        subject = seals.audit_head_subject(event.sequence)
        stored = reader.seals([subject]).get(subject)
        if self._verifies_subject(subject, seals.sealed_audit_head(event.sequence, event.hash), stored):
            return True
        self.last_mismatch = (
            f"audit event {event.sequence} ({event.kind}) was appended to the audit log without the seal of the"
            " HSM seal key"
        )
        log.error(
            "%s: nothing is taken in from it, appended after it or signed on its word", self.last_mismatch
        )
        return False

    def policy_problem(self, reader: StoreTransaction, version: int, document: str) -> str | None:
        """Why policy ``version`` (read as ``document``) may not be relied on: its seal is missing or does not
        verify, or a newer version was activated after it; None when it may. The check before an approver's
        verdict counts and before a governance request takes effect, so that a policy row a database writer
        inserted (naming approvers whose keys they hold) neither counts verdicts nor gets activated and sealed.

        Raises Unavailable while signing is held."""
        if self.held is not None:
            raise Unavailable(f"nothing is signed: {self.held}")
        subject = seals.policy_subject(version)
        stored = reader.seals([subject]).get(subject)
        problem: str | None = None
        if not self._verifies_subject(subject, _sealed_policy(version, document), stored):
            problem = f"the seal of {subject} is missing or does not verify"
        elif self.current is not None:
            problem = self.current.policy_problem(version)
        if problem is not None:
            self.last_mismatch = problem
        return problem

    def _verifies_subject(self, subject: str, data: bytes, seal: bytes | None) -> bool:
        if seal is None:
            return False
        with self._verified_lock:
            if self._verified_exactly.get(subject) == (data, seal):
                self._verified_exactly.move_to_end(subject)
                return True
        if not self.verifies(data, seal):
            return False
        with self._verified_lock:
            self._verified_exactly[subject] = (data, seal)
            self._verified_exactly.move_to_end(subject)
            while len(self._verified_exactly) > _EXACT_CACHE_SIZE:
                self._verified_exactly.popitem(last=False)
        return True

    def _require_key(self) -> bytes:
        if self._key_id is None:
            raise Unavailable("the HSM seal key is not open yet; the daemon opens it at start")
        return self._key_id

    def _remember(self, data: bytes, seal: bytes) -> None:
        with self._verified_lock:
            self._verified[_fingerprint(data, seal)] = None
            while len(self._verified) > _VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)

    def _seal_existing(self, tx: StoreTransaction) -> int:
        count = 0
        for key in tx.list_keys():
            tx.put_seal(seals.key_subject(key.label), self.seal(seals.sealed_key(key)))
            count += 1
        active = tx.active_policy()
        if active is not None:
            sealed = seals.sealed_policy(active.version, active.document)
            tx.put_seal(seals.policy_subject(active.version), self.seal(sealed))
            count += 1
        for state in (RequestState.PENDING_APPROVAL, RequestState.APPROVED):
            for request in tx.list_requests(state=state, limit=1000):
                count += self._seal_request(tx, request)
        return count

    def _seal_freeze_counts(self, tx: StoreTransaction) -> int:
        """Seal again, with its freeze count, each key whose seal a version before freeze counts were sealed
        made (and which verifies as such); returns how many. Such a row is trusted as it stands at this start,
        as rows from before seals were; the freshness check still compares it with the audit log."""
        keys = list(tx.list_keys())
        stored = tx.seals([seals.key_subject(key.label) for key in keys])
        count = 0
        for key in keys:
            subject = seals.key_subject(key.label)
            seal = stored.get(subject)
            if self._verifies_subject(subject, seals.sealed_key(key), seal):
                continue
            if seal is not None and self.verifies(seals.sealed_key_before_freeze_counts(key), seal):
                tx.put_seal(subject, self.seal(seals.sealed_key(key)))
                count += 1
        return count

    def _seal_request(self, tx: StoreTransaction, request: SigningRequest) -> int:
        tx.put_seal(seals.decision_subject(request.request_id), self.seal(seals.sealed_decision(request)))
        if request.state is not RequestState.APPROVED:
            return 1
        approval = seals.sealed_approval(request.request_id, request.not_before)
        tx.put_seal(seals.approval_subject(request.request_id), self.seal(approval))
        return 2


@dataclass(frozen=True)
class SealedRecords:
    """What must hold before a request is signed: each record's seal (subject -> sealed bytes), and the rows as
    they read now, which must still be the latest the audit log knows of (custody/app/freshness.py)."""

    seals: dict[str, bytes]
    subjects: Subjects


def sealed_records(request: SigningRequest, key: Key | None, policy: Policy, document: str) -> SealedRecords:
    """What must carry a valid seal before ``request`` is signed: its decision, its move to APPROVED, its key
    and the active policy, by subject; and what must still be current."""
    records = {
        seals.decision_subject(request.request_id): seals.sealed_decision(request),
        seals.approval_subject(request.request_id): seals.sealed_approval(
            request.request_id, request.not_before
        ),
        seals.policy_subject(policy.version): _sealed_policy(policy.version, document),
    }
    if key is not None:
        records[seals.key_subject(key.label)] = seals.sealed_key(key)
    subjects = Subjects(
        request_id=request.request_id,
        key_label=key.label if key is not None else None,
        key_state=key.state if key is not None else None,
        policy_version=policy.version,
        key_freezes=key.freezes if key is not None else None,
    )
    return SealedRecords(records, subjects)


@functools.lru_cache(maxsize=8)
def _sealed_policy(version: int, document: str) -> bytes:
    """The sealed bytes of a policy version, encoded once: the document is the same string object on every
    request (PolicyUseCases keeps one per version), so the cache's lookup is an identity check, and encoding
    the whole document again cost a fifth of a millisecond per request."""
    return seals.sealed_policy(version, document)


def audit_public_key_once_open(audit: AuditUseCases) -> bytes | None:
    """The audit public key once the audit log is open; before that no checkpoint is checked against it."""
    try:
        return audit.public_key
    except ConfigurationError:
        return None


def _fingerprint(data: bytes, seal: bytes) -> bytes:
    return hashlib.sha256(len(data).to_bytes(8, "big") + data + seal).digest()


class SealingStore:
    """The store as the use cases see it: every write of a record the daemon relies on to sign stores its seal
    in the same transaction, so no call site can forget one, and every audit append first checks the stored
    head against the one this process remembers (custody/audit/head.py). Everything else is the store's own.

    ``audit`` gives the audit use cases, which are built on this store themselves."""

    def __init__(
        self, inner: Store, sealer: Sealer, audit: Callable[[], AuditUseCases], head: RememberedHead
    ) -> None:
        self._inner = inner
        self._sealer = sealer
        self._audit = audit
        self._head = head

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        # The seal key is opened before the first transaction that may need it, never inside one: opening
        # takes the write lock itself.
        if not self._sealer.is_open:
            self._sealer.open(self._inner, self._audit())
        current = self._sealer.current
        with ExitStack() as observing:
            with self._inner.transaction() as tx:
                sealing = SealingTransaction(tx, self._sealer, self._audit, self._head)
                try:
                    yield cast(StoreTransaction, sealing)
                    if sealing.appended is not None:
                        self._sealer.seal_audit_head(tx, sealing.appended)
                except BaseException:
                    # Nothing of it commits. A COMMIT that fails is not undone here: it may have landed (a
                    # connection lost during it), and a key left switched off is the safe side; the next start
                    # switches off every key the audit log says is frozen.
                    self._sealer.switch_back(sealing.switched)
                    raise
                if sealing.appended is not None and current is not None:
                    observing.enter_context(current.committing())
            # Committed: the last event it appended is now the head this process knows, and what it recorded is
            # the latest word on its keys, requests and policy.
            self._head.remember(sealing.appended)
            if current is not None and sealing.appended_all:
                current.observe(sealing.appended_all)

    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        with self.transaction() as tx:
            return tx.append_audit(draft)

    def insert_key(self, key: Key) -> None:
        with self.transaction() as tx:
            tx.insert_key(key)

    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        with self.transaction() as tx:
            return tx.set_key_state(label, expected, new, at)

    def insert_request(self, request: SigningRequest) -> None:
        with self.transaction() as tx:
            tx.insert_request(request)

    def transition_request(self, *args: Any, **kwargs: Any) -> SigningRequest:
        with self.transaction() as tx:
            return tx.transition_request(*args, **kwargs)

    def activate_policy(self, policy: StoredPolicy) -> None:
        with self.transaction() as tx:
            tx.activate_policy(policy)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SealingTransaction:
    """A store transaction that seals what it writes (see SealingStore)."""

    def __init__(
        self,
        inner: StoreTransaction,
        sealer: Sealer,
        audit: Callable[[], AuditUseCases],
        head: RememberedHead,
    ) -> None:
        self._inner = inner
        self._sealer = sealer
        self._audit = audit
        self._head = head
        self.appended: AuditEvent | None = None
        self.appended_all: list[AuditEvent] = []
        # Keys whose signing this transaction switched in the HSM, and to what: switched back if it rolls back.
        self.switched: list[tuple[Key, bool]] = []

    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        # Once per transaction: later appends in it chain on its own events, under the same write lock.
        if self.appended is None:
            self._head.check(self._inner, audit_public_key_once_open(self._audit()))
        self.appended = self._inner.append_audit(draft)
        self.appended_all.append(self.appended)
        return self.appended

    def insert_key(self, key: Key) -> None:
        self._inner.insert_key(key)
        self._seal_key(key)

    def set_key_state(self, label: str, expected: KeyState, new: KeyState, at: datetime) -> Key:
        before = self._inner.get_key(label)
        key = self._inner.set_key_state(label, expected, new, at)
        if before is not None and not self._sealer.key_row_verifies(self._inner, before):
            # A row the daemon did not write (another key id, say) is neither sealed again, which would vouch
            # for it, nor switched in the HSM, which would reach whatever key it names. A freeze of it still
            # stands in the database, and the row's missing seal stops every signature with it; an unfreeze is
            # refused.
            problem = f"the seal of key {label}'s row does not verify; it was written outside custody"
            self._sealer.last_mismatch = problem
            log.error("%s", problem)
            if new is KeyState.ACTIVE:
                raise FailedPrecondition(f"{problem}: it is not unfrozen")
            return key
        self._seal_key(key)
        allowed = new is KeyState.ACTIVE
        if self._sealer.switch_signing(key, allowed=allowed):
            self.switched.append((key, allowed))
        return key

    def insert_request(self, request: SigningRequest) -> None:
        self._inner.insert_request(request)
        if self._sealer.current is not None:
            self._sealer.current.born(request.request_id)
        self._inner.put_seal(
            seals.decision_subject(request.request_id), self._sealer.seal(seals.sealed_decision(request))
        )
        if request.state is RequestState.APPROVED:
            self._seal_approval(request)

    def transition_request(self, *args: Any, **kwargs: Any) -> SigningRequest:
        moved = self._inner.transition_request(*args, **kwargs)
        if moved.state is RequestState.APPROVED and not moved.kind.is_governance:
            self._seal_approval(moved)
        return moved

    def activate_policy(self, policy: StoredPolicy) -> None:
        self._inner.activate_policy(policy)
        sealed = seals.sealed_policy(policy.version, policy.document)
        self._inner.put_seal(seals.policy_subject(policy.version), self._sealer.seal(sealed))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _seal_key(self, key: Key) -> None:
        self._inner.put_seal(seals.key_subject(key.label), self._sealer.seal(seals.sealed_key(key)))

    def _seal_approval(self, request: SigningRequest) -> None:
        sealed = seals.sealed_approval(request.request_id, request.not_before)
        self._inner.put_seal(seals.approval_subject(request.request_id), self._sealer.seal(sealed))

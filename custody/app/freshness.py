"""Whether a sealed row is still the latest word on its record: a seal proves the daemon wrote a row once, not
that it is the row's current value.

Whoever can write the database can keep copies of sealed rows and put one back later, seal included: a key's
ACTIVE row from before its latest freeze, a request's APPROVED row after it was signed, cancelled or expired,
the previous policy version after a newer one was activated (by deleting the newer row). Every such change was
recorded in the audit log by the daemon, in the transaction that made it, so the daemon checks each row a
signature relies on against what the audit log says came last:

- a key whose latest ``key.created`` / ``key.frozen`` / ``key.unfrozen`` event froze it must not read ACTIVE,
  and its row must count at least the freeze that event names (the count is sealed with the row);
- a request with an event that ended it (signed, cancelled, expired, failed, rejected, denied) is never
  signed again;
- the policy in force must not be older than the latest ``policy.activated`` version.

``CurrentState`` keeps that word in memory so that the check costs microseconds: the key and policy events are
read once at start (they are rare), every event this process appends is observed after it commits, and every
event another writer (a replica) appended is observed when the remembered audit head walks past it; before each
check the head is compared with the database's (one indexed read), so a replica's freeze is never missed. A
request is known from its ``request.submitted`` event on; a request this process has not seen from its start
(one submitted before the daemon started, say) is read from the audit log once, by its id.

Each event read from the database has its own hash recomputed, but only a walk along the chain to a sealed
head pins it in place: an event below the head rewritten with its own hash recomputed breaks only the link of
the event after it. So events are read by kind only at start (before the whole log is verified in the
background) and by id only for a request this process has not seen; a row that disagrees with memory is
confirmed against memory once this process's commits are taken in, never against events read again. What stays
out of reach is the ending event of such an unseen request edited so that it no longer names the request: only
a full ``custody audit verify`` finds that (docs/design.md, "Security model").
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from custody.audit.events import AuditEvent, AuditKind, event_hash
from custody.audit.head import RememberedHead
from custody.domain.errors import Aborted, KeyFrozen, Unavailable
from custody.domain.keys import KeyState
from custody.store.base import StoreTransaction

# The events that end a request for good: after any of them, an APPROVED row of that request is an old copy.
ENDING_KINDS = frozenset(
    {
        AuditKind.REQUEST_SIGNED,
        AuditKind.REQUEST_CANCELLED,
        AuditKind.REQUEST_EXPIRED,
        AuditKind.REQUEST_FAILED,
        AuditKind.REQUEST_REJECTED,
        AuditKind.REQUEST_DENIED,
    }
)
# What each key event leaves the key as.
KEY_STATE_AFTER = {
    AuditKind.KEY_CREATED: KeyState.ACTIVE,
    AuditKind.KEY_FROZEN: KeyState.FROZEN,
    AuditKind.KEY_UNFROZEN: KeyState.ACTIVE,
}
# Requests whose whole history this process holds, at most this many (the oldest are forgotten and read from
# the audit log again if they are ever signed).
_KNOWN_REQUESTS = 100_000
_PAGE = 10_000
# How long a confirmation waits for this process's committed transactions to be taken in; they take
# microseconds, so this is reached only by a process stuck elsewhere, and memory's word then stands.
_SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class Subjects:
    """What a signature relies on, as the rows read now say: the request, its key's state, the policy."""

    request_id: str
    key_label: str | None
    key_state: KeyState | None
    policy_version: int
    # The key row's freeze count; None when no key is relied on.
    key_freezes: int | None = None


class CurrentState:
    def __init__(
        self, store: StoreTransaction, head: RememberedHead, public_key: Callable[[], bytes | None]
    ) -> None:
        # Read outside any write transaction (the store's own reads use a connection of their own), so that only
        # committed events are taken in: the transaction asking may hold events of its own that roll back.
        self._store = store
        self._head = head
        self._public_key = public_key
        self._lock = threading.Lock()
        # Write transactions of this process that appended events and have not yet been taken in: from just
        # before their commit to just after ``observe``.
        self._in_flight = 0
        self._settled = threading.Condition(self._lock)
        self._keys: dict[str, tuple[KeyState, AuditEvent]] = {}
        self._policy: tuple[int, AuditEvent] | None = None
        # Request id -> the event that ended it, or None while it has not ended; bounded, oldest first.
        self._requests: OrderedDict[str, AuditEvent | None] = OrderedDict()
        self._loaded = False

    def load(self) -> None:
        """At start: read every key and policy event, each checked against its own hash, up to the remembered
        audit head. Events past it are taken in only once a walk reached a sealed head beyond them, or when this
        process committed them: a database writer's appended event is not the audit log's word."""
        head = self._head.event
        for kind in (*KEY_STATE_AFTER, AuditKind.POLICY_ACTIVATED):
            events = _every_event(self._store, kind=kind)
            self.observe(event for event in events if head is None or event.sequence <= head.sequence)
        self._loaded = True

    def frozen_key_labels(self) -> list[str]:
        """The keys whose latest key event froze them."""
        with self._lock:
            return [label for label, (state, _) in self._keys.items() if state is KeyState.FROZEN]

    @contextmanager
    def committing(self) -> Iterator[None]:
        """Around the commit of a write transaction that appended events and the ``observe`` that follows it: a
        row that transaction wrote may be read by another thread before its events are taken in, and the
        confirmation of a stale-looking row waits for that instead of reading the log again."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._settled.notify_all()

    def born(self, request_id: str) -> None:
        """A request this process is inserting now: nothing can have ended it, so its first check before signing
        (in the very transaction that inserts it, when signing there) reads nothing from the log."""
        with self._lock:
            self._remember_request(request_id, None, only_if_unknown=True)

    def observe(self, events: Iterable[AuditEvent]) -> None:
        """Take in events this process appended (once committed) or read; any order."""
        with self._lock:
            for event in events:
                self._observe(event)

    def problem(self, subjects: Subjects) -> str | None:
        """Why the rows in ``subjects`` are not the latest the audit log knows of, or None when they are."""
        if not self._loaded:
            return None
        # Events other writers appended since this process last looked are taken in first.
        self._head.catch_up(self._store, self._public_key())
        with self._lock:
            stale = self._key_problem(subjects) or self._policy_problem(subjects.policy_version)
        if stale is not None:
            stale = self._confirmed(subjects)
            if stale is not None:
                return stale
        with self._lock:
            known = subjects.request_id in self._requests
            if known:
                self._requests.move_to_end(subjects.request_id)
        if not known:
            self._read_request(subjects.request_id)
        with self._lock:
            ended = self._requests.get(subjects.request_id)
        if ended is not None:
            return (
                f"request {subjects.request_id} ended with {ended.kind} (audit event {ended.sequence}), but its"
                " row says APPROVED again: the row was put back to an older sealed value"
            )
        return None

    def _confirmed(self, subjects: Subjects) -> str | None:
        """The key or policy problem, once it is confirmed. Memory may disagree with a row for a moment without
        anything put back: a row read just before another thread committed a freeze or an activation (the
        daemon's own checks deal with those), or a change this process committed but has not yet taken in.

        Each problem is confirmed on its own terms, and nothing read here ever lets a request be signed: a
        writer may show this read another row than the one the signature relies on. A key that now reads
        FROZEN is a wait (the request waits for the unfreeze), and a policy newer than the one the rows were
        judged under is a retry under that version; neither clears the other problem. What is left is asked
        of memory again once this process's commits are taken in and the log's head is caught up with, never
        of events read again by kind: an event rewritten in place below the head is not the audit log's word."""
        with self._lock:
            key_stale = self._key_problem(subjects) is not None
            policy_stale = self._policy_problem(subjects.policy_version) is not None
        if key_stale and subjects.key_label is not None:
            key = self._store.get_key(subjects.key_label)
            if key is not None and key.state is KeyState.FROZEN:
                raise KeyFrozen(
                    f"key {subjects.key_label} is frozen and signs nothing until it is unfrozen; the request"
                    " waits for the unfreeze"
                )
        if policy_stale and not key_stale:
            self._retry_if_newer_policy(subjects.policy_version)
        self._settle()
        with self._lock:
            return self._key_problem(subjects) or self._policy_problem(subjects.policy_version)

    def _settle(self) -> None:
        """Wait until this process's committed transactions are taken in, then take in other writers' events."""
        with self._lock:
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=_SETTLE_SECONDS)
        self._head.catch_up(self._store, self._public_key())

    def policy_problem(self, in_force: int) -> str | None:
        """Why policy version ``in_force`` is not the latest the audit log knows of, or None when it is: the
        check before a verdict counts or a governance request takes effect, which rely on the policy alone."""
        if not self._loaded:
            return None
        self._head.catch_up(self._store, self._public_key())
        with self._lock:
            stale = self._policy_problem(in_force)
        if stale is None:
            return None
        self._retry_if_newer_policy(in_force)
        self._settle()
        with self._lock:
            return self._policy_problem(in_force)

    def _retry_if_newer_policy(self, in_force: int) -> None:
        active = self._store.active_policy()
        if active is not None and active.version > in_force:
            raise Aborted(
                f"policy version {active.version} was activated after version {in_force}, which this was"
                " about to rely on; ask again under the newer one"
            )

    def _key_problem(self, subjects: Subjects) -> str | None:
        if subjects.key_label is None:
            return None
        latest = self._keys.get(subjects.key_label)
        if latest is None:
            return None
        if latest[0] is KeyState.FROZEN and subjects.key_state is not KeyState.FROZEN:
            return (
                f"key {subjects.key_label} was frozen (audit event {latest[1].sequence}) and not unfrozen since,"
                f" but its row says {subjects.key_state.value if subjects.key_state else 'nothing'}: the row was"
                " put back to an older sealed value"
            )
        freeze = latest[1].details.get("freeze")
        if isinstance(freeze, int) and subjects.key_freezes is not None and subjects.key_freezes < freeze:
            return (
                f"key {subjects.key_label}'s row counts {subjects.key_freezes} freezes, but freeze {freeze} was"
                f" recorded (audit event {latest[1].sequence}): the row was put back to an older sealed value"
            )
        return None

    def _policy_problem(self, in_force: int) -> str | None:
        if self._policy is None or in_force >= self._policy[0]:
            return None
        version, event = self._policy
        return (
            f"policy version {in_force} is in force, but version {version} was activated after it"
            f" (audit event {event.sequence}): the newer version's row was removed"
        )

    def _read_request(self, request_id: str) -> None:
        events = _every_event(self._store, request_id=request_id)
        with self._lock:
            self._remember_request(request_id, None, only_if_unknown=True)
            for event in events:
                self._observe(event)

    def _observe(self, event: AuditEvent) -> None:
        kind = event.kind
        if kind in KEY_STATE_AFTER:
            label = event.details.get("key")
            if isinstance(label, str):
                current = self._keys.get(label)
                if current is None or current[1].sequence < event.sequence:
                    self._keys[label] = (KEY_STATE_AFTER[AuditKind(kind)], event)
        elif kind == AuditKind.POLICY_ACTIVATED:
            version = event.details.get("version")
            if isinstance(version, int) and (self._policy is None or self._policy[0] < version):
                self._policy = (version, event)
        elif event.request_id is not None:
            if kind == AuditKind.REQUEST_SUBMITTED:
                self._remember_request(event.request_id, None, only_if_unknown=True)
            elif kind in ENDING_KINDS:
                self._remember_request(event.request_id, event, only_if_unknown=False)

    def _remember_request(self, request_id: str, ended: AuditEvent | None, *, only_if_unknown: bool) -> None:
        # A request that ended stays ended; one already known keeps its history.
        if request_id in self._requests and (only_if_unknown or self._requests[request_id] is not None):
            return
        self._requests[request_id] = ended
        self._requests.move_to_end(request_id)
        while len(self._requests) > _KNOWN_REQUESTS:
            self._requests.popitem(last=False)


def _every_event(
    reader: StoreTransaction, *, kind: str | None = None, request_id: str | None = None
) -> list[AuditEvent]:
    """Every event of ``kind`` or of ``request_id``, page by page, each checked against its own hash."""
    events: list[AuditEvent] = []
    after = 0
    while True:
        page = reader.list_audit_events(kind=kind, request_id=request_id, after_sequence=after, limit=_PAGE)
        events.extend(_checked(page))
        if len(page) < _PAGE:
            return events
        after = page[-1].sequence


def _checked(events: Sequence[AuditEvent]) -> Sequence[AuditEvent]:
    """``events`` if each one matches its own stored hash; an event edited in place without it is not trusted."""
    for event in events:
        if event_hash(event.sequence, event, event.previous_hash) != event.hash:
            raise Unavailable(
                f"audit event {event.sequence} does not match its hash: the audit log was edited in the database;"
                " nothing is signed on its word"
            )
    return events

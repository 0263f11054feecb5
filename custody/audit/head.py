"""The audit log's head as this process last saw it, kept in memory, so that a rewrite of the events after the
last checkpoint is caught before the daemon appends to them or signs a checkpoint over them.

Whoever can write the database can rewrite every event after the last checkpoint and recompute their hashes:
the chain then verifies, and the daemon's next checkpoint would sign the forgery with the HSM's audit key. The
daemon therefore remembers the last event it appended or verified. Before each append (a checkpoint is an
append) it reads the stored head under the write lock: the same event means nothing moved; a head further on
means other writers appended (replicas sharing a PostgreSQL database do), and it is accepted only when the
stored events continue the chain from the remembered one, which must still be there unchanged; anything else
refuses the append with Unavailable, so the change it belonged to does not happen either (fail closed).

Continuing the chain is not enough on its own: a database writer can append an event whose hash links to the
head (a forged ``key.unfrozen``, say). Every daemon therefore seals, in each write transaction that appends
events, the last event it appended with the HSM seal key (custody/domain/seals.py ``sealed_audit_head``). A walk
is accepted only when it ends at an event whose seal verifies; the events between the remembered one and it are
bound by the chain. Nothing walked is taken in (``on_walked``) before that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from custody.audit.chain import verify_events
from custody.audit.events import AuditEvent
from custody.domain.errors import Unavailable

# Events read per statement while walking from the remembered event to the stored head.
_PAGE = 10_000


class AuditReader(Protocol):
    """What the check reads: a store transaction holding the write lock has both."""

    def audit_head(self) -> AuditEvent | None: ...

    def list_audit_events(self, *, after_sequence: int = 0, limit: int = 1000) -> Sequence[AuditEvent]: ...

    def seals(self, subjects: Sequence[str]) -> dict[str, bytes]: ...


class RememberedHead:
    def __init__(self) -> None:
        self._event: AuditEvent | None = None
        self._lock = threading.Lock()
        # Told of the events other writers appended, once the check walked past them to a sealed head.
        self.on_walked: Callable[[Sequence[AuditEvent]], None] | None = None
        # Whether an event carries the seal of a daemon holding the HSM seal key, read through the reader given;
        # None (no seal key yet) accepts every head that continues the chain.
        self.head_sealed: Callable[[AuditReader, AuditEvent], bool] | None = None
        # Told of the remembered event when the stored log lost or changed it: the composition root anchors it
        # in the HSM token at once, so that a restart cannot take the shortened log for the whole one.
        self.on_lost: Callable[[AuditEvent], None] | None = None

    @property
    def event(self) -> AuditEvent | None:
        return self._event

    def remember(self, event: AuditEvent | None) -> None:
        """Remember ``event`` unless a later one is remembered: transactions of several threads may report
        their commits out of order."""
        if event is None:
            return
        with self._lock:
            if self._event is None or event.sequence > self._event.sequence:
                self._event = event

    def check(self, reader: AuditReader, public_key: bytes | None) -> None:
        """Raise Unavailable unless the stored head is the remembered event or continues the chain from it;
        accept and remember a head that does. Run under the write lock, before an append."""
        known = self._event
        if known is None:
            return
        head = reader.audit_head()
        if head is not None and (head.sequence, head.hash) == (known.sequence, known.hash):
            return
        if head is None or head.sequence < known.sequence:
            stored = head.sequence if head is not None else 0
            self._lost(known)
            raise Unavailable(
                f"the audit log's head went back from event {known.sequence} to {stored} under this daemon;"
                " it will not append to a log that lost events"
            )
        self._walk(reader, known, head, public_key)

    def catch_up(self, reader: AuditReader, public_key: bytes | None) -> None:
        """Take in the events other writers appended after the remembered head, outside the write lock (before
        a row is relied on). A reader whose view ends at or before the remembered head has nothing new: another
        thread may have remembered a later event since that view was taken, so this is never read as a loss."""
        known = self._event
        if known is None:
            return
        head = reader.audit_head()
        if head is None or head.sequence <= known.sequence:
            return
        self._walk(reader, known, head, public_key)

    def _lost(self, known: AuditEvent) -> None:
        if self.on_lost is not None:
            self.on_lost(known)

    def _walk(
        self, reader: AuditReader, known: AuditEvent, head: AuditEvent, public_key: bytes | None
    ) -> None:
        """Check that the remembered event is still there unchanged and that the stored events continue the chain
        from it up to ``head``; remember the head reached."""
        events = list(reader.list_audit_events(after_sequence=known.sequence - 1, limit=1))
        if not events or events[0].hash != known.hash or events[0].sequence != known.sequence:
            self._lost(known)
            raise Unavailable(
                f"audit event {known.sequence}, which this daemon appended or verified, was changed in the"
                " database; it will not append to or sign a checkpoint over a rewritten log"
            )
        if self.head_sealed is not None and not self.head_sealed(reader, head):
            raise Unavailable(
                f"audit event {head.sequence}, the head of the audit log, carries no seal of the HSM seal key: it"
                " was not written by a custody daemon; nothing is taken in from it, appended after it or signed"
                " on its word"
            )
        previous = known
        walked: list[AuditEvent] = []
        while previous.sequence < head.sequence:
            # Events appended after ``head`` was read are left for the next walk, which checks their own seal.
            page = [
                event
                for event in reader.list_audit_events(after_sequence=previous.sequence, limit=_PAGE)
                if event.sequence <= head.sequence
            ]
            if not page:
                break
            outcome = verify_events(page, public_key=public_key, start_after=previous)
            if not outcome.ok or outcome.last_event is None:
                raise Unavailable(
                    f"the audit events appended after event {known.sequence} do not verify"
                    f" ({outcome.problem}); this daemon will not append to them"
                )
            walked.extend(page)
            previous = outcome.last_event
        if (previous.sequence, previous.hash) != (head.sequence, head.hash):
            raise Unavailable(
                f"the audit events after event {known.sequence} do not lead to the sealed head {head.sequence};"
                " this daemon will not append to them"
            )
        if self.on_walked is not None and walked:
            self.on_walked(walked)
        self.remember(previous)

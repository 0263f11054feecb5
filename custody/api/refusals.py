"""Refused calls in the audit log, aggregated per peer, so that refusals cannot flood the log.

Every call the transport refuses (no configured identity, or a role the caller lacks) is counted at once in
``custody_refusals_total{kind}``. The audit log gets at most one event per peer and kind per window (a
minute): the first refusal is recorded as it happens, and the refusals that follow within the window are
recorded together in one event when the window ends, carrying their number (``refusals``) and the last one's
reason, method and peer address. Each audit event is a write under the database's write lock, which every
signing request also needs; a certificate of the CA that nobody configured could otherwise write hundreds of
events a second and slow every signature down.

A peer is the subject of the certificate it presented (for a caller without the role, the principal's name),
which only the CA hands out, so their number is small; the windows kept are bounded all the same, and refusals
past that bound share one window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from custody.app.custody import Custody
from custody.audit.events import AuditKind
from custody.domain.errors import CustodyError, PermissionDenied, Unauthenticated
from custody.domain.principals import Principal
from custody.observability.metrics import REFUSALS

log = logging.getLogger(__name__)

REFUSAL_WINDOW_SECONDS = 60.0
# How often the windows that ended are looked at, to record the refusals they gathered.
FLUSH_INTERVAL_SECONDS = 1.0
MAX_WINDOWS = 4096
# The peer that refusals share once MAX_WINDOWS peers have open windows.
OTHER_PEERS = "(other peers)"


@dataclass(frozen=True)
class Refusal:
    actor: str  # the principal, or "unauthenticated"
    kind: AuditKind
    error: CustodyError
    method: str
    peer: str  # the peer's network address, as gRPC names it


@dataclass
class _Window:
    ends_at: float  # monotonic seconds
    waiting: int = 0  # refusals since the last event, not recorded yet
    last: Refusal | None = None


class RefusalRecorder:
    def __init__(
        self,
        custody: Callable[[], Custody],
        *,
        window_seconds: float = REFUSAL_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._custody = custody
        self._window_seconds = window_seconds
        self._clock = clock
        self._windows: dict[tuple[AuditKind, str], _Window] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refusal-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic recording and record every refusal still waiting, whatever its window."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.record_waiting(everything=True)

    def refused_call(
        self, error: Exception, caller: Principal | None, method: str, presented_subject: str, peer: str
    ) -> None:
        """Record ``error`` when it is an authentication failure or a permission denial (other refusals are the
        use cases' to record). ``presented_subject`` is what the caller presented (a certificate subject, or a
        description of the credential), which stays the same whatever identity it claims."""
        if not isinstance(error, (Unauthenticated, PermissionDenied)):
            return
        kind = AuditKind.AUTH_REFUSED if isinstance(error, Unauthenticated) else AuditKind.PERMISSION_DENIED
        actor = caller.name if caller is not None else "unauthenticated"
        # A caller without the role is a configured principal; anyone else is known by what they presented.
        peer_identity = caller.name if caller is not None else presented_subject
        self.refused(peer_identity, Refusal(actor=actor, kind=kind, error=error, method=method, peer=peer))

    def refused(self, peer_identity: str, refusal: Refusal) -> None:
        """Count ``refusal`` and record it now, or with the next event of its window."""
        REFUSALS.labels(kind=refusal.kind.value).inc()
        now = self._clock()
        with self._lock:
            key = self._key_for(refusal.kind, peer_identity, now)
            window = self._windows.get(key)
            if window is not None and now < window.ends_at:
                window.waiting += 1
                window.last = refusal
                return
            # A window that ended before its refusals were recorded hands them to this event.
            count = 1 + (window.waiting if window is not None else 0)
            self._windows[key] = _Window(ends_at=now + self._window_seconds)
        self._record(refusal, count)

    def record_waiting(self, *, everything: bool = False) -> None:
        """Record the refusals of each window that ended (or of every window), one event per window, and
        forget the windows that ended with nothing waiting."""
        now = self._clock()
        due: list[tuple[Refusal, int]] = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if not everything and now < window.ends_at:
                    continue
                if window.waiting and window.last is not None:
                    due.append((window.last, window.waiting))
                    # The event just made opens a new window: at most one event per window, however long
                    # the refusals go on.
                    self._windows[key] = _Window(ends_at=now + self._window_seconds)
                else:
                    del self._windows[key]
        for refusal, count in due:
            self._record(refusal, count)

    def _key_for(self, kind: AuditKind, peer_identity: str, now: float) -> tuple[AuditKind, str]:
        key = (kind, peer_identity)
        if key in self._windows or len(self._windows) < MAX_WINDOWS:
            return key
        for known, window in list(self._windows.items()):
            if window.ends_at <= now and not window.waiting:
                del self._windows[known]
        return key if len(self._windows) < MAX_WINDOWS else (kind, OTHER_PEERS)

    def _record(self, refusal: Refusal, count: int) -> None:
        try:
            custody = self._custody()
        except CustodyError as exc:
            # Before the daemon has its HSM there is no audit log to write to; the refusal still stands.
            log.warning(
                "could not record %d refused call(s) by %s in the audit log: %s",
                count,
                refusal.actor,
                exc.message,
            )
            return
        custody.audit.record_refusal(
            refusal.actor,
            refusal.kind,
            refusal.error,
            method=refusal.method,
            peer=refusal.peer,
            refusals=count,
        )

    def _run(self) -> None:
        while not self._stopped.wait(FLUSH_INTERVAL_SECONDS):
            try:
                self.record_waiting()
            except Exception:  # The recorder must outlive any one failed round.
                log.exception("recording refused calls failed")

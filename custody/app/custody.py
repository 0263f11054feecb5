"""The application as the transport layers see it: every use case, built once by the composition root."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from custody.app.approvals import ApprovalUseCases
from custody.app.audit import DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_INTERVAL, AuditUseCases
from custody.app.freshness import CurrentState
from custody.app.integrity import Sealer, SealingStore, audit_public_key_once_open
from custody.app.keys import KeyUseCases
from custody.app.policy import PolicyUseCases
from custody.app.signing import ChangeNotifier, SigningUseCases
from custody.audit.head import RememberedHead
from custody.domain.errors import CustodyError
from custody.domain.keys import KeyState
from custody.hsm.base import Hsm
from custody.store.base import Store

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Health:
    hsm_ok: bool
    store_ok: bool
    detail: str

    @property
    def serving(self) -> bool:
        return self.hsm_ok and self.store_ok


class Custody:
    def __init__(
        self,
        store: Store,
        hsm: Hsm,
        clock: Callable[[], datetime] = utc_now,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: timedelta = DEFAULT_CHECKPOINT_INTERVAL,
        *,
        sign_in_write_transaction: bool = False,
    ) -> None:
        self._store = store
        self._hsm = hsm
        notifier = ChangeNotifier()
        self.sealer = Sealer(hsm, clock)
        self.audit_head = RememberedHead()
        # What the audit log says is current: a row put back to an older sealed value is not signed.
        self.current_state = CurrentState(
            store, self.audit_head, lambda: audit_public_key_once_open(self.audit)
        )
        self.audit_head.on_walked = self.current_state.observe
        self.audit_head.head_sealed = self.sealer.audit_head_sealed
        self.sealer.current = self.current_state
        # Every use case writes through the sealing store: it stores the HSM seal of each record a signature
        # relies on in the transaction that writes it, and checks the audit log's head before each append.
        sealed = cast(Store, SealingStore(store, self.sealer, lambda: self.audit, self.audit_head))
        self.audit = AuditUseCases(
            sealed,
            hsm,
            clock,
            checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            anchor=self.sealer.anchor,
        )
        self.audit_head.on_lost = self.audit.anchor
        self.policy = PolicyUseCases(sealed, self.audit, clock, open_seals=lambda: self._at_start(store))
        self.keys = KeyUseCases(sealed, hsm, self.policy, self.audit, clock)
        self.signing = SigningUseCases(
            sealed,
            hsm=hsm,
            policies=self.policy,
            audit=self.audit,
            clock=clock,
            notifier=notifier,
            sealer=self.sealer,
            sign_in_write_transaction=sign_in_write_transaction,
        )
        self.approvals = ApprovalUseCases(
            sealed,
            policies=self.policy,
            signing=self.signing,
            audit=self.audit,
            clock=clock,
            notifier=notifier,
            sealer=self.sealer,
        )
        self._worker: BackgroundWorker | None = None

    def _at_start(self, store: Store) -> None:
        """Right after the audit log verified at start: open the seal key (which checks the database against the
        token's anchor), remember the head just verified, and anchor it, so that the token vouches for
        everything this start found even before the next checkpoint.

        What is remembered is the last event the verification reached, never a second read of the head: events
        appended after it (by a replica) are taken in only by the checked walk from it."""
        self.sealer.open(store, self.audit)
        self.audit_head.remember(self.audit.verified_head)
        self.audit_head.catch_up(store, audit_public_key_once_open(self.audit))
        self.current_state.load()
        self.audit.anchor(self.audit_head.event)
        self._switch_signing_off_for_frozen_keys(store)

    def _switch_signing_off_for_frozen_keys(self, store: Store) -> None:
        """Keys the audit log says are frozen sign nothing in the HSM either: freezes recorded before the HSM
        switched signing off, or whose switch was lost with a crash before the commit. Never the other way:
        what the database says is no reason to let a key sign."""
        for label in self.current_state.frozen_key_labels():
            # Read under the write lock, so an unfreeze another replica commits meanwhile is not undone, and
            # only a row the daemon sealed names the key object that is switched.
            with store.transaction() as tx:
                key = tx.get_key(label)
                if key is not None and key.state is KeyState.FROZEN and self.sealer.key_row_verifies(tx, key):
                    self.sealer.switch_signing(key, allowed=False)

    def health(self) -> Health:
        hsm_health = self._hsm.health()
        try:
            self._store.schema_version()
            store_ok, store_detail = True, ""
        except CustodyError as exc:
            store_ok, store_detail = False, exc.message
        seal_details = []
        if self.sealer.held is not None:
            seal_details.append(f"nothing is signed: {self.sealer.held}")
        elif self.sealer.last_mismatch is not None:
            # A seal that does not verify, or a sealed row put back to an older value: either way someone
            # changed the database outside custody.
            seal_details.append(f"the database was changed outside custody: {self.sealer.last_mismatch}")
        if self.sealer.signing_switch_problem is not None:
            seal_details.append(self.sealer.signing_switch_problem)
        seal_details.extend(self.keys.refused_by_token)
        detail = "; ".join(part for part in (hsm_health.detail, store_detail, *seal_details) if part)
        return Health(hsm_ok=hsm_health.ok, store_ok=store_ok, detail=detail)

    def start_background_work(self, interval_seconds: float) -> None:
        self._worker = BackgroundWorker(self.signing, self.audit, interval_seconds)
        self._worker.start()
        threading.Thread(
            target=self._verify_whole_log_at_start, name="audit-verification", daemon=True
        ).start()

    def verify_whole_log(self) -> None:
        """Verify every event of the audit log and hold all signing if it does not verify.

        A start verifies only the log's head, so that it stays quick whatever the log's size; an event further
        back edited in place (its hash left as it was) is found by a full verification only. The freshness check
        reads such events by request id or kind (custody/app/freshness.py), so the daemon verifies the whole log
        once after every start, in the background while it serves, and signs nothing from the moment that finds
        a problem until it is restarted on a repaired database.
        """
        verification = self.audit.verify_whole()
        if verification.ok:
            log.info("the whole audit log verified: %d events", verification.events_checked)
            return
        self.sealer.held = (
            f"the audit log does not verify at sequence {verification.first_bad_sequence}:"
            f" {verification.problem}; restart custody once the database is repaired or restored"
        )
        log.error("%s", self.sealer.held)

    def _verify_whole_log_at_start(self) -> None:
        try:
            self.verify_whole_log()
        except CustodyError as exc:
            log.warning("could not verify the whole audit log after start: %s", exc.message)
        except Exception:  # A failed verification run must not take the daemon down; it is reported.
            log.exception("could not verify the whole audit log after start")

    def close(self) -> None:
        """Stop the worker, sign a last checkpoint over the log's head, and release the HSM and the store."""
        if self._worker is not None:
            self._worker.stop()
        try:
            self.audit.checkpoint()
        except CustodyError as exc:
            log.error("could not write the shutdown checkpoint: %s", exc.message)
            # The token still vouches for the last event this process appended or verified: a log that lost it
            # (the reason the checkpoint may have been refused) must not look whole to the next start.
            self.audit.anchor(self.audit_head.event)
        self._hsm.close()
        self._store.close()


class BackgroundWorker:
    """Expires overdue requests and signs time-locked ones when due, on every replica at once.

    Running everywhere is safe: expiry is a conditional update and signing needs the claim, so of several
    workers exactly one acts on each request. After a restart the worker finds whatever came due meanwhile.
    """

    def __init__(self, signing: SigningUseCases, audit: AuditUseCases, interval_seconds: float) -> None:
        self._signing = signing
        self._audit = audit
        self._interval = interval_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)

    def run_once(self) -> None:
        self._signing.expire_overdue()
        self._signing.sign_due()
        self._audit.checkpoint_if_due()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.run_once()
            except CustodyError as exc:
                log.warning("background work failed, will retry: %s", exc.message)
            except Exception:  # The worker must outlive any one failed round.
                log.exception("background work failed, will retry")

"""The daemon's state in the HSM token, outside the database: the anchor of its audit log and its seal keys.

``TokenAnchor`` reads and moves the anchor (custody/audit/anchor.py says what it holds and why). The anchor is
moved forward only: a new object is written before the older ones of the same seal key are removed, so a crash
in between leaves two and the newer counts, and replicas sharing a token never move it back.

``token_state`` and ``retire_token_state`` are the deliberate way out for an operator who really lost the
database, or restored an older copy of it on purpose: the daemon refuses to start on a database the token
contradicts, and only someone who holds the HSM PIN can retire the token's state, naming each seal key it
retires. Retired anchors are kept under another label until the next start records them in the audit log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

from custody.audit.anchor import (
    ANCHOR_LABEL,
    RETIRED_ANCHOR_LABEL,
    Anchor,
    AnchorMismatch,
    AuditReader,
    anchor_mismatch,
    latest_for,
)
from custody.audit.events import AuditEvent
from custody.domain.errors import ConfigurationError, InvalidInput
from custody.hsm.base import Hsm

log = logging.getLogger(__name__)


class TokenAnchor:
    """The anchor of the database whose seal key ``seal_key_id()`` names (None until the seal key is open)."""

    def __init__(self, hsm: Hsm, seal_key_id: Callable[[], bytes | None]) -> None:
        self._hsm = hsm
        self._seal_key_id = seal_key_id
        self._moving = threading.Lock()

    def anchors(self, label: str = ANCHOR_LABEL) -> list[tuple[bytes, Anchor]]:
        """Every anchor in the token as (stored value, anchor); an object custody cannot read stops the start."""
        found = []
        for value in self._hsm.read_data_objects(label):
            try:
                found.append((value, Anchor.decode(value)))
            except ValueError as exc:
                raise ConfigurationError(
                    f"the HSM token holds a {label!r} object that is not an anchor custody wrote ({exc});"
                    " custody will not guess what it vouched for"
                ) from None
        return found

    def latest(self, seal_key_id: bytes) -> Anchor | None:
        return latest_for((anchor for _, anchor in self.anchors()), seal_key_id)

    def check(self, seal_key_id: bytes, reader: AuditReader) -> Anchor | None:
        """Raise ConfigurationError when the database's audit log does not hold the anchored event: it was
        restored to an older copy, truncated or rewritten. Returns the anchor checked, if any."""
        anchor = self.latest(seal_key_id)
        if anchor is None:
            return None
        mismatch = anchor_mismatch(anchor, reader)
        if mismatch is not None:
            raise ConfigurationError(
                f"{mismatch.problem}; refusing to start (an operator who restored this copy on purpose retires"
                " the token's anchor with `custody audit retire-token-state`, see docs/operations.md)"
            )
        return anchor

    def mismatch(self, reader: AuditReader) -> AnchorMismatch | None:
        """How the database differs from the anchor now, for online verification; None when it does not."""
        seal_key_id = self._seal_key_id()
        if seal_key_id is None:
            return None
        anchor = self.latest(seal_key_id)
        return None if anchor is None else anchor_mismatch(anchor, reader)

    def advance(self, event: AuditEvent | None) -> None:
        """Vouch for ``event`` from now on, unless the token already vouches for it or a later one.

        An anchor an older version wrote for this very event (without ``heads_sealed``) is written again: until
        it says that heads are sealed, a start trusts an unsealed head past it, and a database writer who kept
        every later append from committing could keep it that way."""
        seal_key_id = self._seal_key_id()
        if event is None or seal_key_id is None:
            return
        with self._moving:
            mine = [
                (value, anchor) for value, anchor in self.anchors() if anchor.seal_key_id == seal_key_id.hex()
            ]
            if any(
                anchor.sequence > event.sequence
                or (anchor.sequence == event.sequence and anchor.heads_sealed)
                for _, anchor in mine
            ):
                return
            self._hsm.create_data_object(ANCHOR_LABEL, Anchor.of(seal_key_id, event).encode())
            if mine:
                self._hsm.destroy_data_objects(ANCHOR_LABEL, [value for value, _ in mine])

    def retired(self) -> list[tuple[bytes, Anchor]]:
        """Anchors an operator retired that no start has recorded yet."""
        return self.anchors(RETIRED_ANCHOR_LABEL)

    def forget_retired(self, values: Collection[bytes]) -> None:
        """Remove retired anchors once the audit log records them."""
        if values:
            self._hsm.destroy_data_objects(RETIRED_ANCHOR_LABEL, values)


@dataclass(frozen=True)
class TokenState:
    """What the token holds of custody's sealed state: its live seal keys and its anchors."""

    seal_key_ids: frozenset[str]  # hex; the live seal keys and those the anchors name
    anchors: tuple[Anchor, ...]

    @property
    def empty(self) -> bool:
        return not self.seal_key_ids

    def describe(self) -> str:
        parts = []
        for key_id in sorted(self.seal_key_ids):
            anchor = latest_for(self.anchors, bytes.fromhex(key_id))
            anchored = f" (anchored at audit event {anchor.sequence})" if anchor is not None else ""
            parts.append(f"seal key {key_id}{anchored}")
        return ", ".join(parts)


def token_state(hsm: Hsm) -> TokenState:
    anchors = tuple(anchor for _, anchor in TokenAnchor(hsm, lambda: None).anchors())
    live = {key_id.hex() for key_id in hsm.seal_key_ids()}
    return TokenState(
        seal_key_ids=frozenset(live | {anchor.seal_key_id for anchor in anchors}), anchors=anchors
    )


def retire_token_state(hsm: Hsm, confirmed_seal_key_ids: Collection[str]) -> TokenState:
    """Retire the token's seal keys and anchors, which the operator confirms by naming every seal key id; the
    next start records what was retired in the audit log. Returns what was retired.

    The seal keys are relabelled, not destroyed, so seals they made can still be checked by hand; the daemon
    finds a seal key the database names by its CKA_ID whatever its label, so retiring the state of a database
    restored on purpose keeps that database's seals valid and only lets its older audit log be anchored anew.
    """
    state = token_state(hsm)
    confirmed = {key_id.strip().lower() for key_id in confirmed_seal_key_ids}
    if confirmed != set(state.seal_key_ids):
        held = ", ".join(sorted(state.seal_key_ids)) or "none"
        raise InvalidInput(
            f"name every seal key the token holds to retire its state, exactly; it holds: {held}",
            field="seal_key_id",
        )
    anchor = TokenAnchor(hsm, lambda: None)
    live = anchor.anchors()
    for value, _ in live:
        hsm.create_data_object(RETIRED_ANCHOR_LABEL, value)
    if live:
        hsm.destroy_data_objects(ANCHOR_LABEL, [value for value, _ in live])
    hsm.retire_seal_keys()
    log.warning("retired the token's custody state: %s", state.describe() or "nothing")
    return state

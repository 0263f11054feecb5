"""A database writer who forges the audit log's history around a freeze gets no signature from the frozen key.

Each test freezes the treasury key while one of its requests waits for its last approval, then plays a
database writer with plain SQL (no HSM PIN, no approver key): the key's ACTIVE row from before the freeze is
put back with its seal, and the freeze is hidden from the log in another way each time. Either the running
daemon refuses to sign (the request ends FAILED with a seal.mismatch event), or the next start refuses the
database (ConfigurationError, exit code 2 for the daemon). The application is the real one in-process on a
SQLite file and a SoftHSM2 token.
"""

from __future__ import annotations

import contextlib

import pytest

from custody.app.anchor import ANCHOR_LABEL
from custody.audit.anchor import Anchor
from custody.domain import seals
from custody.domain.errors import ConfigurationError, CustodyError, Unavailable
from custody.domain.requests import RequestState, SigningRequest
from custody.hsm.pkcs11 import Pkcs11Hsm
from tests.softhsm_tokens import APP_PIN, APP_TOKEN_LABEL
from tests.tampering import append_chained_audit_event, rewrite_audit_event_in_place

from .conftest import DAVE, App, AppFactory


def _active_row(app: App) -> tuple[str, int, bytes]:
    """The treasury key's state, freeze count and seal as they stand: what the writer keeps to put back."""
    ((state, freezes),) = app.sql("SELECT state, freezes FROM keys WHERE label = 'treasury'")
    ((seal,),) = app.sql("SELECT seal FROM seals WHERE subject = ?", (seals.key_subject("treasury"),))
    return state, freezes, bytes(seal)


def _put_back(app: App, row: tuple[str, int, bytes]) -> None:
    state, freezes, seal = row
    app.sql("UPDATE keys SET state = ?, freezes = ? WHERE label = 'treasury'", (state, freezes))
    app.sql("UPDATE seals SET seal = ? WHERE subject = ?", (seal, seals.key_subject("treasury")))


def _waiting_for_bob(app: App) -> SigningRequest:
    request = app.pending()
    app.approve(request, "alice")
    return request


def test_an_event_after_a_freeze_rewritten_in_place_as_an_unfreeze_does_not_let_the_running_daemon_sign(
    app: App,
) -> None:
    request = _waiting_for_bob(app)
    active = _active_row(app)
    app.custody.verify_whole_log()  # the verification after start has run and passed
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    after_freeze = app.head() + 1
    app.submit_tx("ops")  # later events of another key, so the rewritten one is not the head
    assert app.head() > after_freeze

    # The unfreeze names the freeze count of the row put back, so the row and the forged event agree.
    rewrite_audit_event_in_place(app.sql, after_freeze, "key.unfrozen", key="treasury", freeze=active[1])
    _put_back(app, active)

    with contextlib.suppress(CustodyError):
        app.approve(request, "bob")
    ended = app.get(request.request_id)
    assert ended.state is RequestState.FAILED and ended.result is None
    assert "put back to an older sealed value" in (ended.error or "")
    assert [event.request_id for event in app.events(kind="seal.mismatch")] == [request.request_id]
    assert app.events(kind="request.signed", request_id=request.request_id) == []


def test_a_forged_unfreeze_behind_a_key_seal_of_the_older_format_stops_the_next_start(
    app: App, make_app: AppFactory
) -> None:
    """The start seals again the key seals a version before freeze counts made, and appends a seals.created
    event for it: that append must not vouch for a forged event before it."""
    key = app.custody.keys.get_key(DAVE, "treasury")
    older_format_seal = app.custody.sealer.seal(seals.sealed_key_before_freeze_counts(key))
    _waiting_for_bob(app)
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    make_app.stop(app)

    append_chained_audit_event(app.sql, "key.unfrozen", key="treasury", freeze=1)
    _put_back(app, ("ACTIVE", 1, older_format_seal))

    with pytest.raises(ConfigurationError, match="carries no seal of the HSM seal key"):
        make_app(database=app.database, clock=app.clock)


def test_the_first_start_after_an_older_version_marks_its_anchor_so_a_forged_head_stops_a_later_start(
    app: App, make_app: AppFactory
) -> None:
    """An older version's anchor does not say that heads are sealed, and a start trusts an unsealed head past
    such an anchor; the first start of this version writes the anchor again, so a writer who then keeps every
    append (the shutdown checkpoint included) from committing does not keep that trust alive."""
    _waiting_for_bob(app)
    active = _active_row(app)
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    make_app.stop(app)
    hsm = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    try:
        (value,) = hsm.read_data_objects(ANCHOR_LABEL)
        anchor = Anchor.decode(value)
        older = Anchor(anchor.seal_key_id, anchor.sequence, anchor.hash, heads_sealed=False)
        hsm.create_data_object(ANCHOR_LABEL, older.encode())
        hsm.destroy_data_objects(ANCHOR_LABEL, [value])
    finally:
        hsm.close()

    upgraded = make_app(database=app.database, clock=app.clock)
    seal_key_id = upgraded.custody.sealer.key_id
    assert seal_key_id is not None
    marked = upgraded.custody.sealer.anchor.latest(seal_key_id)
    assert marked is not None and marked.heads_sealed and marked.sequence == anchor.sequence

    append_chained_audit_event(app.sql, "key.unfrozen", key="treasury", freeze=active[1])
    _put_back(app, active)
    with contextlib.suppress(CustodyError):
        upgraded.run_worker()
    make_app.stop(upgraded)

    with pytest.raises(ConfigurationError, match="carries no seal of the HSM seal key"):
        make_app(database=app.database, clock=app.clock)


def test_a_freeze_deleted_before_any_checkpoint_covers_it_stops_the_next_start(
    app: App, make_app: AppFactory
) -> None:
    _waiting_for_bob(app)
    app.custody.audit.checkpoint()
    active = _active_row(app)
    before_freeze = app.head()
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")

    app.sql("DELETE FROM audit_events WHERE sequence > ?", (before_freeze,))
    _put_back(app, active)

    # The running daemon refuses to append to the shortened log and has the token vouch for the freeze at once.
    with pytest.raises(Unavailable, match="went back"):
        app.custody.keys.freeze(DAVE, "ops", "any append now fails")
    seal_key_id = app.custody.sealer.key_id
    assert seal_key_id is not None
    anchored = app.custody.sealer.anchor.latest(seal_key_id)
    assert anchored is not None and anchored.sequence > before_freeze
    make_app.stop(app)

    with pytest.raises(
        ConfigurationError, match="restored to an older copy or its newest events were deleted"
    ):
        make_app(database=app.database, clock=app.clock)


def test_a_freeze_whose_event_a_trigger_dropped_stops_the_next_start(app: App, make_app: AppFactory) -> None:
    """A writer with the right to create triggers has the database discard the freeze's event: the freeze
    commits without it, and the token vouches at shutdown for the event the daemon appended."""
    _waiting_for_bob(app)
    active = _active_row(app)
    app.sql(
        "CREATE TRIGGER drop_freezes BEFORE INSERT ON audit_events WHEN NEW.kind = 'key.frozen'"
        " BEGIN SELECT RAISE(IGNORE); END"
    )
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    assert app.events(kind="key.frozen") == []
    app.sql("DROP TRIGGER drop_freezes")
    _put_back(app, active)
    make_app.stop(app)

    with pytest.raises(
        ConfigurationError, match="restored to an older copy or its newest events were deleted"
    ):
        make_app(database=app.database, clock=app.clock)

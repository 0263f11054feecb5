"""An unfreeze lifts the one freeze it names: a new freeze cancels the waiting unfreeze, only one unfreeze waits per
key, and an unfreeze whose freeze is no longer the key's current one changes nothing, even when a database
writer revives it."""

from __future__ import annotations

import json

import pytest

from custody.domain.errors import FailedPrecondition, KeyFrozen
from custody.domain.keys import KeyState
from custody.domain.requests import RequestState

from .conftest import ADMIN, DAVE, App, assert_signed_by


def key_state(app: App, label: str) -> KeyState:
    return app.custody.keys.get_key(ADMIN, label).state


def test_an_unfreeze_names_the_freeze_it_lifts_and_lifts_it(app: App) -> None:
    frozen = app.custody.keys.freeze(DAVE, "ops", "drill")
    assert frozen.freezes == 1
    _, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "ops", "drill over")
    assert json.loads(unfreeze.payload) == {"action": "unfreeze", "key": "ops", "freeze": 1}
    assert unfreeze.summary["freeze"] == "1"

    app.approve(unfreeze, "alice")
    assert app.approve(unfreeze, "dave").state is RequestState.APPROVED
    assert key_state(app, "ops") is KeyState.ACTIVE
    [unfrozen] = app.events(kind="key.unfrozen")
    assert unfrozen.details == {"key": "ops", "freeze": 1}
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)


def test_only_one_unfreeze_waits_per_key(app: App) -> None:
    app.custody.keys.freeze(DAVE, "ops", "drill")
    _, first = app.custody.keys.request_unfreeze(ADMIN, "ops", "drill over")
    with pytest.raises(FailedPrecondition, match=f"unfreeze request {first.request_id} .* already waiting"):
        app.custody.keys.request_unfreeze(ADMIN, "ops", "drill over")
    # Once the waiting one is decided, another may be asked for.
    app.reject(first, "alice", "not yet")
    _, second = app.custody.keys.request_unfreeze(ADMIN, "ops", "now")
    assert second.state is RequestState.PENDING_APPROVAL


def test_a_new_freeze_cancels_the_waiting_unfreeze_and_one_more_approval_lifts_nothing(app: App) -> None:
    app.custody.keys.freeze(DAVE, "ops", "drill")
    _, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "ops", "drill over")
    app.approve(unfreeze, "alice")
    before = app.head()

    refrozen = app.custody.keys.freeze(DAVE, "ops", "backend compromised")
    assert (refrozen.state, refrozen.freezes) == (KeyState.FROZEN, 2)
    cancelled = app.get(unfreeze.request_id)
    assert cancelled.state is RequestState.CANCELLED
    assert cancelled.error is not None and "frozen again (freeze 2)" in cancelled.error
    assert [(kind, request_id) for kind, _, request_id in app.written_since(before)] == [
        ("key.frozen", None),
        ("request.cancelled", unfreeze.request_id),
    ]

    with pytest.raises(FailedPrecondition):
        app.approve(unfreeze, "dave")
    assert key_state(app, "ops") is KeyState.FROZEN
    with pytest.raises(KeyFrozen):
        app.submit_tx("ops")


def test_the_stale_unfreeze_attack_leaves_the_key_frozen(app: App) -> None:
    """Freeze, the quorum lifts it, freeze again ("backend compromised"): no unfreeze asked for before the
    second freeze can lift it, so a single approver has nothing left to complete."""
    app.custody.keys.freeze(DAVE, "treasury", "drill")
    _, lifted = app.custody.keys.request_unfreeze(ADMIN, "treasury", "drill over")
    with pytest.raises(FailedPrecondition, match="already waiting"):
        app.custody.keys.request_unfreeze(ADMIN, "treasury", "drill over")
    app.approve(lifted, "alice")
    app.approve(lifted, "dave")
    assert key_state(app, "treasury") is KeyState.ACTIVE

    app.custody.keys.freeze(DAVE, "treasury", "backend compromised")
    assert app.custody.keys.get_key(ADMIN, "treasury").freezes == 2
    assert key_state(app, "treasury") is KeyState.FROZEN


def test_an_unfreeze_of_an_earlier_freeze_revived_in_the_database_changes_nothing(app: App) -> None:
    app.custody.keys.freeze(DAVE, "ops", "drill")
    _, stale = app.custody.keys.request_unfreeze(ADMIN, "ops", "drill over")
    app.approve(stale, "alice")
    app.custody.keys.freeze(DAVE, "ops", "backend compromised")
    # Someone with write access to the database puts the cancelled unfreeze back in the queue.
    app.sql(
        "UPDATE requests SET state = 'PENDING_APPROVAL', error = NULL WHERE request_id = ?",
        (stale.request_id,),
    )

    ended = app.approve(stale, "dave")
    assert ended.state is RequestState.CANCELLED
    assert ended.error == (
        "this unfreeze lifts freeze 1 of key ops, but the key's current freeze is 2; nothing changed"
    )
    assert key_state(app, "ops") is KeyState.FROZEN
    assert app.events(kind="key.unfrozen") == []
    assert app.events(kind="request.cancelled")[-1].details == {"reason": ended.error}


def test_freezing_a_frozen_key_again_is_recorded_as_a_new_freeze(app: App) -> None:
    app.custody.keys.freeze(DAVE, "ops", "drill")
    again = app.custody.keys.freeze(DAVE, "ops", "backend compromised")
    assert (again.state, again.freezes) == (KeyState.FROZEN, 2)
    assert [
        (event.details["reason"], event.details["freeze"]) for event in app.events(kind="key.frozen")
    ] == [
        ("drill", 1),
        ("backend compromised", 2),
    ]
    _, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "ops", "both handled")
    assert json.loads(unfreeze.payload)["freeze"] == 2

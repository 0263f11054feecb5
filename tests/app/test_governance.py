"""Governance: policy changes by the admin quorum, time-locks (also across a restart), and the circuit breaker
(a security member freezes a key alone; unfreezing it takes the admin quorum)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from custody.domain.errors import InvalidInput, KeyFrozen, PermissionDenied
from custody.domain.keys import KeyState
from custody.domain.requests import PayloadKind, RequestState

from .conftest import ADMIN, ALICE, BACKEND, DAVE, App, AppFactory, assert_signed_by, assert_unsigned

TIMELOCK_SECONDS = 3600


def with_treasury_timelock(document: str) -> str:
    """The first time-lock in the development policy is the treasury transaction rule's."""
    assert "timelock_seconds = 0\n" in document
    return document.replace("timelock_seconds = 0\n", f"timelock_seconds = {TIMELOCK_SECONDS}\n", 1)


@pytest.fixture
def timelocked(make_app: AppFactory) -> App:
    """The development environment with a one-hour time-lock on treasury transactions."""
    return make_app(policy=with_treasury_timelock)


def test_a_policy_change_takes_effect_only_with_the_admin_quorum(app: App) -> None:
    waiting = app.pending()
    proposal = app.custody.policy.propose(ADMIN, app.next_policy(with_treasury_timelock))
    assert proposal.kind is PayloadKind.POLICY_CHANGE
    assert proposal.state is RequestState.PENDING_APPROVAL
    assert proposal.summary["proposed_version"] == "2"

    assert app.approve(proposal, "alice").state is RequestState.PENDING_APPROVAL
    assert app.custody.policy.get(ALICE).policy.version == 1
    # A treasury request approved meanwhile signs under version 1, without a time-lock.
    app.approve(waiting, "bob")
    assert_signed_by(app.approve(waiting, "carol"), app.keys["treasury"].address)

    superseded = app.pending()
    app.approve(superseded, "alice")
    activated = app.approve(proposal, "dave")
    assert activated.state is RequestState.APPROVED  # final for a policy change: it took effect
    active = app.custody.policy.get(ALICE)
    assert active.policy.version == 2
    assert f"timelock_seconds = {TIMELOCK_SECONDS}" in active.document
    # Requests still waiting under the old version are cancelled: their approvers judged other rules.
    cancelled = app.get(superseded.request_id)
    assert cancelled.state is RequestState.CANCELLED
    assert cancelled.error is not None and "superseded by policy version 2" in cancelled.error
    assert_unsigned(cancelled)
    assert [event.kind for event in app.events(kind="policy.activated")] == [
        "policy.activated",
        "policy.activated",
    ]


def test_a_proposal_must_be_the_next_version_and_only_admins_propose(app: App) -> None:
    with pytest.raises(InvalidInput, match="the next version is 2"):
        app.custody.policy.propose(ADMIN, app.custody.policy.get(ADMIN).document)
    with pytest.raises(PermissionDenied):
        app.custody.policy.propose(ALICE, app.next_policy())
    unknown_key = app.next_policy(
        lambda document: document.replace('keys = ["ops"]', 'keys = ["payroll"]', 1)
    )
    with pytest.raises(InvalidInput, match="payroll"):
        app.custody.policy.propose(ADMIN, unknown_key)


def test_a_timelocked_request_is_signed_by_the_worker_when_due(timelocked: App) -> None:
    app = timelocked
    request = app.pending()
    app.approve(request, "alice")
    approved = app.approve(request, "bob")
    assert approved.state is RequestState.APPROVED
    assert approved.not_before == app.clock.now + timedelta(seconds=TIMELOCK_SECONDS)
    assert_unsigned(approved)

    app.clock.advance(TIMELOCK_SECONDS - 1)
    app.run_worker()
    assert app.get(request.request_id).state is RequestState.APPROVED
    app.clock.advance(2)
    app.run_worker()
    assert_signed_by(app.get(request.request_id), app.keys["treasury"].address)


def test_a_timelocked_request_is_signed_after_a_restart(timelocked: App, make_app: AppFactory) -> None:
    request = timelocked.pending()
    timelocked.approve(request, "carol")
    assert timelocked.approve(request, "bob").state is RequestState.APPROVED
    timelocked.clock.advance(TIMELOCK_SECONDS + 1)
    restarted = make_app.restart(timelocked)
    restarted.run_worker()
    assert_signed_by(restarted.get(request.request_id), restarted.keys["treasury"].address)
    assert len(restarted.events(kind="request.signed", request_id=request.request_id)) == 1


def test_a_frozen_key_signs_nothing_until_the_admin_quorum_unfreezes_it(timelocked: App) -> None:
    app = timelocked
    waiting = app.pending()
    app.approve(waiting, "alice")

    with pytest.raises(PermissionDenied, match="security"):
        app.custody.keys.freeze(ALICE, "treasury", "not mine to freeze")
    frozen = app.custody.keys.freeze(DAVE, "treasury", "drill")
    assert frozen.state is KeyState.FROZEN
    with pytest.raises(KeyFrozen):
        app.submit_tx("treasury")

    # Approvals complete while frozen: the request waits, even once its time-lock has passed.
    assert app.approve(waiting, "bob").state is RequestState.APPROVED
    app.clock.advance(TIMELOCK_SECONDS + 1)
    app.run_worker()
    assert app.get(waiting.request_id).state is RequestState.APPROVED

    key, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "treasury", "drill over")
    assert key.state is KeyState.FROZEN
    assert unfreeze.kind is PayloadKind.KEY_UNFREEZE
    app.approve(unfreeze, "alice")
    assert app.custody.keys.get_key(ADMIN, "treasury").state is KeyState.FROZEN
    app.approve(unfreeze, "dave")
    assert app.custody.keys.get_key(ADMIN, "treasury").state is KeyState.ACTIVE
    app.run_worker()
    assert_signed_by(app.get(waiting.request_id), app.keys["treasury"].address)


def test_a_requester_cannot_ask_for_an_unfreeze(app: App) -> None:
    app.custody.keys.freeze(DAVE, "ops", "drill")
    with pytest.raises(PermissionDenied):
        app.custody.keys.request_unfreeze(BACKEND, "ops", "please")
    assert app.custody.keys.get_key(ADMIN, "ops").state is KeyState.FROZEN

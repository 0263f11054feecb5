"""The audit log as the use cases write it: every state change and refused verdict recorded with who did it,
checkpoints signed by the HSM's audit key, and an event edited in the database named by online verification.

Refusals the transport makes (a caller without the role, a certificate nobody configured) are recorded by
the gRPC layer; tests/e2e/test_audit_log.py checks those against a real daemon.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.audit.chain import checkpoint_statement
from custody.domain.errors import AlreadyExists, PermissionDenied
from custody.domain.requests import RequestState

from .conftest import ADMIN, ALICE, BACKEND, DAVE, DAY, App, AppFactory, assert_signed_by

CHECKPOINT_EVERY = 5


@dataclass
class Busy:
    app: App
    approved_request_id: str


@pytest.fixture
def busy(make_app: AppFactory) -> Busy:
    """A day's work on an application that checkpoints every few events: an auto-signed and an approved
    transaction, a denial, a duplicate verdict, a rejection."""
    app = make_app(checkpoint_every=CHECKPOINT_EVERY)
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    assert app.submit_tx("ops", value=5 * 10**18).state is RequestState.DENIED
    # The daemon's worker runs every few seconds and checkpoints whenever enough events have been written.
    app.run_worker()
    approved = app.pending()
    app.approve(approved, "alice")
    with pytest.raises(AlreadyExists):
        app.approve(approved, "alice")  # a duplicate: refused, and recorded as refused
    assert_signed_by(app.approve(approved, "bob"), app.keys["treasury"].address)
    app.run_worker()
    app.reject(app.pending(), "carol", "not this one")
    return Busy(app, approved.request_id)


def test_every_state_change_and_refused_verdict_is_recorded(busy: Busy) -> None:
    kinds = {event.kind for event in busy.app.events()}
    assert {
        "policy.activated",
        "key.created",
        "request.submitted",
        "request.signed",
        "request.denied",
        "approval.counted",
        "approval.refused",
        "request.approved",
        "request.rejected",
        "audit.checkpoint",
    } <= kinds
    trail = [(event.kind, event.actor) for event in busy.app.events(request_id=busy.approved_request_id)]
    assert trail == [
        ("request.submitted", "backend"),
        ("approval.counted", "alice"),
        ("approval.refused", "alice"),
        ("approval.counted", "bob"),
        ("request.approved", "custody"),
        ("request.signed", "custody"),
    ]
    (signed,) = busy.app.events(request_id=busy.approved_request_id, kind="request.signed")
    assert signed.details["key"] == "treasury"


def test_only_auditors_and_admins_read_the_log(busy: Busy) -> None:
    app = busy.app
    for caller in (BACKEND, ALICE):
        with pytest.raises(PermissionDenied):
            app.custody.audit.list_events(caller)
        with pytest.raises(PermissionDenied):
            app.custody.audit.verify_chain(caller)


def test_checkpoints_are_signed_by_the_hsm_audit_key(busy: Busy) -> None:
    app = busy.app
    verified = app.custody.audit.verify_chain(ADMIN)
    assert verified.ok, verified.problem
    logged = app.events()
    assert verified.events_checked == len(logged) == logged[-1].sequence
    assert verified.last_event == logged[-1]
    last_checkpoint = max(event.sequence for event in logged if event.kind == "audit.checkpoint")
    assert verified.unsigned_tail == logged[-1].sequence - last_checkpoint
    public_key = Ed25519PublicKey.from_public_bytes(app.custody.audit.public_key)
    checkpoints = app.events(kind="audit.checkpoint")
    assert len(checkpoints) >= 2, "the worker writes a checkpoint every few events"
    for checkpoint in checkpoints:
        covered = checkpoint.details["covers_sequence"]
        assert covered == checkpoint.sequence - 1
        statement = checkpoint_statement(covered, bytes.fromhex(checkpoint.details["covers_hash"]))
        public_key.verify(bytes.fromhex(checkpoint.details["signature"]), statement)


def test_an_edited_database_event_is_named_by_online_verification(busy: Busy) -> None:
    app = busy.app
    (target,) = app.events(kind="request.denied")
    original = app.sql("SELECT details FROM audit_events WHERE sequence = ?", (target.sequence,))[0][0]
    app.sql(
        "UPDATE audit_events SET details = ? WHERE sequence = ?",
        (original.replace("deny by default", "allowed"), target.sequence),
    )
    verified = app.custody.audit.verify_chain(ADMIN)
    assert not verified.ok
    assert verified.first_bad_sequence == target.sequence
    app.sql("UPDATE audit_events SET details = ? WHERE sequence = ?", (original, target.sequence))
    assert app.custody.audit.verify_chain(ADMIN).ok


def test_freezing_and_unfreezing_a_key_write_their_events(app: App) -> None:
    start = app.head()
    app.custody.keys.freeze(DAVE, "ops", "audit drill")
    assert app.written_since(start) == [("key.frozen", "dave", None)]
    (frozen,) = app.events(kind="key.frozen")
    assert dict(frozen.details) == {"key": "ops", "reason": "audit drill", "freeze": 1}

    start = app.head()
    _, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "ops", "drill over")
    app.approve(unfreeze, "alice")
    assert app.approve(unfreeze, "dave").state is RequestState.APPROVED
    request_id = unfreeze.request_id
    assert app.written_since(start) == [
        ("request.submitted", "admin", request_id),
        ("approval.counted", "alice", request_id),
        ("approval.counted", "dave", request_id),
        ("key.unfrozen", "custody", request_id),
        ("request.approved", "custody", request_id),
    ]
    (unfrozen,) = app.events(kind="key.unfrozen")
    assert dict(unfrozen.details) == {"key": "ops", "freeze": 1}


def test_a_policy_proposal_and_cancellations_write_their_events(app: App) -> None:
    document = app.next_policy()
    start = app.head()
    proposal = app.custody.policy.propose(ADMIN, document)
    assert app.written_since(start) == [("policy.proposed", "admin", proposal.request_id)]
    (proposed,) = app.events(kind="policy.proposed")
    assert dict(proposed.details) == {
        "proposed_version": 2,
        "document_sha256": "0x" + hashlib.sha256(document.encode()).hexdigest(),
    }

    # The admin withdraws the proposal; a requester cancels its own transaction.
    start = app.head()
    cancelled = app.custody.signing.cancel(ADMIN, proposal.request_id, "not now")
    assert cancelled.state is RequestState.CANCELLED
    assert app.written_since(start) == [("request.cancelled", "admin", proposal.request_id)]

    waiting = app.pending()
    start = app.head()
    with pytest.raises(PermissionDenied):
        app.custody.signing.cancel(ALICE, waiting.request_id, "not yours")
    app.custody.signing.cancel(BACKEND, waiting.request_id, "wrong amount")
    assert app.written_since(start) == [("request.cancelled", "backend", waiting.request_id)]
    reasons = {event.request_id: event.details["reason"] for event in app.events(kind="request.cancelled")}
    assert reasons == {proposal.request_id: "not now", waiting.request_id: "wrong amount"}


def test_a_request_that_outlives_its_lifetime_writes_its_expiry(app: App) -> None:
    waiting = app.pending()
    start = app.head()
    app.clock.advance(DAY.total_seconds() + 1)
    app.run_worker()
    assert app.get(waiting.request_id).state is RequestState.EXPIRED
    assert app.written_since(start) == [("request.expired", "custody", waiting.request_id)]
    (expired,) = app.events(kind="request.expired")
    assert dict(expired.details) == {}


def test_a_restart_writes_a_shutdown_checkpoint_over_the_head(app: App, make_app: AppFactory) -> None:
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    head_before = app.events()[-1]
    restarted = make_app.restart(app)
    last = restarted.events()[-1]
    assert last.kind == "audit.checkpoint"
    assert last.details["covers_sequence"] == head_before.sequence
    assert restarted.custody.audit.verify_chain(ADMIN).ok

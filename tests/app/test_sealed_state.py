"""A database writer gains no signing power: every record a signature relies on carries an HSM seal.

Each test edits the SQLite file behind the application's back with plain SQL, as someone who can write the
database but holds no HSM key could, and checks that nothing is signed, that the request ends FAILED naming the
seal, and that the mismatch is reported: a ``seal.mismatch`` audit event (which the daemon's metrics count)
and health.
"""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.app.custody import Custody
from custody.app.integrity import Sealer
from custody.domain import seals
from custody.domain.errors import (
    Aborted,
    ConfigurationError,
    CustodyError,
    FailedPrecondition,
    KeyFrozen,
    Unavailable,
)
from custody.domain.keys import KeyState
from custody.domain.requests import RequestState, SigningRequest
from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.store import open_store
from custody.store.codec import encode_time
from tests.app.conftest import (
    ADMIN,
    BACKEND,
    DAVE,
    App,
    AppFactory,
    approver_public_key,
    assert_signed_by,
    assert_unsigned,
)
from tests.softhsm_tokens import APP_PIN, APP_TOKEN_LABEL
from tests.tampering import append_chained_audit_event

TREASURY_SIGNS_AT_ONCE = """[[rules]]
name = "treasury-sign"
keys = ["treasury"]
kinds = ["transaction"]
chain_ids = [1, 11155111]
action = "sign"

"""
TIMELOCK_SECONDS = 3600


def _with_treasury_signing_at_once(document: str) -> str:
    return document.replace("[[rules]]\n", TREASURY_SIGNS_AT_ONCE + "[[rules]]\n", 1)


def _with_treasury_timelock(document: str) -> str:
    return document.replace("timelock_seconds = 0\n", f"timelock_seconds = {TIMELOCK_SECONDS}\n", 1)


def _assert_refused_for_its_seal(app: App, request_id: str) -> None:
    ended = app.get(request_id)
    assert ended.state is RequestState.FAILED
    assert_unsigned(ended)
    assert ended.error is not None and "sealed" in ended.error
    assert app.events(kind="request.signed", request_id=request_id) == []
    assert len(app.events(kind="seal.mismatch", request_id=request_id)) == 1
    assert "changed outside custody" in app.custody.health().detail


def test_a_policy_version_inserted_in_the_database_signs_nothing(app: App) -> None:
    forged = app.next_policy(_with_treasury_signing_at_once)
    active = app.custody.policy.active()
    app.sql(
        "INSERT INTO policy_versions (version, document, activated_at, request_id) VALUES (?, ?, ?, NULL)",
        (active.policy.version + 1, forged, encode_time(app.clock.now, "activated_at")),
    )

    request = app.submit_tx("treasury")

    # The forged policy decided "sign" at submission; the seal check when the claim was taken refused it.
    assert request.decision.rule == "treasury-sign"
    _assert_refused_for_its_seal(app, request.request_id)


def test_a_pending_request_edited_to_approved_and_sign_is_not_signed(app: App) -> None:
    request = app.pending()
    app.sql(
        "UPDATE requests SET state = 'APPROVED', decision_action = 'sign', decision_rule = 'ops-transactions',"
        " quorum = '[]' WHERE request_id = ?",
        (request.request_id,),
    )

    app.run_worker()

    _assert_refused_for_its_seal(app, request.request_id)


def test_a_time_lock_moved_to_now_after_the_quorum_is_not_honoured(make_app: AppFactory) -> None:
    app = make_app(policy=_with_treasury_timelock)
    request = app.pending()
    app.approve(request, "alice")
    approved = app.approve(request, "bob")
    assert approved.state is RequestState.APPROVED and approved.not_before is not None
    app.sql(
        "UPDATE requests SET not_before = ? WHERE request_id = ?",
        (encode_time(app.clock.now - timedelta(seconds=1), "not_before"), request.request_id),
    )

    app.run_worker()

    _assert_refused_for_its_seal(app, request.request_id)


def test_a_frozen_key_set_active_in_the_database_signs_nothing(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    app.sql("UPDATE keys SET state = 'ACTIVE' WHERE label = 'treasury'")

    app.approve(request, "bob")
    app.run_worker()

    _assert_refused_for_its_seal(app, request.request_id)


def test_a_seal_copied_from_another_request_does_not_verify(app: App) -> None:
    signed_at_once = app.submit_tx("ops")
    assert_signed_by(signed_at_once, app.keys["ops"].address)
    request = app.pending()
    # The forger copies the seals of a request the daemon approved itself onto the waiting one.
    app.sql(
        "UPDATE requests SET state = 'APPROVED' WHERE request_id = ?",
        (request.request_id,),
    )
    for subject in (seals.approval_subject, seals.decision_subject):
        app.sql(
            "INSERT INTO seals (subject, seal) SELECT ?, seal FROM seals WHERE subject = ?"
            " ON CONFLICT (subject) DO UPDATE SET seal = excluded.seal",
            (subject(request.request_id), subject(signed_at_once.request_id)),
        )

    app.run_worker()

    _assert_refused_for_its_seal(app, request.request_id)


def test_rows_the_daemon_wrote_still_sign(app: App) -> None:
    sealer: Sealer = app.custody.sealer
    first = app.submit_tx("ops")
    assert_signed_by(first, app.keys["ops"].address)
    request = app.pending()
    app.approve(request, "alice")
    assert_signed_by(app.approve(request, "bob"), app.keys["treasury"].address)
    assert sealer.last_mismatch is None
    assert "seal" not in app.custody.health().detail


def test_a_policy_seal_replaced_after_it_verified_is_checked_again(app: App) -> None:
    """The daemon remembers the policy's sealed bytes and seal that verified; a seal written over it later (here
    the key's own valid seal, copied onto the policy) is another pair and is checked in the HSM again."""
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    version = app.custody.policy.active().policy.version
    app.sql(
        "UPDATE seals SET seal = (SELECT seal FROM seals WHERE subject = ?) WHERE subject = ?",
        (seals.key_subject("ops"), seals.policy_subject(version)),
    )

    request = app.submit_tx("ops")

    _assert_refused_for_its_seal(app, request.request_id)


def test_the_seal_key_is_found_again_by_its_stored_id_after_a_restart(app: App, make_app: AppFactory) -> None:
    request = app.pending()
    app.approve(request, "alice")
    stored = app.sql("SELECT key_id FROM daemon_keys WHERE purpose = 'seal'")

    restarted = make_app.restart(app)

    assert_signed_by(restarted.approve(request, "bob"), restarted.keys["treasury"].address)
    assert restarted.sql("SELECT key_id FROM daemon_keys WHERE purpose = 'seal'") == stored


def test_rows_written_before_seals_existed_are_sealed_once_at_start(app: App, make_app: AppFactory) -> None:
    """A database from before seals (no seal key recorded, no seals) on a token that holds no seal key either.
    The first start seals what it finds, says so in the audit log, and what it sealed still signs."""
    request = app.pending()
    app.approve(request, "alice")
    make_app.stop(app)
    app.sql("DELETE FROM seals")
    app.sql("DELETE FROM daemon_keys WHERE purpose = 'seal'")
    # The token as a version before seals left it: no seal key and no anchor.
    make_app.retire_token_state()

    restarted = make_app(database=app.database, clock=app.clock)

    (created,) = restarted.events(kind="seals.created")
    assert created.details["records"] >= 4  # two keys, the policy, the waiting request
    assert_signed_by(restarted.approve(request, "bob"), restarted.keys["treasury"].address)


def test_deleting_every_seal_and_the_seal_keys_record_stops_the_start(app: App, make_app: AppFactory) -> None:
    """The writer deletes every seal and the record of the seal key, so that a new key would seal whatever the
    database holds: the token still holds the seal key and the anchor, and the daemon will not start."""
    request = app.pending()
    make_app.stop(app)
    app.sql(
        "UPDATE requests SET state = 'APPROVED', decision_action = 'sign', quorum = '[]' WHERE request_id = ?",
        (request.request_id,),
    )
    app.sql("DELETE FROM seals")
    app.sql("DELETE FROM daemon_keys WHERE purpose = 'seal'")

    with pytest.raises(ConfigurationError, match="which the database does not name"):
        make_app(database=app.database, clock=app.clock)
    assert app.sql("SELECT COUNT(*) FROM seals") == [(0,)]
    assert app.sql("SELECT state FROM requests WHERE request_id = ?", (request.request_id,)) == [
        ("APPROVED",)
    ]


def test_seals_without_the_record_of_their_key_stop_the_start(app: App, make_app: AppFactory) -> None:
    make_app.stop(app)
    app.sql("DELETE FROM daemon_keys WHERE purpose = 'seal'")

    with pytest.raises(ConfigurationError, match="which the database does not name"):
        make_app(database=app.database, clock=app.clock)
    # Even on a token whose state was retired, the database's own seals show the record was deleted.
    make_app.retire_token_state()
    with pytest.raises(ConfigurationError, match="no record of the HSM seal key"):
        make_app(database=app.database, clock=app.clock)


def _sealed_key_row(app: App, label: str) -> tuple[tuple[object, ...], bytes]:
    """A copy of a key's state and freeze count and of its seal, as a writer keeps one for later."""
    ((state, freezes),) = app.sql("SELECT state, freezes FROM keys WHERE label = ?", (label,))
    ((seal,),) = app.sql("SELECT seal FROM seals WHERE subject = ?", (seals.key_subject(label),))
    return (state, freezes), bytes(seal)


def _put_key_row_back(app: App, label: str, kept: tuple[tuple[object, ...], bytes]) -> None:
    (state, freezes), seal = kept
    app.sql("UPDATE keys SET state = ?, freezes = ? WHERE label = ?", (state, freezes, label))
    app.sql("UPDATE seals SET seal = ? WHERE subject = ?", (seal, seals.key_subject(label)))


def _half_approved_with_the_frozen_keys_active_row_put_back(app: App) -> SigningRequest:
    """A treasury request one approval short of its quorum, whose key was frozen after its ACTIVE row and seal
    were copied, and the copy put back."""
    request = app.pending()
    app.approve(request, "alice")
    kept = _sealed_key_row(app, "treasury")
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    _put_key_row_back(app, "treasury", kept)
    return request


def _assert_refused_as_put_back(app: App, request_id: str) -> None:
    ended = app.get(request_id)
    assert ended.state is RequestState.FAILED
    assert_unsigned(ended)
    assert ended.error is not None and "put back to an older sealed value" in ended.error
    assert app.events(kind="request.signed", request_id=request_id) == []
    (mismatch,) = app.events(kind="seal.mismatch", request_id=request_id)
    assert "put back" in mismatch.details["reason"]
    assert "put back" in app.custody.health().detail


def test_a_frozen_keys_older_sealed_active_row_put_back_signs_nothing(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    kept = _sealed_key_row(app, "treasury")
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")

    _put_key_row_back(app, "treasury", kept)
    app.approve(request, "bob")
    app.run_worker()

    _assert_refused_as_put_back(app, request.request_id)
    assert "key treasury was frozen" in (app.get(request.request_id).error or "")


def test_an_older_sealed_key_row_put_back_before_a_restart_signs_nothing(
    app: App, make_app: AppFactory
) -> None:
    """After a restart nothing is remembered of the freeze but what the audit log says, which is enough."""
    request = app.pending()
    app.approve(request, "alice")
    kept = _sealed_key_row(app, "treasury")
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    make_app.stop(app)

    _put_key_row_back(app, "treasury", kept)
    restarted = make_app(database=app.database, clock=app.clock)
    restarted._nonces = app._nonces
    restarted.approve(request, "bob")
    restarted.run_worker()

    _assert_refused_as_put_back(restarted, request.request_id)


def test_a_cancelled_request_put_back_to_approved_is_not_signed(make_app: AppFactory) -> None:
    app = make_app(policy=_with_treasury_timelock)
    request = app.pending()
    app.approve(request, "alice")
    assert app.approve(request, "bob").state is RequestState.APPROVED
    assert app.custody.signing.cancel(BACKEND, request.request_id, "not any more").state is (
        RequestState.CANCELLED
    )

    # The approved seal is still in its table: the writer only needs the state back, and waits out the lock.
    app.sql("UPDATE requests SET state = 'APPROVED' WHERE request_id = ?", (request.request_id,))
    app.clock.advance(TIMELOCK_SECONDS + 1)
    app.run_worker()

    ended = app.get(request.request_id)
    assert_unsigned(ended)
    assert app.events(kind="request.signed", request_id=request.request_id) == []
    assert ended.error is not None and "ended with request.cancelled" in ended.error


def test_a_signed_request_put_back_to_approved_is_not_signed_again(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    assert_signed_by(app.approve(request, "bob"), app.keys["treasury"].address)

    app.sql(
        "UPDATE requests SET state = 'APPROVED', signature = NULL, signed_tx = NULL, tx_hash = NULL"
        " WHERE request_id = ?",
        (request.request_id,),
    )
    app.clock.advance(3600)
    app.run_worker()

    assert len(app.events(kind="request.signed", request_id=request.request_id)) == 1
    assert "ended with request.signed" in (app.get(request.request_id).error or "")


def test_a_policy_rolled_back_by_deleting_the_newer_version_signs_nothing(app: App) -> None:
    """Version 1 keeps its valid seal; deleting the row of version 2, activated through the admin quorum,
    puts version 1 back in force. The audit log says version 2 came after it, so nothing is signed under it."""
    proposal = app.custody.policy.propose(ADMIN, app.next_policy())
    app.approve(proposal, "alice")
    assert app.approve(proposal, "dave").state is RequestState.APPROVED
    assert app.custody.policy.get(ADMIN).policy.version == 2

    app.sql("DELETE FROM policy_versions WHERE version = 2")
    request = app.submit_tx("ops")

    assert request.decision.policy_version == 1
    assert_unsigned(app.get(request.request_id))
    assert app.get(request.request_id).state is RequestState.FAILED
    assert "version 2 was activated after it" in (app.get(request.request_id).error or "")


def test_an_old_event_edited_in_place_holds_all_signing_once_the_whole_log_is_verified(app: App) -> None:
    """The start verifies only the log's head; the whole log is verified once in the background after it. An
    event far behind the last checkpoint edited in place (its hash left alone, so that it no longer says what it
    said) is found then, and from that moment nothing is signed: callers get UNAVAILABLE, nothing ends."""
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    assert app.custody.audit.checkpoint() is not None
    app.custody.verify_whole_log()
    assert app.custody.sealer.held is None
    app.sql("UPDATE audit_events SET actor = 'someone-else' WHERE sequence = 2")
    signed_before = len(app.events(kind="request.signed"))

    app.custody.verify_whole_log()

    with pytest.raises(Unavailable, match="nothing is signed: the audit log does not verify at sequence 2"):
        app.submit_tx("ops")
    assert len(app.events(kind="request.signed")) == signed_before
    assert "nothing is signed: the audit log does not verify at sequence 2" in app.custody.health().detail


class _KeyRowShownAs:
    """The store as a writer toggling a key's row shows it: every read of the key but the one before signing
    sees ``shown`` (the row the writer swaps in for a moment), so the daemon's confirmation read is lied to."""

    def __init__(self, store: object, **shown: object) -> None:
        self._store = store
        self._shown = shown

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def get_key(self, label: str) -> object:
        key = self._store.get_key(label)  # type: ignore[attr-defined]
        return dataclasses.replace(key, **self._shown) if key is not None else None


class _NewerPolicyShown:
    """The store as a writer briefly inserting a higher policy version shows it to the confirmation read."""

    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def active_policy(self) -> object:
        active = self._store.active_policy()  # type: ignore[attr-defined]
        return dataclasses.replace(active, version=active.version + 1)


def test_a_key_row_flipped_to_frozen_for_the_confirmation_read_does_not_let_a_put_back_row_sign(
    app: App,
) -> None:
    """The row put back reads ACTIVE where signing reads it and FROZEN where the daemon reads it again to
    confirm: a key that reads FROZEN is a wait, never a sign that memory was stale."""
    request = _half_approved_with_the_frozen_keys_active_row_put_back(app)
    state = app.custody.current_state
    state._store = _KeyRowShownAs(state._store, state=KeyState.FROZEN)  # type: ignore[assignment]

    with pytest.raises(KeyFrozen):
        app.approve(request, "bob")
    app.run_worker()

    waiting = app.get(request.request_id)
    assert waiting.state in (RequestState.PENDING_APPROVAL, RequestState.APPROVED)
    assert_unsigned(waiting)
    assert app.events(kind="request.signed", request_id=request.request_id) == []


def test_a_newer_policy_shown_to_the_confirmation_read_does_not_clear_a_put_back_key_row(app: App) -> None:
    """A writer inserting a higher policy version for a moment does not make the daemon forget that the key's
    row was put back: the request ends as put back, unsigned."""
    request = _half_approved_with_the_frozen_keys_active_row_put_back(app)
    state = app.custody.current_state
    state._store = _NewerPolicyShown(state._store)  # type: ignore[assignment]

    with contextlib.suppress(CustodyError):
        app.approve(request, "bob")
    app.run_worker()

    _assert_refused_as_put_back(app, request.request_id)


def _with_approver_keys_replaced(document: str, app: App, held: dict[str, Ed25519PrivateKey]) -> str:
    """``document`` with the approval key of each approver named in ``held`` replaced by the key given."""
    for name, key in held.items():
        document = document.replace(approver_public_key(app.approver_keys[name]), approver_public_key(key), 1)
    return document


def test_an_inserted_policy_naming_a_writers_approval_keys_counts_no_verdict_and_activates_nothing(
    app: App,
) -> None:
    """A writer inserts a policy version the daemon never sealed, in which two admins' approval keys are keys
    the writer holds, and approves a policy change with them: no verdict counts, nothing is activated or
    sealed, and the mismatch is reported."""
    held = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob")}
    for name, key in held.items():
        app.approver_keys[f"writer-as-{name}"] = key
    forged = app.next_policy(lambda document: _with_approver_keys_replaced(document, app, held))
    active = app.custody.policy.active()
    app.sql(
        "INSERT INTO policy_versions (version, document, activated_at, request_id) VALUES (?, ?, ?, NULL)",
        (active.policy.version + 1, forged, encode_time(app.clock.now, "activated_at")),
    )
    proposal = app.custody.policy.propose(ADMIN, app.next_policy(_with_treasury_signing_at_once))

    for approver in ("alice", "bob"):
        with pytest.raises(FailedPrecondition, match="policy in force cannot be trusted"):
            app.approve(proposal, approver, signer=f"writer-as-{approver}")

    assert app.sql("SELECT COUNT(*) FROM approvals WHERE request_id = ?", (proposal.request_id,)) == [(0,)]
    assert app.get(proposal.request_id).state is RequestState.PENDING_APPROVAL
    assert app.custody.policy.active().policy.version == active.policy.version + 1
    assert app.sql(
        "SELECT COUNT(*) FROM seals WHERE subject = ?", (seals.policy_subject(active.policy.version + 2),)
    ) == [(0,)]
    mismatches = app.events(kind="seal.mismatch", request_id=proposal.request_id)
    assert len(mismatches) == 2
    assert "policy:" in mismatches[0].details["reason"]
    assert "changed outside custody" in app.custody.health().detail


def test_a_policy_row_edited_in_place_is_read_as_what_it_now_says_and_signs_nothing(app: App) -> None:
    """The daemon parsed the policy before; the edited row keeps its version number but is another text, which
    is what the daemon judges and checks the seal of, so the edit is refused and reported, not hidden."""
    active = app.custody.policy.active()
    edited = _with_treasury_signing_at_once(active.document)
    app.sql("UPDATE policy_versions SET document = ? WHERE version = ?", (edited, active.policy.version))

    request = app.submit_tx("treasury")

    assert request.decision.rule == "treasury-sign"
    _assert_refused_for_its_seal(app, request.request_id)


def test_a_chained_unfreeze_event_appended_in_the_database_does_not_let_a_put_back_row_sign(app: App) -> None:
    """A writer puts the frozen key's older sealed ACTIVE row back and appends a well-chained ``key.unfrozen``
    event: the event carries no seal of the HSM key, so the daemon takes nothing in from it, appends nothing
    after it, signs nothing and no checkpoint over it."""
    request = _half_approved_with_the_frozen_keys_active_row_put_back(app)
    forged = append_chained_audit_event(app.sql, "key.unfrozen", key="treasury", freeze=1)
    assert app.custody.audit.verify_whole().ok  # the forgery is well chained: only its missing seal tells

    with pytest.raises(Unavailable, match="carries no seal"):
        app.approve(request, "bob")
    with contextlib.suppress(Unavailable):
        app.run_worker()
    with pytest.raises(Unavailable, match="carries no seal"):
        app.custody.audit.checkpoint()

    waiting = app.get(request.request_id)
    assert_unsigned(waiting)
    assert app.events(kind="request.signed", request_id=request.request_id) == []
    assert app.sql("SELECT MAX(sequence) FROM audit_events") == [(forged,)]
    assert "without the seal of the HSM seal key" in app.custody.health().detail


def test_a_chained_event_appended_while_no_daemon_runs_stops_the_next_start(
    app: App, make_app: AppFactory
) -> None:
    """The shutdown's checkpoint is anchored in the token; an event appended after it while the daemon is
    stopped continues the chain and verifies, but carries no seal, so the next start refuses."""
    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    make_app.stop(app)
    append_chained_audit_event(app.sql, "key.unfrozen", key="treasury", freeze=1)

    with pytest.raises(ConfigurationError, match="carries no seal of the HSM seal key"):
        make_app(database=app.database, clock=app.clock)


def test_a_restart_after_a_clean_stop_starts_and_signs(app: App, make_app: AppFactory) -> None:
    """The head every start finds is the sealed one the daemon left: the check costs a start nothing else."""
    make_app.stop(app)
    restarted = make_app(database=app.database, clock=app.clock)
    restarted._nonces = app._nonces
    request = restarted.pending()
    restarted.approve(request, "alice")
    assert_signed_by(restarted.approve(request, "bob"), restarted.keys["treasury"].address)


def test_a_keys_row_from_before_a_freeze_put_back_after_the_unfreeze_signs_nothing(app: App) -> None:
    """The key was frozen and unfrozen by the admin quorum, so it is ACTIVE again; the writer puts back its
    ACTIVE row from before the freeze, seal included. Its state agrees with the audit log, but its sealed freeze
    count is older than the freeze the log's unfreeze lifted: refused as put back."""
    kept = _sealed_key_row(app, "treasury")
    app.custody.keys.freeze(DAVE, "treasury", "drill")
    _, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "treasury", "drill over")
    app.approve(unfreeze, "alice")
    app.approve(unfreeze, "dave")
    _put_key_row_back(app, "treasury", kept)

    request = app.pending()
    app.approve(request, "alice")
    app.approve(request, "bob")
    app.run_worker()

    _assert_refused_as_put_back(app, request.request_id)
    assert "counts 0 freezes, but freeze 1 was recorded" in (app.get(request.request_id).error or "")


def test_a_keys_freeze_count_edited_alone_does_not_verify(app: App) -> None:
    app.custody.keys.freeze(DAVE, "treasury", "drill")
    _, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "treasury", "drill over")
    app.approve(unfreeze, "alice")
    app.approve(unfreeze, "dave")
    app.sql("UPDATE keys SET freezes = 0 WHERE label = 'treasury'")

    request = app.pending()
    app.approve(request, "alice")
    app.approve(request, "bob")
    app.run_worker()

    _assert_refused_for_its_seal(app, request.request_id)


def test_key_seals_made_before_freeze_counts_are_sealed_again_at_start(
    app: App, make_app: AppFactory
) -> None:
    """A key sealed by a version that did not bind the freeze count is sealed again, with it, at the next start
    (recorded in a ``seals.created`` event), and signs as before."""
    key = app.custody.keys.get_key(ADMIN, "treasury")
    old_seal = app.custody.sealer.seal(seals.sealed_key_before_freeze_counts(key))
    app.sql("UPDATE seals SET seal = ? WHERE subject = ?", (old_seal, seals.key_subject("treasury")))
    make_app.stop(app)

    restarted = make_app(database=app.database, clock=app.clock)
    restarted._nonces = app._nonces
    (resealed,) = [
        event
        for event in restarted.events(kind="seals.created")
        if event.details.get("reason") == "key seals now bind each key's freeze count"
    ]
    assert resealed.details["records"] == 1
    request = restarted.pending()
    restarted.approve(request, "alice")
    assert_signed_by(restarted.approve(request, "bob"), key.address)


def test_an_event_appended_between_the_starts_verification_and_the_seal_keys_opening_is_not_anchored(
    app: App, make_app: AppFactory
) -> None:
    """The start remembers and anchors the event its head verification reached, and walks on from it with the
    checked walk: an unsealed event appended right after that verification stops the start and is never
    anchored in the token."""
    make_app.stop(app)
    custody = Custody(
        store=open_store(f"sqlite:///{app.database}", make_app.directory),
        hsm=Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN),
        clock=app.clock,
    )
    make_app.built.append(custody)
    custody.audit.open()
    forged = append_chained_audit_event(app.sql, "key.frozen", key="ops", freeze=1)

    with pytest.raises(Unavailable, match="carries no seal"):
        custody.policy.seed(make_app.approvers.dev_policy, "policy.toml")

    seal_key_id = custody.sealer.key_id
    assert seal_key_id is not None
    anchored = custody.sealer.anchor.latest(seal_key_id)
    assert anchored is not None and anchored.sequence < forged


def test_a_rolled_back_policy_is_not_forgiven_when_the_confirmation_read_is_shown_a_newer_version(
    app: App,
) -> None:
    """Version 2's row was deleted, so version 1 is in force again; the daemon's confirmation read is shown a
    version 3 for a moment. A newer version is a retry under it (ABORTED), never a reason to sign under the old
    one."""
    proposal = app.custody.policy.propose(ADMIN, app.next_policy())
    app.approve(proposal, "alice")
    app.approve(proposal, "dave")
    app.sql("DELETE FROM policy_versions WHERE version = 2")
    state = app.custody.current_state
    state._store = _NewerPolicyShown(state._store)  # type: ignore[assignment]

    with pytest.raises(Aborted, match="ask again under the newer one"):
        app.submit_tx("ops")

    assert app.sql("SELECT COUNT(*) FROM requests WHERE state = 'SIGNED'") == [(0,)]
    assert app.events(kind="request.signed") == []

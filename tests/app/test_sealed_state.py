"""A database writer gains no signing power: every record a signature relies on carries an HSM seal.

Each test edits the SQLite file behind the application's back with plain SQL, as someone who can write the
database but holds no HSM key could, and checks that nothing is signed, that the request ends FAILED naming the
seal, and that the mismatch is reported: a ``seal.mismatch`` audit event (which the daemon's metrics count)
and health.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from custody.app.integrity import Sealer
from custody.domain import seals
from custody.domain.errors import ConfigurationError
from custody.domain.requests import RequestState
from custody.store.codec import encode_time
from tests.app.conftest import DAVE, App, AppFactory, assert_signed_by, assert_unsigned

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


def _assert_refused_for_its_seal(app: App, request_id: str) -> None:
    ended = app.get(request_id)
    assert ended.state is RequestState.FAILED
    assert_unsigned(ended)
    assert ended.error is not None and "sealed" in ended.error
    assert app.events(kind="request.signed", request_id=request_id) == []
    assert len(app.events(kind="seal.mismatch", request_id=request_id)) == 1
    assert "written without the seal key" in app.custody.health().detail


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
    app = make_app(
        policy=lambda document: document.replace(
            "timelock_seconds = 0\n", f"timelock_seconds = {TIMELOCK_SECONDS}\n", 1
        )
    )
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

"""A freeze switches signing with the key off in the HSM token itself (CKA_SIGN of its private half), and only
the admin quorum's unfreeze switches it back on: a database writer who makes custody believe a frozen key is
active still gets no signature, because the token refuses it.

The application is the real one in-process on a SQLite file and a SoftHSM2 token; the token is read and asked
to sign through a second adapter of its own, as another process would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from custody.domain import seals
from custody.domain.errors import CustodyError, FailedPrecondition, KeyFrozen
from custody.domain.keys import KeyState
from custody.domain.requests import RequestState
from custody.hsm.pkcs11 import Pkcs11Hsm
from tests.softhsm_tokens import APP_PIN, APP_TOKEN_LABEL

from .conftest import ADMIN, DAVE, App, AppFactory, assert_signed_by

DIGEST = bytes(range(32))


@pytest.fixture
def token(make_app: AppFactory) -> Iterator[Pkcs11Hsm]:
    hsm = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    try:
        yield hsm
    finally:
        hsm.close()


def _key_id(app: App, label: str) -> bytes:
    return bytes.fromhex(app.custody.keys.get_key(ADMIN, label).key_id)


def _freeze_that_does_not_commit(app: App, label: str) -> None:
    """A freeze whose transaction fails (a trigger refuses its audit event), as any write may fail."""
    app.sql(
        "CREATE TRIGGER refuse_freezes BEFORE INSERT ON audit_events WHEN NEW.kind = 'key.frozen'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    with pytest.raises(CustodyError):
        app.custody.keys.freeze(DAVE, label, "drill")
    app.sql("DROP TRIGGER refuse_freezes")


def test_a_freeze_switches_signing_off_in_the_token_and_the_unfreeze_switches_it_back_on(
    app: App, token: Pkcs11Hsm
) -> None:
    key_id = _key_id(app, "treasury")
    assert len(token.sign_digest(key_id, DIGEST)) == 64

    app.custody.keys.freeze(DAVE, "treasury", "drill")
    with pytest.raises(KeyFrozen, match="switched off in the token"):
        token.sign_digest(key_id, DIGEST)
    assert len(token.sign_digest(_key_id(app, "ops"), DIGEST)) == 64  # other keys sign on

    _, unfreeze = app.custody.keys.request_unfreeze(ADMIN, "treasury", "drill over")
    app.approve(unfreeze, "alice")
    with pytest.raises(KeyFrozen):
        token.sign_digest(key_id, DIGEST)  # one approval of two: still off
    app.approve(unfreeze, "dave")
    assert len(token.sign_digest(key_id, DIGEST)) == 64

    request = app.pending()
    app.approve(request, "alice")
    assert_signed_by(app.approve(request, "bob"), app.keys["treasury"].address)


def test_a_freeze_the_policy_makes_switches_signing_off_in_the_token(
    make_app: AppFactory, token: Pkcs11Hsm
) -> None:
    """A velocity rule with freeze_on_breach freezes ops on its third transaction within the hour: that
    freeze is written by the signing path, not by a security approver."""
    cap = 'max_value_wei = "1000000000000000000"  # 1 ether\n'
    velocity = "velocity = { window_seconds = 3600, max_count = 2, freeze_on_breach = true }\n"
    app = make_app(policy=lambda document: document.replace(cap, cap + velocity, 1))
    for _ in range(2):
        assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    assert app.submit_tx("ops").state is RequestState.DENIED
    assert app.custody.keys.get_key(ADMIN, "ops").state is KeyState.FROZEN
    with pytest.raises(KeyFrozen):
        token.sign_digest(_key_id(app, "ops"), DIGEST)


def test_a_freeze_that_does_not_commit_leaves_signing_on(app: App, token: Pkcs11Hsm) -> None:
    key_id = _key_id(app, "treasury")
    _freeze_that_does_not_commit(app, "treasury")
    assert app.custody.keys.get_key(ADMIN, "treasury").state is KeyState.ACTIVE
    assert len(token.sign_digest(key_id, DIGEST)) == 64


def test_a_replica_that_missed_a_deleted_freeze_is_refused_by_the_token(
    app: App, make_app: AppFactory
) -> None:
    """Replica A freezes the key; before replica B looks past its remembered head, a database writer deletes
    the freeze's events and puts back the key's ACTIVE row from before, seal included. B's own checks find
    nothing wrong (the log's head is the one it remembers), but the token refuses the signature: the request
    waits, unsigned."""
    request = app.pending()
    app.approve(request, "alice")
    replica = make_app(database=app.database, clock=app.clock)
    before_freeze = app.head()
    ((state, freezes),) = app.sql("SELECT state, freezes FROM keys WHERE label = 'treasury'")
    ((seal,),) = app.sql("SELECT seal FROM seals WHERE subject = ?", (seals.key_subject("treasury"),))

    app.custody.keys.freeze(DAVE, "treasury", "suspected compromise")
    app.sql("DELETE FROM audit_events WHERE sequence > ?", (before_freeze,))
    app.sql("UPDATE keys SET state = ?, freezes = ? WHERE label = 'treasury'", (state, freezes))
    app.sql("UPDATE seals SET seal = ? WHERE subject = ?", (seal, seals.key_subject("treasury")))

    with pytest.raises(KeyFrozen, match="switched off in the token"):
        replica.approve(request, "bob")
    waiting = replica.get(request.request_id)
    assert waiting.state is RequestState.APPROVED and waiting.result is None
    assert replica.events(kind="request.signed", request_id=request.request_id) == []


def test_a_start_switches_signing_off_for_keys_the_audit_log_says_are_frozen(
    app: App, make_app: AppFactory
) -> None:
    """A freeze recorded by a version that did not switch signing off in the token (or whose switch was lost):
    the next start switches it off. (Closing an adapter logs the whole process out of the token, so each step
    opens its own.)"""
    key_id = _key_id(app, "treasury")
    app.custody.keys.freeze(DAVE, "treasury", "drill")
    make_app.stop(app)
    older_version = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    try:
        older_version.set_signing_allowed(key_id, True)
        assert len(older_version.sign_digest(key_id, DIGEST)) == 64
    finally:
        older_version.close()

    make_app(database=app.database, clock=app.clock)
    token = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    with pytest.raises(KeyFrozen):
        token.sign_digest(key_id, DIGEST)


def test_a_token_that_cannot_switch_signing_off_leaves_the_freeze_to_the_database_and_health_says_so(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    hsm = app.custody.sealer._hsm

    def refuse(key_id: bytes, allowed: bool) -> None:
        raise FailedPrecondition(f"the HSM does not let custody switch signing for key {key_id.hex()}")

    monkeypatch.setattr(hsm, "set_signing_allowed", refuse)
    frozen = app.custody.keys.freeze(DAVE, "treasury", "drill")
    assert frozen.state is KeyState.FROZEN
    assert "not switched off in the HSM" in app.custody.health().detail
    with pytest.raises(KeyFrozen):
        app.submit_tx("treasury")


def test_a_second_freeze_that_does_not_commit_leaves_signing_off(app: App, token: Pkcs11Hsm) -> None:
    """Freezing a frozen key switches nothing in the token, so its rollback has nothing to switch back on."""
    key_id = _key_id(app, "treasury")
    app.custody.keys.freeze(DAVE, "treasury", "first")
    _freeze_that_does_not_commit(app, "treasury")
    assert app.custody.keys.get_key(ADMIN, "treasury").state is KeyState.FROZEN
    with pytest.raises(KeyFrozen):
        token.sign_digest(key_id, DIGEST)


def test_a_frozen_keys_row_pointed_at_the_audit_key_does_not_switch_the_audit_key_off(
    app: App, make_app: AppFactory
) -> None:
    """A database writer gives a frozen key's row the audit key's CKA_ID: the start's switch-off and a freeze
    of that row must not reach the audit key, and the database restored lets the daemon start again."""
    app.custody.keys.freeze(DAVE, "treasury", "drill")
    ((audit_key_id,),) = app.sql("SELECT key_id FROM daemon_keys WHERE purpose = 'audit'")
    ((treasury_key_id,),) = app.sql("SELECT key_id FROM keys WHERE label = 'treasury'")
    make_app.stop(app)
    app.sql("UPDATE keys SET key_id = ? WHERE label = 'treasury'", (audit_key_id,))
    with pytest.raises(CustodyError):
        make_app(database=app.database, clock=app.clock)  # the row names no secp256k1 key: refused
    token = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    try:
        with pytest.raises(FailedPrecondition, match="not a secp256k1 key"):
            token.set_signing_allowed(bytes.fromhex(audit_key_id), False)
        signature = token.sign_ed25519(bytes.fromhex(audit_key_id), b"checkpoint")
        assert len(signature) == 64
    finally:
        token.close()

    app.sql("UPDATE keys SET key_id = ? WHERE label = 'treasury'", (treasury_key_id,))
    restarted = make_app(database=app.database, clock=app.clock)
    assert restarted.custody.keys.get_key(ADMIN, "treasury").state is KeyState.FROZEN


def test_a_freeze_of_a_row_written_outside_custody_switches_nothing_and_seals_nothing(
    app: App, token: Pkcs11Hsm
) -> None:
    """The writer gives the ops key's CKA_ID to the treasury row (moving the ops row aside first): freezing
    treasury must neither switch the ops key off nor seal the forged row, and the freeze still stands."""
    ((ops_key_id,),) = app.sql("SELECT key_id FROM keys WHERE label = 'ops'")
    app.sql("UPDATE keys SET key_id = ? WHERE label = 'ops'", ("00" * 16,))
    app.sql("UPDATE keys SET key_id = ? WHERE label = 'treasury'", (ops_key_id,))
    app.custody.keys.freeze(DAVE, "treasury", "drill")
    assert len(token.sign_digest(bytes.fromhex(ops_key_id), DIGEST)) == 64
    assert "seal of key treasury's row does not verify" in app.custody.health().detail
    with pytest.raises(KeyFrozen):
        app.submit_tx("treasury")


def test_a_key_this_process_made_and_another_froze_signs_again_once_unfrozen(make_app: AppFactory) -> None:
    """python-pkcs11 gives an object found while signing was off no sign method: the adapter that made the key
    must not keep such an object once another process switched signing off and on."""
    maker = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    other = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    try:
        key = maker.generate_secp256k1_key("made-here")
        assert other.set_signing_allowed(key.key_id, False)
        with pytest.raises(KeyFrozen):
            maker.sign_digest(key.key_id, DIGEST)
        assert not other.set_signing_allowed(key.key_id, False)  # already off: nothing changed
        assert other.set_signing_allowed(key.key_id, True)
        assert len(maker.sign_digest(key.key_id, DIGEST)) == 64
    finally:
        other.close()
        maker.close()


def test_an_active_key_the_token_refuses_is_named_in_health_after_a_start(
    app: App, make_app: AppFactory
) -> None:
    """A freeze whose switch landed but whose record did not (a crash between them): the database says active,
    the token refuses, and the start says so in health instead of letting approvals wait without a word."""
    key_id = _key_id(app, "treasury")
    make_app.stop(app)
    crashed = Pkcs11Hsm(make_app.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    try:
        assert crashed.set_signing_allowed(key_id, False)
    finally:
        crashed.close()

    restarted = make_app(database=app.database, clock=app.clock)
    assert restarted.custody.keys.get_key(ADMIN, "treasury").state is KeyState.ACTIVE
    assert "key treasury was active in the database, but the HSM refuses" in restarted.custody.health().detail

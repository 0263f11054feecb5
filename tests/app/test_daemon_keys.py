"""The daemon's own keys: their labels are reserved, and the audit key is found by the CKA_ID the database
stores, so a key labelled like it, made by anyone else, changes nothing at the next start."""

from __future__ import annotations

from collections.abc import Iterator

import pkcs11
import pytest
from pkcs11 import Attribute

from custody.app.audit import AUDIT_KEY_LABEL
from custody.domain.errors import ConfigurationError, InvalidInput
from custody.domain.requests import PayloadKind
from custody.hsm.pkcs11 import Pkcs11Hsm
from tests.softhsm_tokens import APP_PIN, APP_TOKEN_LABEL, SoftHsmSetup

from .conftest import ADMIN, App, AppFactory, assert_signed_by


@pytest.fixture
def labelled_like_the_audit_key(softhsm: SoftHsmSetup) -> Iterator[bytes]:
    """A secp256k1 key labelled like the audit key, made in the token past the daemon (as anyone with the PIN
    could, or an admin of an older daemon through CreateKey); removed afterwards, since the token is shared by
    the tests that follow."""
    hsm = Pkcs11Hsm(softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
    try:
        key_id = hsm.generate_secp256k1_key(AUDIT_KEY_LABEL).key_id
    finally:
        hsm.close()
    yield key_id
    token = pkcs11.lib(softhsm.module_path).get_token(token_label=APP_TOKEN_LABEL)
    try:
        session = token.open(rw=True, user_pin=APP_PIN)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        # The applications of the test are still open in this process, and a login holds for all its sessions.
        session = token.open(rw=True)
    with session:
        for key_object in list(session.get_objects({Attribute.ID: key_id})):
            key_object.destroy()


def stored_audit_key_id(app: App) -> str:
    [(key_id,)] = app.sql("SELECT key_id FROM daemon_keys WHERE purpose = 'audit'")
    return str(key_id)


@pytest.mark.parametrize("label", [AUDIT_KEY_LABEL, "custody-seal", "custody-anything"])
def test_creating_a_key_with_a_label_reserved_for_the_daemons_own_keys_is_refused(
    app: App, label: str
) -> None:
    with pytest.raises(InvalidInput, match=f"the key label '{label}' is reserved") as refused:
        app.custody.keys.create_key(ADMIN, label)
    assert refused.value.field == "label"
    assert [key.label for key in app.custody.keys.list_keys(ADMIN)] == ["ops", "treasury"]
    # A label that merely contains the word is an ordinary label.
    assert app.custody.keys.create_key(ADMIN, "my-custody-key").label == "my-custody-key"


def test_a_key_labelled_like_the_audit_key_does_not_stop_the_next_start(
    app: App, make_app: AppFactory, labelled_like_the_audit_key: bytes
) -> None:
    audit_key = app.custody.audit.public_key
    app.submit("ops", b"before the restart", kind=PayloadKind.MESSAGE)
    assert app.custody.audit.checkpoint() is not None
    assert stored_audit_key_id(app) != labelled_like_the_audit_key.hex()

    restarted = make_app.restart(app)

    assert restarted.custody.audit.public_key == audit_key
    assert restarted.custody.audit.verify_chain(ADMIN).ok
    assert_signed_by(restarted.submit_tx("ops"), restarted.keys["ops"].address)
    assert restarted.custody.audit.checkpoint() is not None
    assert restarted.custody.audit.verify_chain(ADMIN).ok


def test_the_start_refuses_an_hsm_key_that_is_not_the_stored_audit_key(
    app: App, make_app: AppFactory
) -> None:
    # Someone with write access to the database points the audit key's entry at another Ed25519 public key.
    app.sql("UPDATE daemon_keys SET public_key = ? WHERE purpose = 'audit'", (bytes(32),))
    with pytest.raises(ConfigurationError, match=f"{stored_audit_key_id(app)} is not the audit key"):
        make_app.restart(app)

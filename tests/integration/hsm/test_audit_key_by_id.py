"""The daemon finds its audit key by CKA_ID: the pair's public key is read back and its private half checked,
whatever the key is labelled; an id that names no Ed25519 pair is refused."""

from __future__ import annotations

import secrets

import pytest

from custody.domain.errors import FailedPrecondition, NotFound
from custody.hsm.pkcs11 import Pkcs11Hsm
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup


def test_the_ed25519_public_key_is_read_by_id_in_a_new_session(hsm: Pkcs11Hsm, softhsm: SoftHsmSetup) -> None:
    key_id, public_key = hsm.ensure_ed25519_key(f"custody-audit-{secrets.token_hex(4)}")
    restarted = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN)
    try:
        assert restarted.ed25519_public_key(key_id) == public_key
        # The key it read signs for the id.
        restarted.sign_ed25519(key_id, b"checkpoint")
    finally:
        restarted.close()


def test_an_id_of_no_key_is_not_found(hsm: Pkcs11Hsm) -> None:
    unknown = secrets.token_bytes(16)
    with pytest.raises(NotFound, match=unknown.hex()):
        hsm.ed25519_public_key(unknown)


def test_the_id_of_a_secp256k1_key_is_refused(hsm: Pkcs11Hsm) -> None:
    generated = hsm.generate_secp256k1_key(f"signing-{secrets.token_hex(4)}")
    with pytest.raises(FailedPrecondition, match=r"Ed25519|Edwards"):
        hsm.ed25519_public_key(generated.key_id)

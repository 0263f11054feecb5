"""The HMAC seal key in the real token: generated sensitive and never extractable, found again by its stored
CKA_ID, and sealing with CKM_SHA256_HMAC.

Every seal is checked with C_Verify through an independent python-pkcs11 session, not only against what the
adapter computes itself.
"""

from __future__ import annotations

import secrets
import time

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from custody.domain.errors import FailedPrecondition, NotFound
from custody.hsm.pkcs11 import Pkcs11Hsm
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup


def _secret_key(session: pkcs11.Session, key_id: bytes) -> pkcs11.SecretKey:
    return session.get_key(object_class=ObjectClass.SECRET_KEY, id=key_id)


def test_the_seal_key_is_a_token_object_that_cannot_leave(
    hsm: Pkcs11Hsm, raw_session: pkcs11.Session
) -> None:
    key_id = hsm.generate_seal_key()

    key = _secret_key(raw_session, key_id)
    assert key[Attribute.KEY_TYPE] == KeyType.GENERIC_SECRET
    assert key[Attribute.TOKEN] is True
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.NEVER_EXTRACTABLE] is True
    with pytest.raises(p11.AttributeSensitive):
        key[Attribute.VALUE]


def test_a_seal_verifies_in_the_token_and_binds_every_byte(
    hsm: Pkcs11Hsm, raw_session: pkcs11.Session
) -> None:
    key_id = hsm.generate_seal_key()
    data = b"custody seal test\n" + secrets.token_bytes(200)

    seal = hsm.seal(key_id, data)

    assert len(seal) == 32
    assert _secret_key(raw_session, key_id).verify(data, seal, mechanism=Mechanism.SHA256_HMAC)
    assert hsm.verify_seal(key_id, data, seal)
    edited = data[:-1] + bytes([data[-1] ^ 1])
    assert not hsm.verify_seal(key_id, edited, seal)
    assert not hsm.verify_seal(key_id, data, seal[:-1] + bytes([seal[-1] ^ 1]))


def test_two_seal_keys_give_different_seals(hsm: Pkcs11Hsm) -> None:
    first, second = hsm.generate_seal_key(), hsm.generate_seal_key()

    assert hsm.seal(first, b"row") != hsm.seal(second, b"row")
    assert not hsm.verify_seal(second, b"row", hsm.seal(first, b"row"))


def test_the_key_is_found_again_by_its_stored_id_after_a_restart(
    softhsm: SoftHsmSetup, hsm: Pkcs11Hsm
) -> None:
    key_id = hsm.generate_seal_key()
    seal = hsm.seal(key_id, b"row")
    hsm.close()

    restarted = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN)
    try:
        restarted.check_seal_key(key_id)
        assert restarted.verify_seal(key_id, b"row", seal)
    finally:
        restarted.close()


def test_an_unknown_id_is_not_found(hsm: Pkcs11Hsm) -> None:
    with pytest.raises(NotFound):
        hsm.seal(secrets.token_bytes(16), b"row")


def test_an_extractable_secret_key_is_refused(hsm: Pkcs11Hsm, raw_session: pkcs11.Session) -> None:
    key_id = secrets.token_bytes(16)
    raw_session.generate_key(
        KeyType.GENERIC_SECRET,
        256,
        id=key_id,
        store=True,
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.SIGN: True},
        mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
    )

    with pytest.raises(FailedPrecondition, match="sensitive"):
        hsm.check_seal_key(key_id)
    with pytest.raises(FailedPrecondition):
        hsm.seal(key_id, b"row")


def test_a_signing_key_id_does_not_seal(hsm: Pkcs11Hsm) -> None:
    signing_key = hsm.generate_secp256k1_key(f"seal-test-{secrets.token_hex(4)}")

    with pytest.raises(NotFound):
        hsm.seal(signing_key.key_id, b"row")


def test_a_seal_costs_well_under_a_millisecond_on_softhsm(hsm: Pkcs11Hsm) -> None:
    """One HMAC is one HSM call; on SoftHSM2 it takes tens of microseconds. The bound is loose because the
    machine is shared with other test runs; it catches a seal that costs a round trip per field."""
    key_id = hsm.generate_seal_key()
    data = b"x" * 300
    rounds = 500
    started = time.perf_counter()
    for _ in range(rounds):
        hsm.seal(key_id, data)
    assert (time.perf_counter() - started) / rounds < 0.001

"""Opening the adapter with a wrong PIN, token or library, and creating SoftHSM2 tokens."""

from __future__ import annotations

import secrets
from pathlib import Path

import pkcs11
import pytest

from custody.domain.errors import ConfigurationError, InvalidInput, PinRefused
from custody.hsm.pkcs11 import Pkcs11Hsm, unwrap_ec_point
from custody.hsm.softhsm import create_softhsm_token, find_softhsm2_module
from custody.testing.hsm_faults import SignFaults
from tests.softhsm_tokens import OTHER_PIN, OTHER_TOKEN_LABEL, SoftHsmSetup

from .verify import verify_raw_signature


def test_a_wrong_pin_is_a_configuration_error_that_does_not_show_the_pin(softhsm: SoftHsmSetup) -> None:
    wrong_pin = "wrong-pin-" + secrets.token_hex(4)
    with pytest.raises(ConfigurationError) as error:
        Pkcs11Hsm(softhsm.module_path, OTHER_TOKEN_LABEL, wrong_pin)
    assert str(error.value) == f"the HSM refused the PIN for token {OTHER_TOKEN_LABEL!r}"
    assert wrong_pin not in repr(error.value)
    assert OTHER_PIN not in str(error.value)


def test_the_right_pin_opens_the_other_token(softhsm: SoftHsmSetup) -> None:
    adapter = Pkcs11Hsm(softhsm.module_path, OTHER_TOKEN_LABEL, OTHER_PIN)
    try:
        key = adapter.generate_secp256k1_key("other-token")
        digest = secrets.token_bytes(32)
        verify_raw_signature(digest, adapter.sign_digest(key.key_id, digest), key.public_point)
        assert adapter.health().ok
    finally:
        adapter.close()


def test_a_missing_token_label_is_named_in_the_error(softhsm: SoftHsmSetup) -> None:
    with pytest.raises(ConfigurationError, match="no token labelled 'no-such-token'"):
        Pkcs11Hsm(softhsm.module_path, "no-such-token", OTHER_PIN)


def test_a_missing_library_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "libnothing.so"
    with pytest.raises(ConfigurationError, match="does not exist"):
        Pkcs11Hsm(str(missing), OTHER_TOKEN_LABEL, OTHER_PIN)


def test_a_file_that_is_not_a_pkcs11_library_is_a_configuration_error(tmp_path: Path) -> None:
    not_a_library = tmp_path / "libfake.so"
    not_a_library.write_bytes(b"this is not an ELF shared object")
    with pytest.raises(ConfigurationError, match="could not be loaded"):
        Pkcs11Hsm(str(not_a_library), OTHER_TOKEN_LABEL, OTHER_PIN)


def test_softhsm2_module_is_found() -> None:
    assert Path(find_softhsm2_module()).is_file()


def test_a_failed_token_creation_does_not_show_the_pins(tmp_path: Path) -> None:
    # softhsm2-util refuses user PINs shorter than 4 characters.
    short_pin = "q9Z"
    so_pin = "so-" + secrets.token_hex(6)
    with pytest.raises(ConfigurationError, match="softhsm2-util failed") as error:
        create_softhsm_token(tmp_path, "short-pin", short_pin, so_pin)
    assert short_pin not in str(error.value)
    assert so_pin not in str(error.value)


def test_token_creation_writes_a_config_pointing_into_the_directory(tmp_path: Path) -> None:
    token = create_softhsm_token(tmp_path, "config-check", "user-1234", "so-123456")
    config = token.config_path.read_text()
    assert token.config_path == tmp_path / "softhsm2.conf"
    assert f"directories.tokendir = {(tmp_path / 'tokens').resolve()}" in config
    assert "objectstore.backend = file" in config
    assert "log.level = ERROR" in config
    assert any((tmp_path / "tokens").iterdir())


def test_a_token_label_longer_than_32_bytes_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as error:
        create_softhsm_token(tmp_path, "x" * 33, "user-1234", "so-123456")
    assert error.value.field == "label"


# The public point of the secp256k1 generator G (SEC 2, section 2.4.1), uncompressed.
_GENERATOR = bytes.fromhex(
    "04"
    "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
)


def test_ec_point_is_unwrapped_from_der_and_accepted_raw() -> None:
    assert unwrap_ec_point(b"\x04\x41" + _GENERATOR) == _GENERATOR
    assert unwrap_ec_point(_GENERATOR) == _GENERATOR


@pytest.mark.parametrize(
    "encoded",
    [_GENERATOR[:33], b"\x04\x21" + b"\x02" + _GENERATOR[1:33], b"\x05" + _GENERATOR[1:], b""],
    ids=["truncated", "compressed", "wrong-prefix", "empty"],
)
def test_ec_point_that_is_not_uncompressed_is_rejected(encoded: bytes) -> None:
    with pytest.raises(ValueError, match="CKA_EC_POINT"):
        unwrap_ec_point(encoded)


def test_a_pin_refused_on_reconnect_is_not_tried_again(softhsm: SoftHsmSetup) -> None:
    """The PIN changes under a running adapter and its session is lost: the reconnect's login is refused once,
    and every later call fails at once without another login, which would count towards locking the token."""
    changed_pin = "changed-" + secrets.token_hex(4)
    faults = SignFaults()
    adapter = Pkcs11Hsm(softhsm.module_path, OTHER_TOKEN_LABEL, OTHER_PIN, session_wrapper=faults)
    try:
        key = adapter.generate_secp256k1_key("pin-latch")
        faults.sessions[-1].set_pin(OTHER_PIN, changed_pin)
        faults.sessions[-1].close()
        with pytest.raises(PinRefused) as first:
            adapter.sign_digest(key.key_id, bytes(32))
        assert "refused the PIN" in first.value.message
        assert "does not try the PIN again" not in first.value.message
        sessions_opened = len(faults.sessions)
        for _ in range(3):
            with pytest.raises(PinRefused, match="does not try the PIN again until it is restarted"):
                adapter.sign_digest(key.key_id, bytes(32))
        assert len(faults.sessions) == sessions_opened
        for secret in (OTHER_PIN, changed_pin):
            assert secret not in str(first.value)
    finally:
        adapter.close()
        token = pkcs11.lib(softhsm.module_path).get_token(token_label=OTHER_TOKEN_LABEL)
        with token.open(rw=True, user_pin=changed_pin) as session:
            session.set_pin(changed_pin, OTHER_PIN)

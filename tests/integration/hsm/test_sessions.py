"""Session loss, injected device faults and re-login, against the real token through custody.testing.hsm_faults."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pkcs11
import pytest
from pkcs11.exceptions import (
    DeviceError,
    DeviceRemoved,
    GeneralError,
    PKCS11Error,
    SessionClosed,
    SessionHandleInvalid,
    UserNotLoggedIn,
)

from custody.domain.errors import HsmUnavailable
from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.testing.hsm_faults import SignFaults
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup

from .verify import verify_raw_signature


@pytest.fixture
def faults() -> SignFaults:
    return SignFaults(seed=20240611)


@pytest.fixture
def faulty_hsm(softhsm: SoftHsmSetup, faults: SignFaults) -> Iterator[Pkcs11Hsm]:
    adapter = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN, session_wrapper=faults)
    yield adapter
    adapter.close()


def _sign_and_verify(adapter: Pkcs11Hsm, key_id: bytes, point: bytes) -> None:
    digest = secrets.token_bytes(32)
    verify_raw_signature(digest, adapter.sign_digest(key_id, digest), point)


def test_a_session_closed_from_under_the_adapter_is_reopened(
    faulty_hsm: Pkcs11Hsm, faults: SignFaults
) -> None:
    key = faulty_hsm.generate_secp256k1_key("closed-under")
    _sign_and_verify(faulty_hsm, key.key_id, key.public_point)

    # Closing the real session that logged in also logs the process out of the token.
    faults.sessions[-1].close()

    _sign_and_verify(faulty_hsm, key.key_id, key.public_point)
    assert len(faults.sessions) == 2


@pytest.mark.parametrize("error", [SessionClosed, SessionHandleInvalid, DeviceRemoved, UserNotLoggedIn])
def test_one_lost_session_error_is_retried_once_after_reopening(
    faulty_hsm: Pkcs11Hsm, faults: SignFaults, error: type[PKCS11Error]
) -> None:
    key = faulty_hsm.generate_secp256k1_key("retried")
    faults.fail_next(1, error)

    _sign_and_verify(faulty_hsm, key.key_id, key.public_point)

    assert faults.injected_faults == 1
    assert faults.sign_calls == 2
    assert len(faults.sessions) == 2


def test_two_consecutive_lost_sessions_give_hsm_unavailable(
    faulty_hsm: Pkcs11Hsm, faults: SignFaults
) -> None:
    key = faulty_hsm.generate_secp256k1_key("twice")
    faults.fail_next(2, SessionClosed)

    with pytest.raises(HsmUnavailable, match=key.key_id.hex()):
        faulty_hsm.sign_digest(key.key_id, secrets.token_bytes(32))

    assert faults.sign_calls == 2
    # The failure is not sticky: once the faults stop, the adapter signs again.
    _sign_and_verify(faulty_hsm, key.key_id, key.public_point)


@pytest.mark.parametrize("error", [DeviceError, GeneralError])
def test_a_device_error_is_unavailable_at_once_without_retry(
    faulty_hsm: Pkcs11Hsm, faults: SignFaults, error: type[PKCS11Error]
) -> None:
    key = faulty_hsm.generate_secp256k1_key("device-error")
    faults.fail_next(1, error)

    with pytest.raises(HsmUnavailable, match=error.__name__):
        faulty_hsm.sign_digest(key.key_id, secrets.token_bytes(32))

    assert faults.sign_calls == 1
    assert len(faults.sessions) == 1
    _sign_and_verify(faulty_hsm, key.key_id, key.public_point)


def test_random_faults_either_sign_correctly_or_report_unavailable(softhsm: SoftHsmSetup) -> None:
    faults = SignFaults(seed=7, delay_seconds=0.0005)
    faults.fail_at_rate(0.3, SessionClosed)
    adapter = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN, session_wrapper=faults)
    try:
        key = adapter.generate_secp256k1_key("random-faults")
        signed = unavailable = 0
        for _ in range(200):
            digest = secrets.token_bytes(32)
            try:
                signature = adapter.sign_digest(key.key_id, digest)
            except HsmUnavailable:
                unavailable += 1
                continue
            verify_raw_signature(digest, signature, key.public_point)
            signed += 1
    finally:
        adapter.close()
    assert signed + unavailable == 200
    # A sign fails only when the try and its one retry both draw a fault (rate 0.3 squared, about 9%).
    assert signed > 100
    assert unavailable > 0
    assert faults.injected_faults > unavailable


# python-pkcs11 finishes a search object left over from before C_Finalize in its destructor, where the
# "not initialized" answer can only be reported as an unraisable exception; it is noise, not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_library_finalized_under_the_adapter_is_initialized_again(
    faulty_hsm: Pkcs11Hsm, faults: SignFaults, softhsm: SoftHsmSetup
) -> None:
    key = faulty_hsm.generate_secp256k1_key("finalized")
    pkcs11.lib(softhsm.module_path).finalize()

    _sign_and_verify(faulty_hsm, key.key_id, key.public_point)
    assert len(faults.sessions) == 2
    assert faulty_hsm.health().ok


def test_a_second_adapter_on_the_same_token_shares_the_login(
    softhsm: SoftHsmSetup, caplog: pytest.LogCaptureFixture
) -> None:
    first = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN)
    try:
        key = first.generate_secp256k1_key("shared-login")
        # The process is logged in already, so the second adapter's login is refused as a duplicate and
        # tolerated.
        with caplog.at_level(logging.INFO, logger="custody.hsm.pkcs11"):
            second = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN)
        assert "already logged in by this process" in caplog.text
        assert MAIN_PIN not in caplog.text
        _sign_and_verify(second, key.key_id, key.public_point)
        _sign_and_verify(first, key.key_id, key.public_point)
        # Closing the first adapter's session, which logged in, logs the whole process out; the second
        # adapter logs in again by itself.
        first.close()
        _sign_and_verify(second, key.key_id, key.public_point)
        second.close()
    finally:
        first.close()


def test_health_reports_a_logged_in_session(faulty_hsm: Pkcs11Hsm, faults: SignFaults) -> None:
    health = faulty_hsm.health()
    assert (health.library_loaded, health.token_present, health.logged_in) == (True, True, True)
    assert health.ok

    faults.sessions[-1].close()
    assert faulty_hsm.health().logged_in is True
    assert len(faults.sessions) == 2


def test_a_closed_adapter_reports_unhealthy_and_refuses_to_sign(faulty_hsm: Pkcs11Hsm) -> None:
    key = faulty_hsm.generate_secp256k1_key("closed")
    faulty_hsm.close()

    health = faulty_hsm.health()
    assert not health.ok
    assert "closed" in health.detail
    with pytest.raises(HsmUnavailable, match="closed"):
        faulty_hsm.sign_digest(key.key_id, secrets.token_bytes(32))

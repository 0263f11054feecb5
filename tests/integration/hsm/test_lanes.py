"""HSM lanes: worker processes that each load SoftHSM2 and log in, serving sign calls from many threads.

Every signature is checked with eth-account (secp256k1) or cryptography (Ed25519), never with custody's own
code. Workers are separate processes, so they read SOFTHSM2_CONF themselves; the fixture's configuration is
passed to them through ``environment``.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.domain.errors import ConfigurationError, HsmUnavailable, InvalidInput, KeyFrozen, NotFound
from custody.hsm.base import HsmHealth
from custody.hsm.lanes import LaneHsm
from custody.testing.hsm_faults import LaneSignFaults
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup

from .verify import verify_raw_signature


def _lanes(softhsm: SoftHsmSetup, lanes: int, **options: object) -> LaneHsm:
    return LaneHsm(
        softhsm.module_path,
        MAIN_TOKEN_LABEL,
        MAIN_PIN,
        lanes,
        environment={"SOFTHSM2_CONF": str(softhsm.main.config_path)},
        **options,  # type: ignore[arg-type]
    )


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# Shared by the tests that neither kill nor close it: starting four workers is most of a test's time.
@pytest.fixture(scope="module")
def four_lanes(softhsm: SoftHsmSetup) -> Iterator[LaneHsm]:
    hsm = _lanes(softhsm, 4)
    yield hsm
    hsm.close()


def test_signatures_from_every_lane_verify(four_lanes: LaneHsm) -> None:
    key = four_lanes.generate_secp256k1_key("lanes-every")
    pids = four_lanes.lane_pids()
    assert len(set(pids)) == 4 and None not in pids
    # One caller thread gets the lanes in turn (a lane goes back to the end of the free list), so 40 calls
    # are 10 on each lane.
    for _ in range(40):
        digest = secrets.token_bytes(32)
        verify_raw_signature(digest, four_lanes.sign_digest(key.key_id, digest), key.public_point)
    audit_key_id, audit_public_key = four_lanes.ensure_ed25519_key("lanes-audit")
    for index in range(8):
        data = f"checkpoint {index}".encode()
        Ed25519PublicKey.from_public_bytes(audit_public_key).verify(
            four_lanes.sign_ed25519(audit_key_id, data), data
        )
    assert four_lanes.lane_pids() == pids
    assert four_lanes.health().ok


def test_errors_in_a_worker_arrive_as_the_same_custody_error(four_lanes: LaneHsm) -> None:
    key = four_lanes.generate_secp256k1_key("lanes-errors")
    with pytest.raises(InvalidInput) as short_digest:
        four_lanes.sign_digest(key.key_id, b"\x01" * 31)
    assert short_digest.value.field == "digest"
    assert short_digest.value.message == "digest: a digest to sign is exactly 32 bytes; got 31"
    absent = bytes(16)
    with pytest.raises(NotFound) as unknown_key:
        four_lanes.sign_digest(absent, bytes(32))
    assert unknown_key.value.message == f"the HSM has no private key with id {absent.hex()}"
    # A refused call leaves its worker serving.
    digest = secrets.token_bytes(32)
    verify_raw_signature(digest, four_lanes.sign_digest(key.key_id, digest), key.public_point)


def test_signing_switched_off_in_the_token_is_refused_by_every_lane_until_switched_back_on(
    four_lanes: LaneHsm,
) -> None:
    """The switch is set through the in-process session; the lanes already hold the key object from earlier
    signatures, and each one must see the change at its next signature."""
    key = four_lanes.generate_secp256k1_key("lanes-frozen")
    for _ in range(8):
        digest = secrets.token_bytes(32)
        verify_raw_signature(digest, four_lanes.sign_digest(key.key_id, digest), key.public_point)
    four_lanes.set_signing_allowed(key.key_id, False)
    for _ in range(8):
        with pytest.raises(KeyFrozen, match="switched off in the token"):
            four_lanes.sign_digest(key.key_id, secrets.token_bytes(32))
    four_lanes.set_signing_allowed(key.key_id, True)
    for _ in range(8):
        digest = secrets.token_bytes(32)
        verify_raw_signature(digest, four_lanes.sign_digest(key.key_id, digest), key.public_point)


def test_eight_threads_sign_a_hundred_times_each_over_four_lanes(four_lanes: LaneHsm) -> None:
    keys = [four_lanes.generate_secp256k1_key(f"lanes-load-{index}") for index in range(2)]
    results: list[list[tuple[bytes, bytes, bytes]]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def sign_many(worker: int) -> None:
        try:
            start.wait()
            key = keys[worker % 2]
            for _ in range(100):
                digest = secrets.token_bytes(32)
                results[worker].append((digest, four_lanes.sign_digest(key.key_id, digest), key.public_point))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sign_many, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [len(signed) for signed in results] == [100] * 8
    for signed in results:
        for digest, signature, point in signed:
            verify_raw_signature(digest, signature, point)


def test_a_killed_worker_fails_only_its_own_call_and_its_lane_comes_back(softhsm: SoftHsmSetup) -> None:
    # Each sign call takes half a second in its worker, so the kill below lands in the middle of one.
    hsm = _lanes(softhsm, 2, session_wrapper_for_lane=LaneSignFaults(delay_seconds=0.5))
    try:
        key = hsm.generate_secp256k1_key("lanes-kill")
        victim = hsm.lane_pids()[0]
        assert victim is not None
        outcomes: list[tuple[bytes, bytes | BaseException]] = []
        lock = threading.Lock()

        def sign_once() -> None:
            digest = secrets.token_bytes(32)
            try:
                result: bytes | BaseException = hsm.sign_digest(key.key_id, digest)
            except BaseException as exc:
                result = exc
            with lock:
                outcomes.append((digest, result))

        # Four calls on two lanes: two run at once, two wait for a lane.
        threads = [threading.Thread(target=sign_once) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        os.kill(victim, signal.SIGKILL)
        for thread in threads:
            thread.join()

        failures = [result for _, result in outcomes if isinstance(result, BaseException)]
        assert len(failures) == 1
        assert isinstance(failures[0], HsmUnavailable)
        assert "stopped during the call" in str(failures[0])
        signed = [(digest, result) for digest, result in outcomes if isinstance(result, bytes)]
        assert len(signed) == 3
        for digest, signature in signed:
            verify_raw_signature(digest, signature, key.public_point)

        # The lane was started again with a new worker, and both lanes sign.
        new_pids = hsm.lane_pids()
        assert None not in new_pids and victim not in new_pids
        assert _gone(victim)
        for _ in range(2):
            digest = secrets.token_bytes(32)
            verify_raw_signature(digest, hsm.sign_digest(key.key_id, digest), key.public_point)
    finally:
        hsm.close()


def test_a_worker_that_stops_answering_is_killed_after_the_call_timeout(softhsm: SoftHsmSetup) -> None:
    hsm = _lanes(softhsm, 1, call_timeout_seconds=1.0)
    try:
        key = hsm.generate_secp256k1_key("lanes-hung")
        hung = hsm.lane_pids()[0]
        assert hung is not None
        # A stopped process stands for a worker stuck inside the library.
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(HsmUnavailable, match="did not answer within 1 seconds"):
            hsm.sign_digest(key.key_id, bytes(range(32)))
        assert _gone(hung)
        assert hsm.lane_pids()[0] not in (None, hung)
        digest = secrets.token_bytes(32)
        verify_raw_signature(digest, hsm.sign_digest(key.key_id, digest), key.public_point)
    finally:
        hsm.close()


def test_close_stops_every_worker_and_later_calls_are_unavailable(softhsm: SoftHsmSetup) -> None:
    hsm = _lanes(softhsm, 3)
    key = hsm.generate_secp256k1_key("lanes-close")
    hsm.sign_digest(key.key_id, bytes(range(32)))
    pids = [pid for pid in hsm.lane_pids() if pid is not None]
    assert len(pids) == 3

    hsm.close()
    hsm.close()

    assert hsm.lane_pids() == [None, None, None]
    assert all(_gone(pid) for pid in pids)
    assert not {child.pid for child in multiprocessing.active_children()} & set(pids)
    with pytest.raises(HsmUnavailable, match="has been closed"):
        hsm.sign_digest(key.key_id, bytes(32))


def test_a_worker_that_cannot_load_the_library_stops_the_start_with_its_error(
    softhsm: SoftHsmSetup, tmp_path: os.PathLike[str]
) -> None:
    before = {child.pid for child in multiprocessing.active_children()}
    missing_config = os.path.join(tmp_path, "no-such-softhsm2.conf")
    with pytest.raises(ConfigurationError, match="could not be loaded"):
        LaneHsm(
            softhsm.module_path,
            MAIN_TOKEN_LABEL,
            MAIN_PIN,
            2,
            environment={"SOFTHSM2_CONF": missing_config},
        )
    assert {child.pid for child in multiprocessing.active_children()} <= before


def test_injected_faults_in_the_workers_give_verified_signatures_or_unavailable(
    softhsm: SoftHsmSetup,
) -> None:
    hsm = _lanes(softhsm, 2, session_wrapper_for_lane=LaneSignFaults(fault_rate=0.3, seed=11))
    try:
        key = hsm.generate_secp256k1_key("lanes-faults")
        started_pids = hsm.lane_pids()
        signed = unavailable = 0
        for _ in range(200):
            digest = secrets.token_bytes(32)
            try:
                signature = hsm.sign_digest(key.key_id, digest)
            except HsmUnavailable:
                unavailable += 1
                continue
            verify_raw_signature(digest, signature, key.public_point)
            signed += 1
        pids = hsm.lane_pids()
    finally:
        hsm.close()
    assert signed + unavailable == 200
    # Device and general errors (half the faults) fail at once, session errors only when the retry fails too.
    assert unavailable > 0
    assert signed > 100
    # Faults are answers from the HSM, not deaths: the same workers served every call.
    assert pids == started_pids


def test_close_lets_a_call_in_flight_finish_first(softhsm: SoftHsmSetup) -> None:
    hsm = _lanes(softhsm, 1, session_wrapper_for_lane=LaneSignFaults(delay_seconds=0.3))
    key = hsm.generate_secp256k1_key("lanes-close-in-flight")
    pid = hsm.lane_pids()[0]
    assert pid is not None
    digest = secrets.token_bytes(32)
    outcome: list[bytes | BaseException] = []

    def sign() -> None:
        try:
            outcome.append(hsm.sign_digest(key.key_id, digest))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=sign)
    caller.start()
    time.sleep(0.1)
    hsm.close()
    caller.join()

    assert len(outcome) == 1 and isinstance(outcome[0], bytes), outcome
    verify_raw_signature(digest, outcome[0], key.public_point)
    assert _gone(pid)


def test_health_fails_while_every_lane_is_down_and_recovers_with_the_next_call(softhsm: SoftHsmSetup) -> None:
    hsm = _lanes(softhsm, 2)
    try:
        key = hsm.generate_secp256k1_key("lanes-health")
        assert hsm.health().ok
        first, second = (pid for pid in hsm.lane_pids() if pid is not None)
        os.kill(first, signal.SIGKILL)
        one_down = _health_once(hsm, lambda health: "are down" in health.detail)
        assert one_down.ok
        os.kill(second, signal.SIGKILL)
        all_down = _health_once(hsm, lambda health: not health.ok)
        assert not all_down.ok
        assert all_down.detail == "none of the 2 HSM lanes is running"
        digest = bytes(range(32))
        verify_raw_signature(digest, hsm.sign_digest(key.key_id, digest), key.public_point)
        assert hsm.health().ok
    finally:
        hsm.close()


def _health_once(hsm: LaneHsm, condition: Callable[[HsmHealth], bool]) -> HsmHealth:
    """The health report once ``condition`` holds; a killed worker takes a moment to be seen as gone."""
    deadline = time.monotonic() + 10
    health = hsm.health()
    while not condition(health) and time.monotonic() < deadline:
        time.sleep(0.05)
        health = hsm.health()
    return health

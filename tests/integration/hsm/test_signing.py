"""Signatures from the real token, each verified independently with eth-account."""

from __future__ import annotations

import secrets
import threading

from custody.hsm.pkcs11 import Pkcs11Hsm

from .verify import verify_raw_signature


def test_a_thousand_signatures_over_random_digests_all_verify(hsm: Pkcs11Hsm) -> None:
    key = hsm.generate_secp256k1_key("thousand")
    high_s_count = 0
    recovery_ids = set()
    for _ in range(1000):
        digest = secrets.token_bytes(32)
        verified = verify_raw_signature(digest, hsm.sign_digest(key.key_id, digest), key.public_point)
        high_s_count += verified.s_was_high
        recovery_ids.add(verified.recovery_id)
    # CKM_ECDSA does not normalize s, so about half come back high; outside 350..650 would mean the test's
    # normalization path is not being exercised (the chance for a fair coin is below 1e-20).
    assert 350 <= high_s_count <= 650
    assert recovery_ids == {0, 1}


def test_eight_threads_signing_through_one_adapter_do_not_crash(hsm: Pkcs11Hsm) -> None:
    keys = [hsm.generate_secp256k1_key(f"thread-{index}") for index in range(2)]
    results: list[list[tuple[bytes, bytes, bytes]]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def sign_many(worker: int) -> None:
        try:
            start.wait()
            key = keys[worker % len(keys)]
            for _ in range(200):
                digest = secrets.token_bytes(32)
                results[worker].append((digest, hsm.sign_digest(key.key_id, digest), key.public_point))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=sign_many, args=(index,)) for index in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert [len(signed) for signed in results] == [200] * 8
    for signed in results:
        for digest, signature, point in signed:
            verify_raw_signature(digest, signature, point)

"""HSM faults under load: the real application, a real token, faults injected into C_Sign.

custody is built in-process from its real parts: a SQLite file, SoftHSM2 through Pkcs11Hsm, and the
development policy. The wrapper of custody.testing.hsm_faults makes one sign call in five fail with a mix of
session closed, device removed, device error and general error while 200 transactions are submitted at once. Every
call must end signed (with a transaction eth-account recovers to the key's address) or with UNAVAILABLE;
the store must hold no SIGNED request without a good signature and no request stuck in APPROVED; the audit
chain must verify; and once the faults stop, signing works again without a restart. A request whose end
could not be recorded either (every write seals the audit log's head in the same HSM) keeps its approval, and
the worker signs it once its claim lapses: nothing the policy allowed is lost.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import rlp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_utils.crypto import keccak

from custody.app.anchor import retire_token_state, token_state
from custody.app.custody import Custody, utc_now
from custody.app.signing import SIGNING_LEASE
from custody.domain.errors import HsmUnavailable
from custody.domain.keys import Key
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState, SigningRequest
from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.policy_file import DEV_APPROVERS, dev_policy_toml
from custody.store import open_store
from custody.store.base import Store
from custody.testing.hsm_faults import TRANSIENT_FAULTS, SignFaults
from tests.integration.store.conftest import BACKENDS
from tests.integration.store.postgres_databases import postgres_database
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup

from .verify import SECP256K1_ORDER

ADMIN = Principal(name="admin", roles=frozenset({Role.ADMIN}))
BACKEND = Principal(name="backend", roles=frozenset({Role.REQUESTER}), keys=frozenset({"ops"}))
AUDITOR = Principal(name="auditor", roles=frozenset({Role.AUDITOR}))
CONCURRENT_REQUESTS = 200
RECOVERY_REQUESTS = 20


class ShiftedClock:
    """The real time, moved forward by the test to let claims lapse."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return utc_now() + self.shift


@dataclass
class Application:
    custody: Custody
    store: Store
    faults: SignFaults
    key: Key
    clock: ShiftedClock


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The application's database: a SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(params=[False, True], ids=["two-transactions", "sign-in-write-transaction"])
def sign_in_write_transaction(request: pytest.FixtureRequest) -> bool:
    """Signing after the claim commits, or inside the transaction that records the request."""
    return bool(request.param)


@pytest.fixture
def application(
    softhsm: SoftHsmSetup, database_url: str, tmp_path: Path, sign_in_write_transaction: bool
) -> Iterator[Application]:
    faults = SignFaults(seed=20250105)
    hsm = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN, session_wrapper=faults)
    store = open_store(database_url, tmp_path)
    # The session's token still holds the sealed state of the last test's database, which the daemon refuses
    # to adopt; it is retired as an operator who starts over on purpose retires it.
    retire_token_state(hsm, token_state(hsm).seal_key_ids)
    clock = ShiftedClock()
    custody = Custody(store=store, hsm=hsm, clock=clock, sign_in_write_transaction=sign_in_write_transaction)
    try:
        custody.audit.open()
        approver_keys = {
            name: Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
            for name in DEV_APPROVERS
        }
        custody.policy.seed(dev_policy_toml(approver_keys), "dev policy")
        key = custody.keys.create_key(ADMIN, "ops")
        yield Application(custody=custody, store=store, faults=faults, key=key, clock=clock)
    finally:
        custody.close()


def eip1559(nonce: int) -> bytes:
    return json.dumps(
        {
            "type": 2,
            "chainId": 11155111,
            "nonce": nonce,
            "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "value": 10**15,
            "gas": 21000,
            "maxFeePerGas": 30 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "data": "0x",
            "accessList": [],
        }
    ).encode()


def check_signed(request: SigningRequest, key: Key, nonce: int) -> None:
    """The request holds a signed EIP-1559 transaction for ``nonce`` that recovers to the key's address."""
    assert request.state is RequestState.SIGNED
    assert request.result is not None and request.result.signed_tx is not None
    signed_tx = request.result.signed_tx
    assert Account.recover_transaction(signed_tx) == key.address
    assert request.result.tx_hash == keccak(signed_tx)
    assert signed_tx[0] == 2
    fields = rlp.decode(signed_tx[1:])
    assert int.from_bytes(fields[1], "big") == nonce
    assert 0 < int.from_bytes(fields[11], "big") <= SECP256K1_ORDER // 2


def stored_nonce(request: SigningRequest) -> int:
    return int(json.loads(request.payload)["nonce"], 16)


def test_two_hundred_requests_under_hsm_faults_end_signed_or_unavailable_and_service_recovers(
    application: Application,
) -> None:
    custody, key = application.custody, application.key
    application.faults.fail_at_rate(0.2, TRANSIENT_FAULTS)
    outcomes: dict[int, SigningRequest | BaseException] = {}
    lock = threading.Lock()
    start = threading.Barrier(CONCURRENT_REQUESTS)

    def submit(nonce: int) -> None:
        start.wait()
        try:
            outcome: SigningRequest | BaseException = custody.signing.submit(
                BACKEND, "ops", PayloadKind.TRANSACTION, eip1559(nonce)
            )
        except BaseException as exc:
            outcome = exc
        with lock:
            outcomes[nonce] = outcome

    threads = [threading.Thread(target=submit, args=(nonce,)) for nonce in range(CONCURRENT_REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Every call ended signed or with UNAVAILABLE, and nothing else.
    assert len(outcomes) == CONCURRENT_REQUESTS
    unavailable = {nonce for nonce, outcome in outcomes.items() if isinstance(outcome, BaseException)}
    unexpected = [outcome for outcome in outcomes.values() if isinstance(outcome, BaseException)]
    assert all(isinstance(error, HsmUnavailable) for error in unexpected), unexpected
    for nonce, outcome in outcomes.items():
        if nonce not in unavailable:
            assert isinstance(outcome, SigningRequest)
            check_signed(outcome, key, nonce)
    signed_count = CONCURRENT_REQUESTS - len(unavailable)
    print(
        f"\nHSM faults under load: {signed_count} signed, {len(unavailable)} unavailable;"
        f" {application.faults.injected_faults} faults injected in {application.faults.sign_calls} sign calls"
    )
    # With one call in five failing, faults certainly struck, and many calls still signed. A request makes about
    # five HSM calls (its seal, its approval's seal, the signature and one audit head seal per write transaction),
    # a session error is retried once on a fresh session and a device or general error is reported at once, so
    # about 0.88 ** 5 = 0.53 of the requests are expected to sign: a quarter is far below any unlucky draw, and
    # far above what a fault that stuck (a session never reopened) would leave.
    assert application.faults.injected_faults > 0
    assert unavailable
    assert signed_count > CONCURRENT_REQUESTS // 4

    # The faults stop, and the worker's next pass after the claims lapse signs what kept its approval.
    application.faults.fail_at_rate(0.0)
    application.clock.shift = SIGNING_LEASE + timedelta(seconds=1)
    signed_later = custody.signing.sign_due(limit=1000)

    # The store agrees with what the callers were told: SIGNED only with a verifying signature; for every call
    # that raised, FAILED, or SIGNED by the worker (never left APPROVED). A call whose seal the HSM failed to
    # compute (sealing is an HMAC in the HSM, made in the transaction that records the request) stored nothing.
    stored = application.store.list_requests(key_label="ops", limit=1000)
    never_stored = unavailable - {stored_nonce(request) for request in stored}
    assert len(stored) + len(never_stored) == CONCURRENT_REQUESTS
    failed = 0
    for request in stored:
        nonce = stored_nonce(request)
        if nonce in unavailable and request.state is not RequestState.SIGNED:
            assert request.state is RequestState.FAILED
            assert request.result is None
            assert request.error and "HSM" in request.error
            failed += 1
        else:
            check_signed(request, key, nonce)
    assert failed + signed_later == len(unavailable) - len(never_stored)

    # The audit log recorded each outcome exactly once and its chain verifies.
    kinds = Counter(event.kind for event in application.store.iter_audit_events())
    assert kinds["request.submitted"] == len(stored)
    assert kinds["request.signed"] == signed_count + signed_later
    assert kinds["request.failed"] == failed
    assert custody.audit.verify_head().ok

    # The same running application signs every new request.
    for nonce in range(CONCURRENT_REQUESTS, CONCURRENT_REQUESTS + RECOVERY_REQUESTS):
        check_signed(
            custody.signing.submit(BACKEND, "ops", PayloadKind.TRANSACTION, eip1559(nonce)), key, nonce
        )
    assert custody.audit.checkpoint() is not None
    verification = custody.audit.verify_chain(AUDITOR)
    assert verification.ok, verification.problem
    assert verification.checkpoints_checked >= 1
    assert custody.health().serving

"""An HSM outage at the moment a quorum completes: the approvers' work is kept and the signature follows later.

The real application in-process (a SQLite file, SoftHSM2 through Pkcs11Hsm with the fault-injecting session
wrapper, the development policy with approver keys made here, a clock the test moves). bob's approval
completes the treasury quorum and the HSM goes out right after it is recorded: bob is told the HSM is
unavailable, his approval stays counted (approval.counted, request.approved, and no approval.refused or
request.failed in the audit log) and the request stays APPROVED. Once the HSM works again and the signing
claim has lapsed, the worker signs it, and eth-account recovers the key's address from the signed transaction.

A request the policy signs at once whose HSM failure cannot be recorded either (marking it FAILED is a write,
and every write seals the audit log's head in the HSM) keeps its approval the same way and is signed later.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from pkcs11.exceptions import DeviceError, DeviceRemoved

from custody.app.anchor import retire_token_state, token_state
from custody.app.custody import BackgroundWorker, Custody
from custody.app.signing import SIGNING_LEASE
from custody.domain.approvals import ApprovalStatement
from custody.domain.errors import HsmUnavailable
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState, SigningRequest, Verdict
from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.policy_file import DEV_APPROVERS, dev_policy_toml
from custody.store import open_store
from custody.testing.hsm_faults import SignFaults
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup

ADMIN = Principal(name="admin", roles=frozenset({Role.ADMIN}))
BACKEND = Principal(name="backend", roles=frozenset({Role.REQUESTER}), keys=frozenset({"treasury"}))
TRANSACTION = {
    "type": 2,
    "chainId": 11155111,
    "nonce": 3,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 10**17,
    "gas": 21000,
    "maxFeePerGas": 30 * 10**9,
    "maxPriorityFeePerGas": 10**9,
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(softhsm: SoftHsmSetup, tmp_path: Path) -> Iterator[tuple[Custody, SignFaults, Clock, dict]]:
    faults = SignFaults(seed=7)
    clock = Clock()
    hsm = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN, session_wrapper=faults)
    # The session's token still holds the sealed state of the last test's database, which the daemon refuses
    # to adopt; it is retired as an operator who starts over on purpose retires it.
    retire_token_state(hsm, token_state(hsm).seal_key_ids)
    custody = Custody(store=open_store(f"sqlite:///{tmp_path / 'state.db'}", tmp_path), hsm=hsm, clock=clock)
    try:
        custody.audit.open()
        approver_keys = {name: Ed25519PrivateKey.generate() for name in DEV_APPROVERS}
        public_keys = {
            name: key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
            for name, key in approver_keys.items()
        }
        custody.policy.seed(dev_policy_toml(public_keys), "dev policy")
        custody.keys.create_key(ADMIN, "treasury")
        yield custody, faults, clock, approver_keys
    finally:
        custody.close()


def approve(
    custody: Custody, clock: Clock, request: SigningRequest, name: str, key: Ed25519PrivateKey
) -> SigningRequest:
    statement = ApprovalStatement.for_request(
        request, approver=name, decision=Verdict.APPROVE, expires_at=int(clock.now.timestamp()) + 600
    ).to_bytes()
    approver = Principal(name=name, roles=frozenset({Role.APPROVER}))
    return custody.approvals.approve(approver, request.request_id, statement, key.sign(statement))


def test_a_quorum_completed_during_an_hsm_outage_is_signed_once_the_hsm_is_back(
    world: tuple[Custody, SignFaults, Clock, dict],
) -> None:
    custody, faults, clock, keys = world
    key = custody.keys.get_key(ADMIN, "treasury")
    request = custody.signing.submit(
        BACKEND, "treasury", PayloadKind.TRANSACTION, json.dumps(TRANSACTION).encode()
    )
    assert request.state is RequestState.PENDING_APPROVAL
    approve(custody, clock, request, "alice", keys["alice"])

    # The HSM goes out right after bob's approval is recorded (that write transaction makes two HSM calls:
    # the approved request's seal and the audit head's seal), so the signature is what meets the outage.
    faults.fail_next(10_000, DeviceRemoved, after=2)
    with pytest.raises(HsmUnavailable, match="stays APPROVED"):
        approve(custody, clock, request, "bob", keys["bob"])
    assert custody.signing.get(ADMIN, request.request_id).state is RequestState.APPROVED
    kinds = [
        event.kind for event in custody.audit.list_events(ADMIN) if event.request_id == request.request_id
    ]
    assert kinds.count("approval.counted") == 2
    assert "request.approved" in kinds
    assert "approval.refused" not in kinds and "request.failed" not in kinds

    # While the HSM is still out, the worker's attempts leave the request APPROVED.
    clock.now += SIGNING_LEASE + timedelta(seconds=1)
    worker = BackgroundWorker(custody.signing, custody.audit, interval_seconds=1)
    worker.run_once()
    assert custody.signing.get(ADMIN, request.request_id).state is RequestState.APPROVED

    faults.fail_next(0)
    clock.now += SIGNING_LEASE + timedelta(seconds=1)
    worker.run_once()
    signed = custody.signing.get(ADMIN, request.request_id)
    assert signed.state is RequestState.SIGNED
    assert signed.result is not None and signed.result.signed_tx is not None
    assert Account.recover_transaction(signed.result.signed_tx) == key.address
    kinds = [
        event.kind for event in custody.audit.list_events(ADMIN) if event.request_id == request.request_id
    ]
    assert kinds.count("request.signed") == 1


def test_an_auto_signed_request_whose_failure_cannot_be_recorded_is_signed_once_the_hsm_is_back(
    world: tuple[Custody, SignFaults, Clock, dict],
) -> None:
    custody, faults, clock, _ = world
    requester = Principal(name="backend", roles=frozenset({Role.REQUESTER}), keys=frozenset({"ops"}))
    key = custody.keys.create_key(ADMIN, "ops")
    payload = json.dumps({**TRANSACTION, "value": 10**15}).encode()

    # The submission's write transaction makes three HSM calls (the request's seal, its approval's seal and
    # the audit head's seal); the fourth is the signature and the fifth the head seal of the transaction that
    # would mark the request FAILED.
    faults.fail_next(2, DeviceError, after=3)
    with pytest.raises(HsmUnavailable, match="could not be marked FAILED either, stays APPROVED") as raised:
        custody.signing.submit(requester, "ops", PayloadKind.TRANSACTION, payload)
    assert faults.injected_faults == 2
    [request] = custody.signing.list(ADMIN, key_label="ops")
    assert request.request_id in str(raised.value)
    assert request.state is RequestState.APPROVED and request.result is None

    # Once the HSM is back and the claim has lapsed, the worker signs it; the requester finds it signed.
    clock.now += SIGNING_LEASE + timedelta(seconds=1)
    BackgroundWorker(custody.signing, custody.audit, interval_seconds=1).run_once()
    signed = custody.signing.get(requester, request.request_id)
    assert signed.state is RequestState.SIGNED and signed.result is not None
    assert Account.recover_transaction(signed.result.signed_tx) == key.address
    kinds = [
        event.kind for event in custody.audit.list_events(ADMIN) if event.request_id == request.request_id
    ]
    assert kinds.count("request.signed") == 1 and "request.failed" not in kinds
    assert custody.audit.verify_head().ok

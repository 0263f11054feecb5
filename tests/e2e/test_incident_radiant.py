"""Radiant Capital, October 2024: malware on signers' machines showed routine Safe transactions while their
hardware wallets signed a transferOwnership of the lending pools' provider to the attacker, who then drained them.

Here a transferOwnership rides in a MultiSend batch of the example Safe among routine payments, as execTransaction
calldata and as the SafeTx an owner signs: it waits for the admin quorum, with OWNERSHIP TRANSFER on the
approver's screen, and is never decided by the treasury's 2 of 3. A real daemon; every signature obtained is
checked with eth-account.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import (
    ADMIN_QUORUM,
    ATTACKER,
    EXAMPLE_SAFE,
    MULTISEND_CALL_ONLY,
    ONE_ETHER,
    PAYEE,
    SAFE_CALL,
    SAFE_DELEGATECALL,
    USDC,
    erc20_transfer,
    exec_transaction,
    multisend,
    safe_tx,
    transaction,
    transfer_ownership,
)

from .conftest import Databases, Nonces
from .incident_support import (
    Custody,
    assert_transaction_signed_by,
    assert_typed_data_signed_by,
    decision_of,
    running_custody,
)

# Invented for this test: the contract whose owner controls the lending pools (Radiant's was its
# LendingPoolAddressesProvider).
POOL_PROVIDER = "0x28E1b416349911dBfD4942c3689226589574FD04"

# Two routine payments with the ownership transfer between them, each call by CALL; the Safe runs the batch
# by DELEGATECALL to MultiSendCallOnly, the one contract the development policy lets the admins run that way.
BATCH = multisend(
    [
        (SAFE_CALL, USDC, 0, erc20_transfer(PAYEE, 25_000 * 10**6)),
        (SAFE_CALL, POOL_PROVIDER, 0, transfer_ownership(ATTACKER)),
        (SAFE_CALL, PAYEE, ONE_ETHER, b""),
    ]
)


def as_exec_transaction(nonce: int) -> tuple[int, dict[str, Any]]:
    calldata = exec_transaction(MULTISEND_CALL_ONLY, BATCH, SAFE_DELEGATECALL)
    return pb.PAYLOAD_KIND_TRANSACTION, transaction(EXAMPLE_SAFE, nonce, calldata)


def as_safe_tx(nonce: int) -> tuple[int, dict[str, Any]]:
    return pb.PAYLOAD_KIND_TYPED_DATA, safe_tx(MULTISEND_CALL_ONLY, BATCH, SAFE_DELEGATECALL, nonce=nonce)


PAYLOADS: dict[str, tuple[Callable[[int], tuple[int, dict[str, Any]]], str]] = {
    "exec-transaction": (as_exec_transaction, "treasury-admin-transactions"),
    "safe-tx": (as_safe_tx, "treasury-admin-safe-transactions"),
}


@pytest.fixture(scope="module")
def custody(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Custody]:
    with running_custody(tmp_path_factory, databases, "radiant") as running:
        yield running


@pytest.mark.parametrize("form", list(PAYLOADS))
def test_an_ownership_transfer_in_a_multisend_waits_for_the_admin_quorum(
    custody: Custody, nonces: Nonces, form: str
) -> None:
    build, rule = PAYLOADS[form]
    request = custody.submit("treasury", *build(next(nonces)))
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request
    assert decision_of(request) == ("approve", rule, ADMIN_QUORUM)
    # The treasury's rules, whose quorum is 2 of the treasury, refused it for the ownership transfer.
    explanation = custody.explain(request.request_id)
    tried = {trace.rule: trace for trace in explanation.rules}
    for treasury_rule in ("treasury-transactions", "treasury-safe-transactions"):
        assert not tried[treasury_rule].matched
    assert tried[rule].matched


def test_the_approvers_screen_shows_the_ownership_transfer_and_the_admins_sign_it(
    custody: Custody, nonces: Nonces
) -> None:
    kind, payload = as_exec_transaction(next(nonces))
    request = custody.submit("treasury", kind, payload)
    approved_by_alice = custody.cli("alice", "approve", "--yes", request.request_id)
    screen = approved_by_alice.stdout
    flags = [line for line in screen.splitlines() if line.startswith("  !!! ")]
    assert any(line.startswith("  !!! OWNERSHIP TRANSFER (intent 1.1.2):") for line in flags), screen
    assert any(line.startswith("  !!! DELEGATECALL (intent 1") for line in flags), screen
    # The flags come before the payload: nothing the approver scrolls past hides them.
    assert screen.index("OWNERSHIP TRANSFER") < screen.index("payload hash")
    assert re.search(rf"\n +new owner +{ATTACKER}\n", screen), screen
    assert re.search(rf"\n +contract +{POOL_PROVIDER}\n", screen), screen
    assert "1 of 2 from admins" in screen
    # dave is an admin and not of the treasury: his approval completes the quorum, because it is the
    # admins' quorum that this request needs.
    signed = custody.approvers.approve(custody.get(request.request_id), "dave")
    assert_transaction_signed_by(signed, custody.addresses["treasury"])
    assert sorted(approval.approver for approval in signed.approvals) == ["alice", "dave"]


def test_the_signed_safe_tx_is_the_treasury_keys_signature(custody: Custody, nonces: Nonces) -> None:
    kind, payload = as_safe_tx(next(nonces))
    request = custody.submit("treasury", kind, payload)
    custody.approvers.approve(request, "carol")
    signed = custody.approvers.approve(request, "dave")
    assert_typed_data_signed_by(signed, payload, custody.addresses["treasury"])

"""Bybit, February 2025: the signers of Bybit's cold-wallet Safe approved what their screens showed as a routine
transfer; the SafeTx they signed ran the attacker's contract by DELEGATECALL, which replaced the Safe's code.

The same SafeTx, for the development policy's example Safe, is denied to every key, and the approver's screen
shows the DELEGATECALL first, above the transfer the payload pretends to be; the same transfer by CALL is what
the treasury rules are for. A real daemon; every signature obtained is checked with eth-account.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import (
    EXAMPLE_SAFE,
    PAYEE,
    SAFE_CALL,
    SAFE_DELEGATECALL,
    TREASURY_QUORUM,
    USDC,
    erc20_transfer,
    exec_transaction,
    safe_tx,
    transaction,
)

from .conftest import Databases, Nonces
from .incident_support import (
    Custody,
    assert_denied_naming,
    assert_typed_data_signed_by,
    decision_of,
    running_custody,
)

# The attack's call as Etherscan shows it and Sygnia's and NCC Group's analyses decode it (Ethereum mainnet,
# block 21895238): the Safe ran 0x9622... by DELEGATECALL with what reads as transfer(0xbDd0..., 0); that
# contract wrote its "recipient" into the Safe's storage slot 0, making 0xbDd0... the Safe's code.
BYBIT_DELEGATE = "0x96221423681A6d52E184D440a8eFCEbB105C7242"
BYBIT_NEW_MASTER_COPY = "0xbDd077f651EBe7f7b3cE16fe5F2b025BE2969516"
LOOKS_LIKE_A_TRANSFER = erc20_transfer(BYBIT_NEW_MASTER_COPY, 0)


@pytest.fixture(scope="module")
def custody(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Custody]:
    with running_custody(tmp_path_factory, databases, "bybit") as running:
        yield running


def bybit_safe_tx() -> dict[str, Any]:
    return safe_tx(BYBIT_DELEGATE, LOOKS_LIKE_A_TRANSFER, SAFE_DELEGATECALL, nonce=71)


@pytest.mark.parametrize("key", ["treasury", "ops"])
def test_the_bybit_safe_tx_is_denied(custody: Custody, key: str) -> None:
    request = custody.submit(key, pb.PAYLOAD_KIND_TYPED_DATA, bybit_safe_tx())
    assert_denied_naming(custody, request, f"safe_transaction 'SafeTx' on {EXAMPLE_SAFE}")
    if key == "treasury":
        # The treasury's SafeTx rule names this Safe, so what refuses it there is the operation itself.
        assert_denied_naming(custody, request, "runs code by DELEGATECALL")


def test_the_bybit_call_sent_as_exec_transaction_is_denied(custody: Custody, nonces: Nonces) -> None:
    calldata = exec_transaction(BYBIT_DELEGATE, LOOKS_LIKE_A_TRANSFER, SAFE_DELEGATECALL)
    request = custody.submit(
        "treasury", pb.PAYLOAD_KIND_TRANSACTION, transaction(EXAMPLE_SAFE, next(nonces), calldata)
    )
    assert_denied_naming(custody, request, "runs code by DELEGATECALL")


def test_the_approvers_screen_shows_the_delegatecall_and_nothing_can_be_approved(custody: Custody) -> None:
    request = custody.submit("treasury", pb.PAYLOAD_KIND_TYPED_DATA, bybit_safe_tx())
    screen = custody.cli("alice", "requests", "show", request.request_id).stdout
    # The first line says DELEGATECALL, for the Safe transaction and for the call it makes; the call that
    # reads as a token transfer carries the flag on its own heading, and names the contract run as the Safe.
    assert screen.splitlines()[0].startswith("!!! DELEGATECALL (intent 1, 1.1):"), screen
    assert "[1.1] ERC-20 token transfer  !!! DELEGATECALL !!!" in screen
    assert re.search(rf"\n +delegate +{BYBIT_DELEGATE}\n", screen), screen
    assert re.search(rf"\n +recipient +{BYBIT_NEW_MASTER_COPY}\n", screen), screen
    refused = custody.cli("alice", "approve", "--yes", request.request_id, check=False)
    assert refused.returncode != 0
    assert "DENIED, not waiting for approvals" in refused.stderr
    assert custody.get(request.request_id).state == pb.REQUEST_STATE_DENIED


def test_the_transfer_it_pretended_to_be_signs_with_two_of_the_treasury(custody: Custody) -> None:
    routine = safe_tx(USDC, erc20_transfer(PAYEE, 30_000 * 10**6), SAFE_CALL, nonce=72)
    request = custody.submit("treasury", pb.PAYLOAD_KIND_TYPED_DATA, routine)
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request
    assert decision_of(request) == ("approve", "treasury-safe-transactions", TREASURY_QUORUM)
    custody.approvers.approve(request, "alice")
    signed = custody.approvers.approve(request, "bob")
    assert_typed_data_signed_by(signed, routine, custody.addresses["treasury"])

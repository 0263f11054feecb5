"""A Safe on a real local chain (anvil) whose owners include custody's treasury key: the SafeTx custody signs,
once two treasury approvers approved it with the CLI, is what the Safe contract itself accepts and executes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account.messages import encode_typed_data

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import SAFE_CALL, ZERO_ADDRESS, erc20_transfer, function_call, safe_tx

from .chain_support import (
    CHAIN_ID,
    EXEC_TRANSACTION,
    ToolSetting,
    assert_message_signed_by,
    safe_nonce,
    safe_signatures,
    tool_setting,
)
from .conftest import Databases

# Invented for these tests: who receives what the Safe sends.
PAYEE = "0x000000000000000000000000000000000000bEEF"


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[ToolSetting]:
    with tool_setting(tmp_path_factory, databases, "tools-safe") as made:
        yield made


def test_the_safe_executes_a_token_transfer_its_treasury_owner_signed_through_custody(
    setting: ToolSetting,
) -> None:
    chain, custody, safe, token = setting.chain, setting.custody, setting.safe, setting.token
    treasury = custody.addresses["treasury"]
    amount = 123_456
    nonce = safe_nonce(chain, safe)
    transfer = erc20_transfer(PAYEE, amount)
    safe_transaction = safe_tx(token, transfer, SAFE_CALL, safe=safe, nonce=nonce, chain_id=CHAIN_ID)

    request = custody.submit("treasury", pb.PAYLOAD_KIND_TYPED_DATA, safe_transaction)
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request
    assert request.decision.rule == "treasury-safe-transactions"
    for approver in ("alice", "bob"):
        custody.cli(approver, "approve", "--yes", request.request_id)
    signed = custody.get(request.request_id)
    assert signed.state == pb.REQUEST_STATE_SIGNED, signed
    signable = encode_typed_data(full_message=safe_transaction)
    assert_message_signed_by(signable, bytes(signed.signature), treasury)

    # The Safe's other owner signs the same SafeTx locally; the contract checks both signatures itself.
    co_signature = bytes(setting.co_owner.sign_message(signable).signature)
    signatures = safe_signatures({treasury: bytes(signed.signature), setting.co_owner.address: co_signature})
    safe_balance, payee_balance = chain.token_balance(token, safe), chain.token_balance(token, PAYEE)
    chain.transact(
        safe,
        function_call(
            EXEC_TRANSACTION,
            [token, 0, transfer, SAFE_CALL, 0, 0, 0, ZERO_ADDRESS, ZERO_ADDRESS, signatures],
        ),
    )
    assert chain.token_balance(token, safe) == safe_balance - amount
    assert chain.token_balance(token, PAYEE) == payee_balance + amount
    assert safe_nonce(chain, safe) == nonce + 1

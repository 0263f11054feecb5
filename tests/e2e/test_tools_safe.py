"""A Safe on a real local chain (anvil) whose owners include custody's treasury key: the SafeTx custody signs,
once two treasury approvers approved it with the CLI, is what the Safe contract itself accepts and executes.
The SafeTx reaches custody over gRPC, as a Python backend sends it, and as eth_signTypedData_v4 through the
JSON-RPC endpoint, as a wallet script sends it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account.messages import encode_typed_data

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import SAFE_CALL, ZERO_ADDRESS, erc20_transfer, function_call, safe_tx

from .chain_support import (
    CHAIN_ID,
    EXEC_TRANSACTION,
    ONE_ETHER,
    RpcError,
    ToolSetting,
    assert_message_signed_by,
    safe_nonce,
    safe_signatures,
    tool_setting,
)
from .conftest import Databases

# Invented for these tests: who receives what the Safe sends.
PAYEE = "0x000000000000000000000000000000000000bEEF"
PENDING_APPROVAL = -32010


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[ToolSetting]:
    with tool_setting(tmp_path_factory, databases, "tools-safe") as made:
        yield made


def execute(setting: ToolSetting, safe_transaction: dict[str, Any], treasury_signature: bytes) -> None:
    """Check the treasury's signature with eth-account, add the Safe's other owner's (a local key), and have
    the Safe execute the transaction: the contract checks both signatures itself."""
    treasury = setting.addresses["treasury"]
    signable = encode_typed_data(full_message=safe_transaction)
    assert_message_signed_by(signable, treasury_signature, treasury)
    co_signature = bytes(setting.co_owner.sign_message(signable).signature)
    signatures = safe_signatures({treasury: treasury_signature, setting.co_owner.address: co_signature})
    message = safe_transaction["message"]
    setting.chain.transact(
        setting.safe,
        function_call(
            EXEC_TRANSACTION,
            [
                message["to"],
                int(message["value"]),
                bytes.fromhex(message["data"][2:]),
                message["operation"],
                0,
                0,
                0,
                ZERO_ADDRESS,
                ZERO_ADDRESS,
                signatures,
            ],
        ),
    )


def test_the_safe_executes_a_token_transfer_its_treasury_owner_signed_through_custody_over_grpc(
    setting: ToolSetting,
) -> None:
    chain, custody, safe, token = setting.chain, setting.custody, setting.safe, setting.token
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

    safe_balance, payee_balance = chain.token_balance(token, safe), chain.token_balance(token, PAYEE)
    execute(setting, safe_transaction, bytes(signed.signature))
    assert chain.token_balance(token, safe) == safe_balance - amount
    assert chain.token_balance(token, PAYEE) == payee_balance + amount
    assert safe_nonce(chain, safe) == nonce + 1


def test_the_safe_sends_ether_its_treasury_owner_signed_through_the_json_rpc_endpoint(
    setting: ToolSetting,
) -> None:
    chain, custody, safe, endpoint = setting.chain, setting.custody, setting.safe, setting.endpoint
    treasury = setting.addresses["treasury"]
    amount = ONE_ETHER // 2
    nonce = safe_nonce(chain, safe)
    safe_transaction = safe_tx(PAYEE, b"", SAFE_CALL, value=amount, safe=safe, nonce=nonce, chain_id=CHAIN_ID)
    # As a wallet library sends it: the address, then the typed data as a JSON string.
    params = (treasury.lower(), json.dumps(safe_transaction))

    with pytest.raises(RpcError) as pending:
        endpoint.call("eth_signTypedData_v4", *params)
    assert pending.value.error["code"] == PENDING_APPROVAL, pending.value.error
    request_id = pending.value.error["data"]["request_id"]
    assert pending.value.error["data"]["state"] == "PENDING_APPROVAL"
    for approver in ("alice", "bob"):
        custody.cli(approver, "approve", "--yes", request_id)
    signature = bytes.fromhex(endpoint.call("eth_signTypedData_v4", *params).removeprefix("0x"))
    assert custody.get(request_id).state == pb.REQUEST_STATE_SIGNED

    safe_balance, payee_balance = chain.balance(safe), chain.balance(PAYEE)
    execute(setting, safe_transaction, signature)
    assert chain.balance(safe) == safe_balance - amount
    assert chain.balance(PAYEE) == payee_balance + amount
    assert safe_nonce(chain, safe) == nonce + 1

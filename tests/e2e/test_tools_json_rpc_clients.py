"""ethers v6, viem and Foundry's cast use custody as their remote signer through its JSON-RPC endpoint, unchanged,
on a real local chain (anvil): they send transactions that anvil mines, and sign messages and typed data that
they verify with their own recover functions. A treasury transaction answers "pending approval" to ethers
until two approvers approve it with the CLI; the same call then returns the signed transaction.

Every signature is verified again here with eth-account (the signer recovered, s low).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.messages import encode_defunct, encode_typed_data

from custody.api._gen import custody_pb2 as pb

from .chain_support import (
    CHAIN_ID,
    ONE_ETHER,
    ToolSetting,
    assert_message_signed_by,
    assert_mined_and_signed_by,
    assert_transaction_signed_by,
    foundry_binary,
    run_node_script,
    tool_setting,
)
from .conftest import Databases

# The EIP-712 "Mail" example, which the development policy lets the ops key sign at once.
MAIL_TYPED_DATA = json.loads((Path(__file__).parents[1] / "vectors" / "eip712_mail.json").read_text())[
    "typed_data"
]
# Invented for these tests: who receives the ether the tools send.
PAYEE = "0x000000000000000000000000000000000000bEEF"
PENDING_APPROVAL = -32010
POLICY_DENIED = -32011


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[ToolSetting]:
    with tool_setting(tmp_path_factory, databases, "tools-clients") as made:
        yield made


def node_client(setting: ToolSetting, script: str, action: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Run an action of tests/tools/SCRIPT (ethers_client.mjs, viem_client.mjs) against the endpoint."""
    document = json.dumps({"url": setting.endpoint.url, "chainId": CHAIN_ID, **fields})
    answer: dict[str, Any] = run_node_script(script, [action, document], setting.endpoint.node_environment())
    return answer


@pytest.mark.parametrize("script", ["ethers_client.mjs", "viem_client.mjs"])
def test_ethers_and_viem_send_ether_from_the_ops_key_and_anvil_mines_it(
    setting: ToolSetting, script: str
) -> None:
    chain, ops = setting.chain, setting.addresses["ops"]
    amount = ONE_ETHER // 100
    payee_before = chain.balance(PAYEE)
    sent = node_client(
        setting, script, "send-transaction", {"from": ops, "transaction": {"to": PAYEE, "value": str(amount)}}
    )
    assert sent["from"].lower() == ops.lower()
    assert sent["status"] in (1, "success")
    assert_mined_and_signed_by(chain, sent["hash"], ops)
    assert chain.balance(PAYEE) == payee_before + amount


@pytest.mark.parametrize("script", ["ethers_client.mjs", "viem_client.mjs"])
def test_ethers_and_viem_sign_a_message_and_typed_data_they_recover_to_the_ops_key(
    setting: ToolSetting, script: str
) -> None:
    ops = setting.addresses["ops"]
    text = f"Sign in to custody's tool tests with {script}"
    signed = node_client(setting, script, "sign-message", {"from": ops, "message": text})
    assert signed["recovered"] == ops
    assert_message_signed_by(encode_defunct(text=text), signed["signature"], ops)

    signed = node_client(setting, script, "sign-typed-data", {"from": ops, "typedData": MAIL_TYPED_DATA})
    assert signed["recovered"] == ops
    assert_message_signed_by(encode_typed_data(full_message=MAIL_TYPED_DATA), signed["signature"], ops)


def cast_send(setting: ToolSetting, sender: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`cast send --unlocked --from SENDER` through the endpoint, authenticated by the bearer token."""
    endpoint = setting.endpoint
    authorization = f"Authorization: Bearer {endpoint.token}"
    command = [str(foundry_binary("cast")), "send", "--unlocked", "--from", sender, "--rpc-url", endpoint.url]
    return subprocess.run(
        [*command, "--rpc-headers", authorization, "--json", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        # cast (Rust, rustls) trusts the certificates of SSL_CERT_FILE instead of the system's.
        env={**os.environ, "SSL_CERT_FILE": str(endpoint.ca_file), "FOUNDRY_DISABLE_NIGHTLY_WARNING": "1"},
        check=False,
    )


def test_cast_send_unlocked_sends_ether_from_the_ops_key_and_anvil_mines_it(setting: ToolSetting) -> None:
    chain, ops = setting.chain, setting.addresses["ops"]
    payee_before = chain.balance(PAYEE)
    result = cast_send(setting, ops, PAYEE, "--value", "0.01ether")
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)
    assert receipt["status"] == "0x1" and receipt["from"].lower() == ops.lower()
    assert_mined_and_signed_by(chain, receipt["transactionHash"], ops)
    assert chain.balance(PAYEE) == payee_before + ONE_ETHER // 100


def test_cast_shows_the_policy_denial_of_a_transfer_over_the_ops_limit_and_nothing_is_sent(
    setting: ToolSetting,
) -> None:
    chain, ops = setting.chain, setting.addresses["ops"]
    nonce_before, payee_before = chain.nonce(ops), chain.balance(PAYEE)
    # The development policy lets the ops key send at most 1 ether at once.
    result = cast_send(setting, ops, PAYEE, "--value", "2ether")
    assert result.returncode != 0
    assert str(POLICY_DENIED) in result.stderr, result.stderr
    assert chain.nonce(ops) == nonce_before
    assert chain.balance(PAYEE) == payee_before


def test_a_treasury_transaction_is_pending_for_ethers_until_two_approvers_approve_then_anvil_mines_it(
    setting: ToolSetting,
) -> None:
    chain, custody, treasury = setting.chain, setting.custody, setting.addresses["treasury"]
    amount = ONE_ETHER // 10
    # Every field is given, so the call is the same request each time it is made (custody recognises a
    # request by its payload).
    transaction = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": chain.nonce(treasury),
        "to": PAYEE,
        "value": str(amount),
        "gasLimit": "21000",
        "maxFeePerGas": str(30 * 10**9),
        "maxPriorityFeePerGas": str(10**9),
    }

    def sign_and_broadcast() -> dict[str, Any]:
        fields = {"from": treasury, "transaction": transaction, "broadcast": True}
        return node_client(setting, "ethers_client.mjs", "sign-transaction", fields)

    pending = sign_and_broadcast()
    assert pending["error"]["code"] == PENDING_APPROVAL, pending
    assert pending["error"]["data"]["state"] == "PENDING_APPROVAL"
    request_id = pending["error"]["data"]["request_id"]
    # Asking again before the quorum is the same request, still waiting: nothing new is stored or signed.
    again = sign_and_broadcast()["error"]
    assert (again["code"], again["data"]["request_id"]) == (PENDING_APPROVAL, request_id), again

    payee_before = chain.balance(PAYEE)
    for approver in ("alice", "bob"):
        custody.cli(approver, "approve", "--yes", request_id)
    signed = sign_and_broadcast()
    assert "error" not in signed, signed
    assert signed["recovered"] == treasury
    assert signed["status"] == 1
    assert_transaction_signed_by(signed["signed"], treasury)
    assert_mined_and_signed_by(chain, signed["hash"], treasury)
    assert chain.balance(PAYEE) == payee_before + amount
    assert custody.get(request_id).state == pb.REQUEST_STATE_SIGNED

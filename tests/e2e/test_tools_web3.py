"""web3.py 8 uses custody as a Python service would, on a real local chain (anvil): its HTTP provider pointed at
custody's JSON-RPC endpoint sends ether and an ERC-20 transfer from the ops key with eth_sendTransaction (the
node the endpoint forwards to fills and mines them), and the receipts and balances show what moved.

Every transaction is verified again here with eth-account from the raw bytes anvil mined (the signer
recovered, s low).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from .chain_support import (
    ONE_ETHER,
    ToolSetting,
    assert_mined_and_signed_by,
    safe_artifact,
    tool_setting,
)
from .conftest import Databases

# Invented for these tests: who receives what web3.py sends.
PAYEE = "0x000000000000000000000000000000000000bEEF"


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[ToolSetting]:
    with tool_setting(tmp_path_factory, databases, "tools-web3") as made:
        yield made


@pytest.fixture(scope="module")
def web3_on_custody(setting: ToolSetting) -> Web3:
    """web3.py with custody's endpoint as its node: TLS checked against the development CA, and the backend's
    bearer token."""
    endpoint = setting.endpoint
    provider = Web3.HTTPProvider(
        endpoint.url,
        request_kwargs={
            "headers": {"Authorization": f"Bearer {endpoint.token}"},
            "verify": str(endpoint.ca_file),
            "timeout": 60,
        },
    )
    return Web3(provider)


def test_web3_through_the_endpoint_lists_the_backend_keys_and_the_chain(
    setting: ToolSetting, web3_on_custody: Web3
) -> None:
    assert set(web3_on_custody.eth.accounts) == set(setting.addresses.values())
    assert web3_on_custody.eth.chain_id == int(setting.chain.rpc("eth_chainId"), 16)


def test_web3_through_the_endpoint_sends_ether_from_the_ops_key(
    setting: ToolSetting, web3_on_custody: Web3
) -> None:
    chain, ops = setting.chain, setting.addresses["ops"]
    amount = ONE_ETHER // 100
    payee_before, ops_before = chain.balance(PAYEE), chain.balance(ops)
    tx_hash = web3_on_custody.eth.send_transaction({"from": ops, "to": PAYEE, "value": amount})
    receipt = web3_on_custody.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1 and receipt["from"] == ops
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), ops)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(PAYEE) == payee_before + amount
    assert chain.balance(ops) == ops_before - amount - fee


def test_web3_through_the_endpoint_sends_an_erc20_transfer_from_the_ops_key(
    setting: ToolSetting, web3_on_custody: Web3
) -> None:
    chain, ops, token = setting.chain, setting.addresses["ops"], setting.token
    amount = 4_321
    contract = web3_on_custody.eth.contract(
        address=token, abi=safe_artifact("test/ERC20Token.sol/ERC20Token")["abi"]
    )
    payee_before, ops_before = chain.token_balance(token, PAYEE), chain.token_balance(token, ops)
    tx_hash = contract.functions.transfer(PAYEE, amount).transact({"from": ops})
    receipt = web3_on_custody.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1
    (transfer,) = contract.events.Transfer().process_receipt(receipt)
    assert (transfer.args["from"], transfer.args["to"], transfer.args["value"]) == (ops, PAYEE, amount)
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), ops)
    assert chain.token_balance(token, PAYEE) == payee_before + amount
    assert chain.token_balance(token, ops) == ops_before - amount

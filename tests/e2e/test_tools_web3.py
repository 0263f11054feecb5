"""web3.py 8 uses custody as a Python service would, on a real local chain (anvil), in the three ways a service
switches to it: a ``CustodyAccount`` (custody.client, over gRPC) in place of an eth-account LocalAccount,
custody's signing middleware in web3.py's middleware onion, and web3.py's HTTP provider pointed at custody's
JSON-RPC endpoint. Each sends ether and an ERC-20 transfer from the ops key, and the receipts and balances show
what moved; a treasury transaction raises ApprovalRequired until two approvers approve it with the CLI.

Every transaction is verified again here with eth-account from the raw bytes anvil mined (the signer
recovered, s low).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

from custody.client import ApprovalRequired, CustodyAccount, CustodyClient, custody_signing_middleware

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


@pytest.fixture(scope="module")
def client(setting: ToolSetting) -> Iterator[CustodyClient]:
    """custody.client over gRPC, with the backend's profile, at the port this module's daemon took."""
    profile = setting.custody.env.profile("backend")
    with CustodyClient.from_profile(profile, server=setting.custody.daemon.address) as connected:
        yield connected


@pytest.fixture(scope="module")
def web3_on_anvil(setting: ToolSetting) -> Web3:
    return Web3(Web3.HTTPProvider(setting.chain.url))


def token_contract(w3: Web3, setting: ToolSetting) -> Contract:
    return w3.eth.contract(address=setting.token, abi=safe_artifact("test/ERC20Token.sol/ERC20Token")["abi"])


def fees(w3: Web3) -> dict[str, Any]:
    """EIP-1559 fees as a wallet sets them: twice the latest base fee plus the node's suggested tip."""
    tip = w3.eth.max_priority_fee
    return {
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + tip,
        "maxPriorityFeePerGas": tip,
    }


def test_a_custody_account_signs_ether_and_token_transfers_that_web3_sends_as_a_local_accounts(
    setting: ToolSetting, client: CustodyClient, web3_on_anvil: Web3
) -> None:
    chain, w3, token = setting.chain, web3_on_anvil, setting.token
    account = client.account("ops")
    assert isinstance(account, CustodyAccount) and account.address == setting.addresses["ops"]
    amount, tokens = ONE_ETHER // 100, 777
    payee_before, payee_tokens_before = chain.balance(PAYEE), chain.token_balance(token, PAYEE)
    nonce = w3.eth.get_transaction_count(account.address)

    ether = {
        "type": 2,
        "chainId": w3.eth.chain_id,
        "nonce": nonce,
        "to": PAYEE,
        "value": amount,
        "gas": 21000,
    }
    signed = account.sign_transaction({**ether, **fees(w3)})
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert bytes(tx_hash) == bytes(signed.hash)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), account.address)

    transfer = token_contract(w3, setting).functions.transfer(PAYEE, tokens)
    built = transfer.build_transaction({"from": account.address, "nonce": nonce + 1, **fees(w3)})
    signed = account.sign_transaction(built)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), account.address)

    assert chain.balance(PAYEE) == payee_before + amount
    assert chain.token_balance(token, PAYEE) == payee_tokens_before + tokens


def test_web3_with_custodys_signing_middleware_sends_ether_and_a_token_transfer(
    setting: ToolSetting, client: CustodyClient
) -> None:
    chain, token = setting.chain, setting.token
    account = client.account("ops")
    w3 = Web3(Web3.HTTPProvider(chain.url))
    w3.middleware_onion.inject(custody_signing_middleware(account), layer=0)
    amount, tokens = ONE_ETHER // 100, 888
    payee_before, payee_tokens_before = chain.balance(PAYEE), chain.token_balance(token, PAYEE)

    tx_hash = w3.eth.send_transaction({"from": account.address, "to": PAYEE, "value": amount})
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), account.address)
    tx_hash = (
        token_contract(w3, setting).functions.transfer(PAYEE, tokens).transact({"from": account.address})
    )
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), account.address)

    assert chain.balance(PAYEE) == payee_before + amount
    assert chain.token_balance(token, PAYEE) == payee_tokens_before + tokens


def test_a_treasury_transaction_raises_approval_required_until_two_approvers_approve_it(
    setting: ToolSetting, client: CustodyClient, web3_on_anvil: Web3
) -> None:
    chain, w3 = setting.chain, web3_on_anvil
    treasury = client.account("treasury")
    amount = ONE_ETHER // 10
    transaction = {
        "type": 2,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(treasury.address),
        "to": PAYEE,
        "value": amount,
        "gas": 21000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    with pytest.raises(ApprovalRequired) as pending:
        treasury.sign_transaction(transaction)
    assert pending.value.state == "PENDING_APPROVAL"
    for approver in ("alice", "bob"):
        setting.custody.cli(approver, "approve", "--yes", pending.value.request_id)

    payee_before = chain.balance(PAYEE)
    signed = treasury.sign_transaction(transaction)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), treasury.address)
    assert chain.balance(PAYEE) == payee_before + amount


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
    contract = token_contract(web3_on_custody, setting)
    payee_before, ops_before = chain.token_balance(token, PAYEE), chain.token_balance(token, ops)
    tx_hash = contract.functions.transfer(PAYEE, amount).transact({"from": ops})
    receipt = web3_on_custody.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1
    (transfer,) = contract.events.Transfer().process_receipt(receipt)
    assert (transfer.args["from"], transfer.args["to"], transfer.args["value"]) == (ops, PAYEE, amount)
    assert_mined_and_signed_by(chain, "0x" + bytes(tx_hash).hex(), ops)
    assert chain.token_balance(token, PAYEE) == payee_before + amount
    assert chain.token_balance(token, ops) == ops_before - amount

"""custody.client against a real daemon: CustodyClient connects with a profile as the CLI does, and
CustodyAccount signs as eth-account's LocalAccount does, returning eth-account's result types.

Every signature is checked independently of custody: eth-account recovers the signer from the raw
transaction or from the message and its signature, which must be the key's address, with s low.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.datastructures import SignedMessage, SignedTransaction
from eth_account.messages import defunct_hash_message, encode_defunct, encode_typed_data
from eth_utils import keccak

from custody.client import (
    ApprovalRequired,
    CustodyAccount,
    CustodyClient,
    RequestNotSigned,
    custody_signing_middleware,
)
from custody.domain.errors import InvalidInput, NotFound, PermissionDenied
from tests.evm_payloads import transaction

from .conftest import Daemon, DevEnv, Nonces, run_cli
from .jsonrpc_support import UpstreamNode

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
MAIL = json.loads((Path(__file__).parents[1] / "vectors" / "eip712_mail.json").read_text())


def eip1559(nonce: int, value: int = 10**15) -> dict[str, object]:
    """A transaction dict as eth-account takes it, with its calldata as bytes."""
    return {**transaction(RECIPIENT, nonce, value=value), "data": b""}


@pytest.fixture
def client(dev_env: DevEnv, daemon: Daemon, keys: dict[str, dict[str, str]]) -> Iterator[CustodyClient]:
    with CustodyClient.from_profile(dev_env.profile("backend"), server=daemon.address) as connected:
        yield connected


@pytest.fixture
def ops(client: CustodyClient) -> CustodyAccount:
    return client.account("ops")


def test_the_client_connects_with_a_profile_and_reads_keys(
    client: CustodyClient, keys: dict[str, dict[str, str]]
) -> None:
    assert {key.label: key.address for key in client.list_keys()} == {
        label: key["address"] for label, key in keys.items()
    }
    assert client.account("ops").address == keys["ops"]["address"]
    with pytest.raises(NotFound):
        client.key("no-such-key")


def test_sign_transaction_returns_eth_accounts_signed_transaction(
    ops: CustodyAccount, nonces: Nonces
) -> None:
    signed = ops.sign_transaction(eip1559(next(nonces)))
    assert isinstance(signed, SignedTransaction)
    assert Account.recover_transaction(signed.raw_transaction) == ops.address
    assert signed.hash == keccak(signed.raw_transaction)
    assert signed.v in (0, 1) and 0 < signed.s <= SECP256K1_N // 2


def test_a_legacy_transaction_carries_eip155_v(ops: CustodyAccount, nonces: Nonces) -> None:
    legacy = {
        "chainId": 1,
        "nonce": next(nonces),
        "to": RECIPIENT,
        "value": 1,
        "gas": 21_000,
        "gasPrice": 20 * 10**9,
        "from": ops.address,
    }
    signed = ops.sign_transaction(legacy)
    assert Account.recover_transaction(signed.raw_transaction) == ops.address
    assert signed.v in (37, 38)


def test_sign_message_returns_eth_accounts_signed_message(ops: CustodyAccount) -> None:
    signed = ops.sign_message(encode_defunct(text="I approve proposal 7"))
    assert isinstance(signed, SignedMessage)
    assert signed.message_hash == defunct_hash_message(text="I approve proposal 7")
    assert Account.recover_message(
        encode_defunct(text="I approve proposal 7"), signature=signed.signature
    ) == (ops.address)
    assert signed.v in (27, 28) and 0 < signed.s <= SECP256K1_N // 2


def test_sign_typed_data_takes_both_of_eth_accounts_forms(ops: CustodyAccount) -> None:
    typed = MAIL["typed_data"]
    whole = ops.sign_typed_data(full_message=typed)
    parts = ops.sign_typed_data(
        typed["domain"], {k: v for k, v in typed["types"].items() if k != "EIP712Domain"}, typed["message"]
    )
    for signed in (whole, parts):
        assert signed.message_hash.to_0x_hex() == MAIL["digest"]
        assert Account.recover_message(encode_typed_data(full_message=typed), signature=signed.signature) == (
            ops.address
        )


def test_structured_data_without_its_message_is_refused(ops: CustodyAccount) -> None:
    with pytest.raises(InvalidInput, match="sign_typed_data"):
        ops.sign_message(encode_typed_data(full_message=MAIL["typed_data"]))


def test_another_address_in_from_is_refused(ops: CustodyAccount, nonces: Nonces) -> None:
    with pytest.raises(InvalidInput, match="from"):
        ops.sign_transaction({**eip1559(next(nonces)), "from": RECIPIENT})


def test_a_denied_transaction_raises_request_not_signed(ops: CustodyAccount, nonces: Nonces) -> None:
    with pytest.raises(RequestNotSigned) as refused:
        ops.sign_transaction(eip1559(next(nonces), value=5 * 10**18))
    assert refused.value.state == "DENIED" and refused.value.request_id


def test_a_key_not_granted_is_refused(
    dev_env: DevEnv, daemon: Daemon, keys: dict[str, dict[str, str]]
) -> None:
    with CustodyClient.from_profile(dev_env.profile("carol"), server=daemon.address) as carol:
        with pytest.raises(PermissionDenied):
            carol.account("ops").sign_message(encode_defunct(text="hi"))


def test_approval_required_carries_the_request_and_the_same_call_then_signs(
    dev_env: DevEnv, daemon: Daemon, client: CustodyClient, nonces: Nonces
) -> None:
    treasury = client.account("treasury")
    transaction = eip1559(next(nonces), value=10**17)
    with pytest.raises(ApprovalRequired) as waiting:
        treasury.sign_transaction(transaction)
    assert waiting.value.state == "PENDING_APPROVAL"
    request_id = waiting.value.request_id
    for approver in ("alice", "bob"):
        run_cli(dev_env, daemon, approver, "approve", request_id, "--yes")
    assert client.wait(request_id, timeout=30).state == "SIGNED"
    signed = treasury.sign_transaction(transaction)
    assert Account.recover_transaction(signed.raw_transaction) == treasury.address
    assert signed.raw_transaction == client.get(request_id).signed_tx


def test_web3_sends_through_the_middleware(client: CustodyClient) -> None:
    from web3 import Web3

    node = UpstreamNode().start()
    try:
        w3 = Web3(Web3.HTTPProvider(node.url))
        ops = client.account("ops")
        w3.middleware_onion.inject(custody_signing_middleware(ops), layer=0)
        node.pending_nonce = 900_000  # a nonce no other test of the session uses for this key
        tx_hash = w3.eth.send_transaction({"from": ops.address, "to": RECIPIENT, "value": 12_345})
        raw = node.broadcast[-1]
        assert bytes(tx_hash) == keccak(raw)
        assert Account.recover_transaction(raw) == ops.address
    finally:
        node.stop()


def test_web3_sends_a_treasury_transaction_once_approved_even_when_the_fees_moved(
    dev_env: DevEnv, daemon: Daemon, client: CustodyClient
) -> None:
    from web3 import Web3

    node = UpstreamNode().start()
    try:
        w3 = Web3(Web3.HTTPProvider(node.url))
        treasury = client.account("treasury")
        w3.middleware_onion.inject(custody_signing_middleware(treasury), layer=0)
        node.pending_nonce = 900_001
        transfer = {"from": treasury.address, "to": RECIPIENT, "value": 10**17}
        with pytest.raises(ApprovalRequired) as waiting:
            w3.eth.send_transaction(transfer)
        for approver in ("alice", "carol"):
            run_cli(dev_env, daemon, approver, "approve", waiting.value.request_id, "--yes")
        node.next_base_fee += 3 * 10**9  # web3.py fills other fees this time
        tx_hash = w3.eth.send_transaction(transfer)
        raw = node.broadcast[-1]
        assert bytes(tx_hash) == keccak(raw) and Account.recover_transaction(raw) == treasury.address
        assert raw == client.get(waiting.value.request_id).signed_tx
    finally:
        node.stop()

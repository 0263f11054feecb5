"""EIP-7702 on a real daemon and a real local chain (anvil): `custody sign authorization`, `sign tx` of blob and
set-code transactions are DENIED by the development policy, naming the missing rule; with the README's example
rule activated, an authorization custody signed after two approvals is carried by a set-code transaction that
a sponsor sends, anvil mines it, and the ops account's code becomes the delegation designator 0xef0100 ||
delegate. An authorization for every chain (chain id 0), under a rule with any_chain = true, is reviewed by
two approvers with `custody approve`, whose screen shows the warnings first, and signed.

The authorization is checked independently before it is used: eth-account recovers the ops address from the
EIP-7702 digest it computes itself, and s is low.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions.set_code_transaction import Authorization as UnsignedAuthorization

from custody.api._gen import custody_pb2 as pb
from tests import evm_payloads as payloads

from .chain_support import (
    CHAIN_ID,
    ONE_ETHER,
    SECP256K1_N,
    Chain,
    assert_low_s,
    require_tools,
    running_anvil,
)
from .conftest import Databases
from .incident_support import Custody, running_custody

README = Path(__file__).parents[2] / "README.md"
DELEGATE = payloads.EXAMPLE_DELEGATE  # the README example's delegate
RECIPIENT = "0x000000000000000000000000000000000000bEEF"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    require_tools()
    with running_anvil(tmp_path_factory.mktemp("set-code-chain")) as running:
        yield running


@pytest.fixture(scope="module")
def custody(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Custody]:
    with running_custody(tmp_path_factory, databases, "set-code") as running:
        yield running


def example_rule() -> str:
    match = re.search(
        r"```toml\n(\[\[rules\]\]\nname = \"ops-delegation\".*?)```", README.read_text(), re.DOTALL
    )
    assert match is not None, "the README lost its example delegation rule"
    return match.group(1)


def cli_sign_denied(custody: Custody, tmp_path: Path, what: str, payload: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / f"{what}.json"
    path.write_text(json.dumps(payload))
    result = custody.cli("backend", "--json", "sign", what, "--key", "ops", "--file", str(path), check=False)
    # Exit code 3: the request ended unsigned.
    assert result.returncode == 3, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_the_development_policy_denies_authorizations_blob_and_set_code_transactions(
    custody: Custody, tmp_path: Path
) -> None:
    authorization = cli_sign_denied(
        custody, tmp_path, "authorization", {"chainId": 0, "address": DELEGATE, "nonce": 0}
    )
    assert authorization["state"] == "DENIED"
    assert authorization["kind"] == "AUTHORIZATION" and authorization["chain_id"] == 0
    assert "kind 'authorization' is not in" in authorization["decision"]["reason"]
    assert "signature" not in authorization

    answer = cli_sign_denied(
        custody, tmp_path, "tx", payloads.blob_transaction(RECIPIENT, 0, chain_id=CHAIN_ID)
    )
    assert answer["state"] == "DENIED" and "'eip4844'" in answer["decision"]["reason"]

    carried = [payloads.signed_authorization(CHAIN_ID)]
    set_code = payloads.set_code_transaction(RECIPIENT, 0, carried, chain_id=CHAIN_ID)
    answer = cli_sign_denied(custody, tmp_path, "tx", set_code)
    assert answer["state"] == "DENIED" and "'eip7702'" in answer["decision"]["reason"]


def test_a_custody_signed_authorization_delegates_the_ops_account_on_chain(
    custody: Custody, chain: Chain
) -> None:
    version, document = custody.active_policy()
    marker = f"version = {version}\n"
    custody.activate_policy(document.replace(marker, f"version = {version + 1}\n", 1) + "\n" + example_rule())
    ops = custody.addresses["ops"]
    nonce = chain.nonce(ops)

    request = custody.submit(
        "ops",
        pb.PAYLOAD_KIND_AUTHORIZATION,
        {"chainId": CHAIN_ID, "address": DELEGATE, "nonce": nonce},
    )
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request.decision.reason
    custody.approvers.approve(request, "alice")
    custody.approvers.approve(request, "bob")
    signed = custody.get(request.request_id)
    assert signed.state == pb.REQUEST_STATE_SIGNED, signed

    signature = bytes(signed.signature)
    r, s, y_parity = (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )
    assert_low_s(s)
    # eth-account computes the EIP-7702 digest on its own, and recovers the ops address from it.
    digest = bytes(UnsignedAuthorization(CHAIN_ID, bytes.fromhex(DELEGATE[2:]), nonce).hash())
    assert digest == bytes(signed.digest)
    assert Account._recover_hash(digest, vrs=(27 + y_parity, r, s)) == ops

    # A sponsor with ether of its own sends the set-code transaction; ops pays nothing and sends nothing.
    sponsor = Account.create()
    chain.set_balance(sponsor.address, ONE_ETHER)
    tuple_ = {"chainId": CHAIN_ID, "address": DELEGATE, "nonce": nonce, "yParity": y_parity, "r": r, "s": s}
    transaction = {
        "type": 4,
        "chainId": CHAIN_ID,
        "nonce": chain.nonce(sponsor.address),
        "to": RECIPIENT,
        "value": 0,
        "gas": 100_000,
        "maxFeePerGas": 10 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "accessList": [],
        "authorizationList": [tuple_],
    }
    raw = Account.sign_transaction(transaction, sponsor.key).raw_transaction
    tx_hash = chain.rpc("eth_sendRawTransaction", "0x" + bytes(raw).hex())
    assert chain.receipt(tx_hash)["status"] == "0x1"

    code = chain.rpc("eth_getCode", ops, "latest")
    assert code == "0xef0100" + DELEGATE[2:].lower()
    assert chain.nonce(ops) == nonce + 1


def test_approvers_review_an_every_chain_authorization_through_the_cli_and_it_is_signed(
    custody: Custody, tmp_path: Path
) -> None:
    version, document = custody.active_policy()
    any_chain_rule = f"""
[[rules]]
name = "ops-delegation-any-chain"
keys = ["ops"]
kinds = ["authorization"]
intents = ["authorization"]
delegates = ["{DELEGATE}"]
any_chain = true
action = "approve"
quorum = [{{ group = "treasury", threshold = 2 }}]
"""
    marker = f"version = {version}\n"
    custody.activate_policy(document.replace(marker, f"version = {version + 1}\n", 1) + any_chain_rule)

    path = tmp_path / "every-chain.json"
    path.write_text(json.dumps({"chainId": 0, "address": DELEGATE, "nonce": 41}))
    submitted = json.loads(
        custody.cli("backend", "--json", "sign", "authorization", "--key", "ops", "--file", str(path)).stdout
    )
    assert submitted["state"] == "PENDING_APPROVAL", submitted["decision"]
    assert submitted["chain_id"] == 0

    first = custody.cli("alice", "--json", "approve", submitted["request_id"], "--yes")
    # The review went to stderr (stdout carries the JSON answer): the warnings come first, in capitals.
    review = first.stderr
    assert "!!! ACCOUNT RUNS THE DELEGATE'S CODE (intent 1)" in review
    assert "!!! EVERY CHAIN (intent 1)" in review
    assert f"SIGNING THIS MAKES THE KEY'S ACCOUNT RUN THE CODE AT {DELEGATE}" in review
    assert "chain id       0: EVERY CHAIN" in review
    second = json.loads(custody.cli("bob", "--json", "approve", submitted["request_id"], "--yes").stdout)
    assert second["state"] == "SIGNED", second

    r, s, y_parity = int(second["r"], 16), int(second["s"], 16), second["y_parity"]
    assert (
        second["signature"]
        == "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])).hex()
    )
    assert_low_s(s)
    digest = bytes(UnsignedAuthorization(0, bytes.fromhex(DELEGATE[2:]), 41).hash())
    assert Account._recover_hash(digest, vrs=(27 + y_parity, r, s)) == custody.addresses["ops"]


def test_bad_input_is_invalid_argument_naming_the_field(custody: Custody, tmp_path: Path) -> None:
    blob = {
        **payloads.blob_transaction(RECIPIENT, 0, chain_id=CHAIN_ID),
        "blobVersionedHashes": ["0x02" + "ab" * 31],
    }
    high_s = payloads.signed_authorization(CHAIN_ID)
    high_s["s"] = hex(SECP256K1_N - int(high_s["s"], 16))
    cases = {
        "tx": [
            (blob, "blobVersionedHashes[0]"),
            (
                payloads.set_code_transaction(RECIPIENT, 0, [high_s], chain_id=CHAIN_ID),
                "authorizationList[0].s",
            ),
            (payloads.set_code_transaction(RECIPIENT, 0, [], chain_id=CHAIN_ID), "authorizationList"),
        ],
        "authorization": [({"chainId": 1, "address": DELEGATE, "nonce": 0, "yParity": 1}, "yParity")],
    }
    for what, payloads_and_fields in cases.items():
        for payload, field in payloads_and_fields:
            path = tmp_path / f"{what}.json"
            path.write_text(json.dumps(payload))
            result = custody.cli(
                "backend", "--json", "sign", what, "--key", "ops", "--file", str(path), check=False
            )
            assert result.returncode == 1, result.stderr
            error = json.loads(result.stdout)["error"]
            assert error["code"] == "INVALID_ARGUMENT"
            assert error["message"].startswith(f"{field}: "), error

"""Fee caps end to end: the dev policy caps what a transaction may pay in fees, not only the value it sends.

The reviewers' transaction sends 0.01 ether to a recipient but may pay 30,000,000 gas at 10**15 wei per gas:
30,000 ether, all of which a block builder could keep. The dev policy caps ops transactions at 0.05 ether of
fees and treasury transactions at 0.1 ether, so it is denied, with a reason that names the fee, while an
ordinary transaction still signs (checked by recovering the signer with eth-account).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import rlp
from eth_account import Account

from custody.api._gen import custody_pb2 as pb

from .approvals_support import assert_signed_by, submit_tx
from .conftest import Daemon, Databases, DevEnv, cli_json, make_dev_env, run_cli, start_daemon, stop_daemon

RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FEE_REASON = (
    "maximum fee 30000000000000000000000 wei (30000 ether) exceeds the cap of 50000000000000000 wei"
    " (0.05 ether)"
)


def transaction(nonce: int, gas: int, max_fee_per_gas: int) -> dict[str, object]:
    return {
        "type": 2,
        "chainId": 11155111,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": 10**16,
        "gas": gas,
        "maxFeePerGas": max_fee_per_gas,
        "maxPriorityFeePerGas": 10**9,
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    return make_dev_env(tmp_path_factory.mktemp("fee-caps") / "env", backend, databases)


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    assert stop_daemon(running) == 0


@pytest.fixture(scope="module")
def addresses(env: DevEnv, daemon: Daemon) -> dict[str, str]:
    return {
        label: cli_json(env, daemon, "admin", "keys", "create", "--label", label)["address"]  # type: ignore[index]
        for label in ("ops", "treasury")
    }


def test_a_fee_over_the_cap_is_denied_naming_the_fee(
    env: DevEnv, daemon: Daemon, addresses: dict[str, str], tmp_path: Path
) -> None:
    tx_file = tmp_path / "costly.json"
    tx_file.write_text(json.dumps(transaction(nonce=0, gas=30_000_000, max_fee_per_gas=10**15)))
    result = run_cli(
        env, daemon, "backend", "--json", "sign", "tx", "--key", "ops", "--file", str(tx_file), check=False
    )
    answer = json.loads(result.stdout)
    assert answer["state"] == "DENIED"
    assert result.returncode == 3
    assert not answer.get("signature") and not answer.get("signed_tx")
    assert "deny by default" in answer["decision"]["reason"]
    assert FEE_REASON in answer["decision"]["reason"]
    # The daemon's summary shows the same total it capped.
    assert answer["summary"]["max_fee_wei"] == str(30_000 * 10**18)
    assert answer["summary"]["max_fee_ether"] == "30000"

    explained = cli_json(env, daemon, "admin", "policy", "explain", answer["request_id"])
    (ops_rule,) = [rule for rule in explained["rules"] if rule["rule"] == "ops-transactions"]  # type: ignore[index]
    outcomes = {condition["condition"]: condition for condition in ops_rule["conditions"]}
    assert outcomes["max_fee_wei"] == {"condition": "max_fee_wei", "matched": False, "detail": FEE_REASON}
    # Everything else about the transaction was allowed: the fee alone stopped it.
    assert all(outcome["matched"] for name, outcome in outcomes.items() if name != "max_fee_wei")


def test_a_treasury_transaction_over_its_fee_cap_is_denied_without_asking_approvers(
    env: DevEnv, daemon: Daemon, addresses: dict[str, str]
) -> None:
    # 0.1 ether is the treasury cap: 1,000,000 gas at 100 gwei reaches it, one more gas exceeds it.
    over = submit_tx(
        env, daemon, "backend", "treasury", transaction(nonce=0, gas=1_000_001, max_fee_per_gas=10**11)
    )
    assert over.state == pb.REQUEST_STATE_DENIED
    assert "maximum fee 100000100000000000 wei (0.1000001 ether) exceeds" in over.decision.reason
    at_cap = submit_tx(
        env, daemon, "backend", "treasury", transaction(nonce=1, gas=1_000_000, max_fee_per_gas=10**11)
    )
    assert at_cap.state == pb.REQUEST_STATE_PENDING_APPROVAL
    assert at_cap.decision.rule == "treasury-transactions"


def test_an_ordinary_transaction_still_signs(env: DevEnv, daemon: Daemon, addresses: dict[str, str]) -> None:
    signed = submit_tx(
        env, daemon, "backend", "ops", transaction(nonce=1, gas=21000, max_fee_per_gas=30 * 10**9)
    )
    assert signed.summary["max_fee_ether"] == "0.00063"
    assert_signed_by(signed, addresses["ops"])
    # The signed bytes carry the fee fields that were capped, and a low s (EIP-2).
    assert signed.signed_tx[0] == 2
    fields = rlp.decode(bytes(signed.signed_tx[1:]))
    assert [int.from_bytes(fields[index], "big") for index in (2, 3, 4)] == [10**9, 30 * 10**9, 21000]
    assert int.from_bytes(fields[-1], "big") <= SECP256K1_N // 2
    assert Account.recover_transaction(signed.signed_tx) == addresses["ops"]

"""Nonce protection end to end: one signed payload per (key, chain, nonce) unless policy allows an explicit
replacement; the identical payload again returns the stored signature without a second HSM call."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import grpc
import pytest
from eth_account import Account

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

from .approvals_support import Approvers, assert_signed_by, submit_tx, treasury_tx
from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    channel_for,
    cli_json,
    make_dev_env,
    start_daemon,
    stop_daemon,
)

# Fee bumps for ops: a replacement of an earlier ops transaction is signed at once. The rule goes first, so a
# plain request is still decided by the dev policy's own rules.
FEE_BUMP_RULE = """
[[rules]]
name = "ops-fee-bumps"
keys = ["ops"]
kinds = ["transaction"]
max_value_wei = "1000000000000000000"
allow_replacement = true
action = "sign"
"""

# On chain 10, which the dev policy does not name, ops signs only with two treasury approvals, replacements too:
# a replacement that waits for approvals and is then cancelled.
APPROVED_REPLACEMENT_RULE = """
[[rules]]
name = "ops-chain-10"
keys = ["ops"]
chain_ids = [10]
kinds = ["transaction"]
allow_replacement = true
action = "approve"
quorum = [{ group = "treasury", threshold = 2 }]
"""
OTHER_CHAIN = 10


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    env = make_dev_env(tmp_path_factory.mktemp("nonces") / "env", backend, databases)
    directory = env.directory
    policy = directory / "policy.toml"
    document = policy.read_text()
    first_rule = document.index("[[rules]]")
    rules = APPROVED_REPLACEMENT_RULE.lstrip() + "\n" + FEE_BUMP_RULE.lstrip() + "\n"
    policy.write_text(document[:first_rule] + rules + document[first_rule:])
    return env


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    assert stop_daemon(running) == 0


@pytest.fixture(scope="module")
def keys(env: DevEnv, daemon: Daemon) -> dict[str, dict[str, str]]:
    return {
        label: cli_json(env, daemon, "admin", "keys", "create", "--label", label)  # type: ignore[misc]
        for label in ("ops", "treasury")
    }


def hsm_signatures_for(daemon: Daemon, request_id: str) -> int:
    return len(re.findall(rf"request {request_id} signed with key", daemon.log()))


def test_the_same_payload_again_returns_the_stored_signature(env: DevEnv, daemon: Daemon, keys) -> None:
    first = submit_tx(env, daemon, "backend", "ops", treasury_tx(1))
    assert_signed_by(first, keys["ops"]["address"])
    again = submit_tx(env, daemon, "backend", "ops", treasury_tx(1))
    assert again.request_id == first.request_id
    assert again.signed_tx == first.signed_tx
    assert hsm_signatures_for(daemon, first.request_id) == 1


def test_a_different_payload_for_a_signed_nonce_is_refused_naming_the_earlier_request(
    env: DevEnv, daemon: Daemon, keys
) -> None:
    first = submit_tx(env, daemon, "backend", "ops", treasury_tx(2))
    with pytest.raises(grpc.RpcError) as refused:
        submit_tx(env, daemon, "backend", "ops", treasury_tx(2, value=12345))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert first.request_id in refused.value.details()
    # The same nonce on another chain is another nonce.
    other_chain = {**treasury_tx(2, value=12345), "chainId": 1}
    assert_signed_by(submit_tx(env, daemon, "backend", "ops", other_chain), keys["ops"]["address"])


def test_a_pending_request_holds_its_nonce_too(env: DevEnv, daemon: Daemon, keys) -> None:
    pending = submit_tx(env, daemon, "backend", "treasury", treasury_tx(3))
    assert pending.state == pb.REQUEST_STATE_PENDING_APPROVAL
    with pytest.raises(grpc.RpcError) as refused:
        submit_tx(env, daemon, "backend", "treasury", treasury_tx(3, value=777))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert pending.request_id in refused.value.details()


def test_a_denied_request_does_not_hold_the_nonce(env: DevEnv, daemon: Daemon, keys) -> None:
    denied = submit_tx(env, daemon, "backend", "ops", treasury_tx(4, value=5 * 10**18))
    assert denied.state == pb.REQUEST_STATE_DENIED
    assert_signed_by(submit_tx(env, daemon, "backend", "ops", treasury_tx(4)), keys["ops"]["address"])


def test_an_explicit_replacement_allowed_by_policy_is_signed(
    env: DevEnv, daemon: Daemon, keys, tmp_path
) -> None:
    original = submit_tx(env, daemon, "backend", "ops", treasury_tx(5))
    bumped = {**treasury_tx(5), "maxFeePerGas": 60 * 10**9, "maxPriorityFeePerGas": 2 * 10**9}
    tx_file = tmp_path / "bump.json"
    tx_file.write_text(json.dumps(bumped))
    answer = cli_json(
        env,
        daemon,
        "backend",
        "sign",
        "tx",
        "--key",
        "ops",
        "--file",
        str(tx_file),
        "--replaces",
        original.request_id,
    )
    assert answer["state"] == "SIGNED"  # type: ignore[index]
    assert answer["replaces"] == original.request_id  # type: ignore[index]
    replacement = bytes.fromhex(str(answer["signed_tx"]).removeprefix("0x"))  # type: ignore[index]
    assert Account.recover_transaction(replacement) == keys["ops"]["address"]
    assert replacement != original.signed_tx

    # A replacement must name the request that holds the nonce, and differ from it.
    with pytest.raises(grpc.RpcError) as refused:
        submit_tx_replacing(env, daemon, treasury_tx(5, value=99), "req_" + "0" * 32)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_replacement_without_a_rule_allowing_it_is_denied(env: DevEnv, daemon: Daemon, keys) -> None:
    pending = submit_tx(env, daemon, "backend", "treasury", treasury_tx(6))
    replacement = submit_tx_replacing(
        env, daemon, treasury_tx(6, value=1), pending.request_id, key="treasury"
    )
    assert replacement.state == pb.REQUEST_STATE_DENIED


def test_a_cancelled_replacement_gives_the_nonce_back_to_the_signed_request(
    env: DevEnv, daemon: Daemon, keys
) -> None:
    approvers = Approvers(env, daemon)
    original = submit_tx(env, daemon, "backend", "ops", {**treasury_tx(8), "chainId": OTHER_CHAIN})
    approvers.approve(original, "alice")
    signed = approvers.approve(original, "bob")
    assert_signed_by(signed, keys["ops"]["address"])

    bumped = {**treasury_tx(8), "chainId": OTHER_CHAIN, "maxFeePerGas": 60 * 10**9}
    replacement = submit_tx_replacing(env, daemon, bumped, original.request_id)
    assert replacement.state == pb.REQUEST_STATE_PENDING_APPROVAL
    cli_json(env, daemon, "backend", "requests", "cancel", replacement.request_id)

    # A signature for nonce 8 exists: another payload for it is refused, naming the signed request, and the
    # signed payload again still returns its stored signature.
    with pytest.raises(grpc.RpcError) as refused:
        submit_tx(env, daemon, "backend", "ops", {**treasury_tx(8, value=4321), "chainId": OTHER_CHAIN})
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert original.request_id in refused.value.details()
    again = submit_tx(env, daemon, "backend", "ops", {**treasury_tx(8), "chainId": OTHER_CHAIN})
    assert again.request_id == original.request_id
    assert again.signed_tx == signed.signed_tx
    assert hsm_signatures_for(daemon, original.request_id) == 1


def submit_tx_replacing(
    env: DevEnv, daemon: Daemon, tx: dict[str, object], replaces: str, key: str = "ops"
) -> pb.SigningRequest:
    with channel_for(env, daemon, "backend") as channel:
        return (
            pb_grpc.SigningServiceStub(channel)
            .SubmitRequest(
                pb.SubmitRequestRequest(
                    key_label=key,
                    kind=pb.PAYLOAD_KIND_TRANSACTION,
                    payload=json.dumps(tx).encode(),
                    replaces_request_id=replaces,
                )
            )
            .request
        )

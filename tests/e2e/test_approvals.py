"""M-of-N approvals through the command line: the 2-of-3 treasury flow as approvers run it, what the next
approver is shown, and a rejection with a reason. What the use cases decide (every refusal of a verdict,
tampering, expiry) is in tests/app; approvals through replicas sharing one database in test_approval_races.py.
A real daemon on its own dev environment; every signature checked with eth-account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.api._gen import custody_pb2 as pb

from .approvals_support import (
    Approvers,
    approver_key,
    assert_signed_by,
    get_request,
    independent_digest,
    submit_tx,
    treasury_tx,
)
from .conftest import (
    BACKENDS,
    Daemon,
    Databases,
    DevEnv,
    Nonces,
    cli_json,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> DevEnv:
    # What the command line shows does not depend on the store; the first configured backend is enough.
    return make_dev_env(tmp_path_factory.mktemp("approvals") / "env", BACKENDS[0], databases)


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    assert stop_daemon(running) == 0


@pytest.fixture(scope="module")
def treasury(env: DevEnv, daemon: Daemon) -> dict[str, str]:
    return cli_json(env, daemon, "admin", "keys", "create", "--label", "treasury")  # type: ignore[return-value]


@pytest.fixture
def approvers(env: DevEnv, daemon: Daemon) -> Approvers:
    return Approvers(env, daemon)


@pytest.fixture
def pending(env: DevEnv, daemon: Daemon, treasury: dict[str, str], nonces: Nonces) -> pb.SigningRequest:
    """A treasury transaction waiting for the treasury quorum."""
    request = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request
    return request


def test_two_of_three_treasury_flow_through_the_cli(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], tmp_path: Path, nonces: Nonces
) -> None:
    tx = treasury_tx(next(nonces))
    tx_file = tmp_path / "tx.json"
    tx_file.write_text(json.dumps(tx))
    result = run_cli(
        env, daemon, "backend", "--json", "sign", "tx", "--key", "treasury", "--file", str(tx_file)
    )
    submitted = json.loads(result.stdout)
    assert submitted["state"] == "PENDING_APPROVAL"
    assert submitted["digest"] == "0x" + independent_digest(tx).hex()
    assert submitted["quorum"] == [{"group": "treasury", "threshold": 2}]

    first = json.loads(
        run_cli(env, daemon, "alice", "--json", "approve", submitted["request_id"], "--yes").stdout
    )
    assert first["state"] == "PENDING_APPROVAL"
    assert [a["approver"] for a in first["approvals"]] == ["alice"]

    second = json.loads(
        run_cli(env, daemon, "bob", "--json", "approve", submitted["request_id"], "--yes").stdout
    )
    assert second["state"] == "SIGNED"
    signed = get_request(env, daemon, submitted["request_id"])
    assert_signed_by(signed, treasury["address"])
    assert sorted(a.approver for a in signed.approvals) == ["alice", "bob"]
    # Every counted statement verifies with the approver's own key, independently of custody.
    for record in signed.approvals:
        approver_key(env, record.approver).public_key().verify(record.signature, record.statement)


def test_the_cli_rejects_with_a_reason(env: DevEnv, daemon: Daemon, pending: pb.SigningRequest) -> None:
    result = run_cli(
        env,
        daemon,
        "bob",
        "--json",
        "reject",
        pending.request_id,
        "--reason",
        "wrong amount",
        "--yes",
        check=False,
    )
    assert json.loads(result.stdout)["state"] == "REJECTED"


def test_verdicts_are_shown_to_the_next_approver(
    env: DevEnv, daemon: Daemon, approvers: Approvers, pending: pb.SigningRequest
) -> None:
    request = pending
    approvers.approve(request, "alice")
    shown = cli_json(env, daemon, "bob", "requests", "show", request.request_id)
    assert shown["quorum_progress"] == "1 of 2 from treasury"
    assert [a["approver"] for a in shown["approvals"]] == ["alice"]
    explained = json.loads(
        run_cli(env, daemon, "bob", "--json", "policy", "explain", request.request_id).stdout
    )
    assert explained["decision"]["action"] == "approve"
    assert any(rule["matched"] for rule in explained["rules"])

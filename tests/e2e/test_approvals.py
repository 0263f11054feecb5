"""M-of-N approvals end to end: the 2-of-3 treasury flow, every refusal the daemon enforces, rejection,
tampering, and expiry. A real daemon on its own dev environment; every signature checked with eth-account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb
from custody.domain.requests import Verdict

from .approvals_support import (
    Approvers,
    approver_key,
    assert_signed_by,
    get_request,
    independent_digest,
    set_clock_offset,
    submit_tx,
    treasury_tx,
    wait_for_state,
)
from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    cli_json,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)

NONCES = count(100)


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clock") / "offset"
    path.write_text("0")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    env = make_dev_env(tmp_path_factory.mktemp("approvals") / "env", backend, databases)
    directory = env.directory
    config = directory / "server.toml"
    config.write_text(config.read_text() + "\n[limits]\nworker_interval_seconds = 0.2\n")
    return env


@pytest.fixture(scope="module")
def daemon(env: DevEnv, clock_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(
        env,
        tmp_path_factory.mktemp("logs") / "daemon.log",
        extra_env={"CUSTODY_UNSAFE_CLOCK_OFFSET_FILE": str(clock_file)},
    )
    yield running
    assert stop_daemon(running) == 0


@pytest.fixture(scope="module")
def treasury(env: DevEnv, daemon: Daemon) -> dict[str, str]:
    return cli_json(env, daemon, "admin", "keys", "create", "--label", "treasury")  # type: ignore[return-value]


@pytest.fixture
def approvers(env: DevEnv, daemon: Daemon) -> Approvers:
    return Approvers(env, daemon)


def pending(env: DevEnv, daemon: Daemon, requester: str = "backend") -> pb.SigningRequest:
    request = submit_tx(env, daemon, requester, "treasury", treasury_tx(next(NONCES)))
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request
    return request


def test_two_of_three_treasury_flow_through_the_cli(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], tmp_path: Path
) -> None:
    tx = treasury_tx(next(NONCES))
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


def test_the_requesters_own_approval_never_counts(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    request = pending(env, daemon, requester="carol")
    with pytest.raises(grpc.RpcError) as refused:
        approvers.approve(request, "carol")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    approvers.approve(request, "alice")
    assert_signed_by(approvers.approve(request, "bob"), treasury["address"])


def test_an_approver_counts_once(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    request = pending(env, daemon)
    approvers.approve(request, "alice")
    with pytest.raises(grpc.RpcError) as refused:
        approvers.approve(request, "alice")
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert get_request(env, daemon, request.request_id).state == pb.REQUEST_STATE_PENDING_APPROVAL


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("statement-for-another-request", grpc.StatusCode.FAILED_PRECONDITION),
        ("another-digest", grpc.StatusCode.FAILED_PRECONDITION),
        ("another-payload-hash", grpc.StatusCode.FAILED_PRECONDITION),
        ("another-policy-version", grpc.StatusCode.FAILED_PRECONDITION),
        ("expired-statement", grpc.StatusCode.FAILED_PRECONDITION),
        ("signed-with-another-key", grpc.StatusCode.PERMISSION_DENIED),
        ("approver-outside-the-quorum-groups", grpc.StatusCode.PERMISSION_DENIED),
        ("statement-names-someone-else", grpc.StatusCode.FAILED_PRECONDITION),
        ("garbage-statement", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_statements_that_do_not_bind_this_request_are_refused(
    env: DevEnv,
    daemon: Daemon,
    treasury: dict[str, str],
    approvers: Approvers,
    case: str,
    expected: grpc.StatusCode,
) -> None:
    request = pending(env, daemon)
    other = pending(env, daemon)
    approver = {"approver-outside-the-quorum-groups": "dave", "statement-names-someone-else": "bob"}.get(
        case, "alice"
    )
    overrides: dict[str, object] = {
        "statement-for-another-request": {"request_id": other.request_id},
        "another-digest": {"digest": other.digest},
        "another-payload-hash": {"payload_hash": bytes(32)},
        "another-policy-version": {"policy_version": request.decision.policy_version + 1},
        "expired-statement": {"expires_in": -5},
        "statement-names-someone-else": {"caller": "alice"},
    }.get(case, {})
    with pytest.raises(grpc.RpcError) as refused:
        if case == "garbage-statement":
            approvers.stub("alice").Approve(
                pb.ApproveRequest(request_id=request.request_id, statement=b"approve it", signature=bytes(64))
            )
        else:
            approvers.approve(
                request,
                approver,
                signer="bob" if case == "signed-with-another-key" else None,
                **overrides,
            )
    assert refused.value.code() == expected, refused.value.details()
    after = get_request(env, daemon, request.request_id)
    assert after.state == pb.REQUEST_STATE_PENDING_APPROVAL
    assert list(after.approvals) == []


def test_principals_without_the_approver_role_are_refused(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    request = pending(env, daemon)
    for identity in ("backend", "admin"):
        statement = approvers.statement(request, identity)
        with pytest.raises(grpc.RpcError) as refused:
            approvers.stub(identity).Approve(
                pb.ApproveRequest(request_id=request.request_id, statement=statement, signature=bytes(64))
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_rejection_ends_the_request(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    request = pending(env, daemon)
    approvers.approve(request, "alice")
    rejected = approvers.reject(request, "carol", "the recipient is not on our list")
    assert rejected.state == pb.REQUEST_STATE_REJECTED
    assert "carol" in rejected.error
    with pytest.raises(grpc.RpcError) as refused:
        approvers.approve(request, "bob")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert get_request(env, daemon, request.request_id).signature == b""


def test_the_cli_rejects_with_a_reason(env: DevEnv, daemon: Daemon, treasury: dict[str, str]) -> None:
    request = pending(env, daemon)
    result = run_cli(
        env,
        daemon,
        "bob",
        "--json",
        "reject",
        request.request_id,
        "--reason",
        "wrong amount",
        "--yes",
        check=False,
    )
    assert json.loads(result.stdout)["state"] == "REJECTED"


def test_an_edited_row_gathers_no_approvals_and_is_not_signed(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    request = pending(env, daemon)
    approvers.approve(request, "alice")
    tampered = json.loads(request.payload)
    tampered["to"] = "0x000000000000000000000000000000000000dEaD"
    env.sql(
        "UPDATE requests SET payload = ? WHERE request_id = ?",
        (json.dumps(tampered, sort_keys=True, separators=(",", ":")).encode(), request.request_id),
    )
    with pytest.raises(grpc.RpcError) as refused:
        approvers.approve(request, "bob")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    after = get_request(env, daemon, request.request_id)
    assert after.state == pb.REQUEST_STATE_FAILED
    assert after.signature == b""


def test_a_request_past_its_lifetime_expires_and_is_never_signed(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers, clock_file: Path
) -> None:
    request = pending(env, daemon)
    approvers.approve(request, "alice")
    try:
        set_clock_offset(clock_file, 25 * 3600)
        expired = wait_for_state(env, daemon, request.request_id, pb.REQUEST_STATE_EXPIRED)
        assert expired.state == pb.REQUEST_STATE_EXPIRED
        with pytest.raises(grpc.RpcError) as refused:
            approvers.approve(request, "bob", expires_in=26 * 3600)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        set_clock_offset(clock_file, 0)
    assert get_request(env, daemon, request.request_id).signature == b""


def test_verdicts_are_shown_to_the_next_approver(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    request = pending(env, daemon)
    approvers.approve(request, "alice")
    shown = cli_json(env, daemon, "bob", "requests", "show", request.request_id)
    assert shown["quorum_progress"] == "1 of 2 from treasury"
    assert [a["approver"] for a in shown["approvals"]] == ["alice"]
    explained = json.loads(
        run_cli(env, daemon, "bob", "--json", "policy", "explain", request.request_id).stdout
    )
    assert explained["decision"]["action"] == "approve"
    assert any(rule["matched"] for rule in explained["rules"])


def test_statement_verdict_must_match_the_call(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    request = pending(env, daemon)
    statement = approvers.statement(request, "alice", Verdict.REJECT)
    signature = approver_key(env, "alice").sign(statement)
    with pytest.raises(grpc.RpcError) as refused:
        approvers.stub("alice").Approve(
            pb.ApproveRequest(request_id=request.request_id, statement=statement, signature=signature)
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_second_daemon_sees_approvals_made_through_the_first(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers, tmp_path: Path
) -> None:
    second = start_daemon(env, tmp_path / "second.log")
    try:
        request = pending(env, daemon)
        approvers.approve(request, "alice", daemon=second)
        assert_signed_by(approvers.approve(request, "bob"), treasury["address"])
    finally:
        assert stop_daemon(second) == 0


# -- rows written behind the daemon's back --------------------------------------------------------------------


def test_a_pending_row_edited_to_sign_at_once_is_not_signed(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers
) -> None:
    """Whoever can write to the database sets a waiting treasury request to APPROVED with an empty quorum and
    the decision "sign": the worker picks it up, asks the policy again, finds that it needs two approvals it
    does not have, and marks it FAILED without calling the HSM."""
    request = pending(env, daemon)
    env.sql(
        "UPDATE requests SET state = 'APPROVED', decision_action = 'sign', quorum = '[]' WHERE request_id = ?",
        (request.request_id,),
    )
    failed = wait_for_state(env, daemon, request.request_id, pb.REQUEST_STATE_FAILED)
    assert failed.signature == b"" and failed.signed_tx == b""
    assert "quorum" in failed.error
    assert f"request {request.request_id} signed" not in daemon.log()


def test_a_forged_approval_row_does_not_count(
    env: DevEnv, daemon: Daemon, treasury: dict[str, str], approvers: Approvers, tmp_path: Path
) -> None:
    """A policy change takes effect the moment its quorum is met, so a forged approval row must not count
    towards it: bob's genuine approval next to a forged one from alice leaves the proposal waiting."""
    # A proposal may name only keys that exist, and the dev policy names ops as well.
    cli_json(env, daemon, "admin", "keys", "create", "--label", "ops")
    document = (env.directory / "policy.toml").read_text()
    proposal_file = tmp_path / "policy-v2.toml"
    proposal_file.write_text(document.replace("version = 1\n", "version = 2\n", 1))
    proposal = cli_json(env, daemon, "admin", "policy", "propose", str(proposal_file))
    proposed = get_request(env, daemon, proposal["request_id"])  # type: ignore[index]
    env.sql(
        "INSERT INTO approvals (request_id, approver, verdict, statement, signature, reason, created_at)"
        " SELECT request_id, 'alice', 'approve', ?, ?, '', created_at FROM requests WHERE request_id = ?",
        (approvers.statement(proposed, "alice"), bytes(64), proposed.request_id),
    )
    after_bob = approvers.approve(proposed, "bob")
    assert after_bob.state == pb.REQUEST_STATE_PENDING_APPROVAL
    assert cli_json(env, daemon, "alice", "policy", "show")["version"] == 1  # type: ignore[index]
    # The proposal ends here, so that it does not linger for the tests after this one.
    cli_json(env, daemon, "admin", "requests", "cancel", proposed.request_id)

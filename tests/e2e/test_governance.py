"""Policy changes by quorum, time-locks (also across a restart), and the circuit breaker, end to end.

The tests in this module run in order on one environment: each builds on the policy the one before activated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

from .approvals_support import (
    Approvers,
    assert_signed_by,
    get_request,
    set_clock_offset,
    submit_tx,
    treasury_tx,
    wait_for_state,
)
from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    channel_for,
    cli_json,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)

NONCES = count(500)
TIMELOCK_SECONDS = 3600


class Running:
    """The module's daemon, which one test restarts."""

    def __init__(self, env: DevEnv, clock_file: Path, logs: Path) -> None:
        self.env = env
        self.clock_file = clock_file
        self.logs = logs
        self.starts = 0
        self.daemon = self.start()

    def start(self) -> Daemon:
        self.starts += 1
        return start_daemon(
            self.env,
            self.logs / f"daemon-{self.starts}.log",
            extra_env={"CUSTODY_UNSAFE_CLOCK_OFFSET_FILE": str(self.clock_file)},
        )

    def restart(self) -> None:
        assert stop_daemon(self.daemon) == 0
        self.daemon = self.start()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    env = make_dev_env(tmp_path_factory.mktemp("governance") / "env", backend, databases)
    directory = env.directory
    config = directory / "server.toml"
    config.write_text(config.read_text() + "\n[limits]\nworker_interval_seconds = 0.2\n")
    return env


@pytest.fixture(scope="module")
def running(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    clock_file = tmp_path_factory.mktemp("clock") / "offset"
    clock_file.write_text("0")
    handle = Running(env, clock_file, tmp_path_factory.mktemp("logs"))
    yield handle
    assert stop_daemon(handle.daemon) == 0


@pytest.fixture(scope="module")
def treasury(env: DevEnv, running: Running) -> dict[str, str]:
    # A proposal may name only keys that exist, and the dev policy names ops as well.
    cli_json(env, running.daemon, "admin", "keys", "create", "--label", "ops")
    return cli_json(env, running.daemon, "admin", "keys", "create", "--label", "treasury")  # type: ignore[return-value]


def approvers(env: DevEnv, running: Running) -> Approvers:
    return Approvers(env, running.daemon)


def active_version(env: DevEnv, running: Running) -> int:
    return int(cli_json(env, running.daemon, "alice", "policy", "show")["version"])  # type: ignore[index]


def timelocked_policy(env: DevEnv) -> str:
    document = (env.directory / "policy.toml").read_text()
    assert "version = 1\n" in document and "timelock_seconds = 0\n" in document
    # The first time-lock in the dev policy is the treasury transaction rule's.
    return document.replace("version = 1\n", "version = 2\n", 1).replace(
        "timelock_seconds = 0\n", f"timelock_seconds = {TIMELOCK_SECONDS}\n", 1
    )


def test_a_policy_change_without_quorum_does_not_take_effect(
    env: DevEnv, running: Running, treasury: dict[str, str], tmp_path: Path
) -> None:
    waiting = submit_tx(env, running.daemon, "backend", "treasury", treasury_tx(next(NONCES)))
    proposal_file = tmp_path / "policy-v2.toml"
    proposal_file.write_text(timelocked_policy(env))
    proposal = json.loads(
        run_cli(env, running.daemon, "admin", "--json", "policy", "propose", str(proposal_file)).stdout
    )
    assert proposal["state"] == "PENDING_APPROVAL"
    assert proposal["kind"] == "POLICY_CHANGE"

    proposed = get_request(env, running.daemon, proposal["request_id"])
    after_one = approvers(env, running).approve(proposed, "alice")
    assert after_one.state == pb.REQUEST_STATE_PENDING_APPROVAL
    assert active_version(env, running) == 1
    # The admin who proposed cannot approve (admin has no approver role); a treasury request still signs
    # under version 1 without a time-lock.
    approvers(env, running).approve(waiting, "bob")
    assert_signed_by(approvers(env, running).approve(waiting, "carol"), treasury["address"])
    TestState.proposal = proposed


class TestState:
    proposal: pb.SigningRequest


def test_the_admin_quorum_activates_the_new_version_and_supersedes_pending_requests(
    env: DevEnv, running: Running, treasury: dict[str, str]
) -> None:
    superseded = submit_tx(env, running.daemon, "backend", "treasury", treasury_tx(next(NONCES)))
    approvers(env, running).approve(superseded, "alice")
    activated = approvers(env, running).approve(TestState.proposal, "dave")
    assert activated.state == pb.REQUEST_STATE_APPROVED  # final for a policy change: it took effect
    assert active_version(env, running) == 2
    shown = cli_json(env, running.daemon, "bob", "policy", "show")
    assert f"timelock_seconds = {TIMELOCK_SECONDS}" in shown["document"]  # type: ignore[index]
    cancelled = get_request(env, running.daemon, superseded.request_id)
    assert cancelled.state == pb.REQUEST_STATE_CANCELLED
    assert "superseded by policy version 2" in cancelled.error


def test_a_proposal_must_be_the_next_version_and_only_admins_propose(env: DevEnv, running: Running) -> None:
    with channel_for(env, running.daemon, "admin") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.PolicyServiceStub(channel).ProposePolicy(
                pb.ProposePolicyRequest(document=timelocked_policy(env))  # version 2 again
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "next version is 3" in refused.value.details()
    with channel_for(env, running.daemon, "alice") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.PolicyServiceStub(channel).ProposePolicy(pb.ProposePolicyRequest(document="version = 3"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_timelocked_request_is_signed_by_the_worker_when_due(
    env: DevEnv, running: Running, treasury: dict[str, str]
) -> None:
    request = submit_tx(env, running.daemon, "backend", "treasury", treasury_tx(next(NONCES)))
    approvers(env, running).approve(request, "alice")
    approved = approvers(env, running).approve(request, "bob")
    assert approved.state == pb.REQUEST_STATE_APPROVED
    assert approved.not_before
    assert get_request(env, running.daemon, request.request_id).signature == b""
    try:
        set_clock_offset(running.clock_file, TIMELOCK_SECONDS + 1)
        assert_signed_by(
            wait_for_state(env, running.daemon, request.request_id, pb.REQUEST_STATE_SIGNED),
            treasury["address"],
        )
    finally:
        set_clock_offset(running.clock_file, 0)


def test_a_timelocked_request_is_signed_after_a_restart(
    env: DevEnv, running: Running, treasury: dict[str, str]
) -> None:
    request = submit_tx(env, running.daemon, "backend", "treasury", treasury_tx(next(NONCES)))
    approvers(env, running).approve(request, "carol")
    assert approvers(env, running).approve(request, "bob").state == pb.REQUEST_STATE_APPROVED
    assert stop_daemon(running.daemon) == 0
    try:
        set_clock_offset(running.clock_file, TIMELOCK_SECONDS + 1)
        running.daemon = running.start()
        assert_signed_by(
            wait_for_state(env, running.daemon, request.request_id, pb.REQUEST_STATE_SIGNED),
            treasury["address"],
        )
    finally:
        set_clock_offset(running.clock_file, 0)


def test_a_frozen_key_signs_nothing_until_the_admin_quorum_unfreezes_it(
    env: DevEnv, running: Running, treasury: dict[str, str]
) -> None:
    waiting = submit_tx(env, running.daemon, "backend", "treasury", treasury_tx(next(NONCES)))
    approvers(env, running).approve(waiting, "alice")

    refused = run_cli(env, running.daemon, "alice", "keys", "freeze", "treasury", check=False)
    assert refused.returncode != 0 and "security" in refused.stderr
    frozen = cli_json(env, running.daemon, "dave", "keys", "freeze", "treasury", "--reason", "drill")
    assert frozen["state"] == "FROZEN"  # type: ignore[index]

    with channel_for(env, running.daemon, "backend") as channel:
        with pytest.raises(grpc.RpcError) as refusal:
            pb_grpc.SigningServiceStub(channel).SubmitRequest(
                pb.SubmitRequestRequest(
                    key_label="treasury",
                    kind=pb.PAYLOAD_KIND_TRANSACTION,
                    payload=json.dumps(treasury_tx(next(NONCES))).encode(),
                )
            )
    assert refusal.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Approvals complete while frozen: the request waits, even once its time-lock has passed.
    assert approvers(env, running).approve(waiting, "bob").state == pb.REQUEST_STATE_APPROVED
    try:
        set_clock_offset(running.clock_file, TIMELOCK_SECONDS + 1)
        assert wait_for_state(
            env, running.daemon, waiting.request_id, pb.REQUEST_STATE_SIGNED, timeout=2
        ).state == (pb.REQUEST_STATE_APPROVED)

        unfreeze = json.loads(
            run_cli(env, running.daemon, "admin", "--json", "keys", "unfreeze", "treasury").stdout
        )
        unfreeze_request = get_request(env, running.daemon, unfreeze["request_id"])
        # Statements are checked against the daemon's clock, which runs an hour ahead here.
        approvers(env, running).approve(unfreeze_request, "alice", expires_in=TIMELOCK_SECONDS + 600)
        assert cli_json(env, running.daemon, "admin", "keys", "show", "treasury")["state"] == "FROZEN"  # type: ignore[index]
        approvers(env, running).approve(unfreeze_request, "dave", expires_in=TIMELOCK_SECONDS + 600)
        assert cli_json(env, running.daemon, "admin", "keys", "show", "treasury")["state"] == "ACTIVE"  # type: ignore[index]
        assert_signed_by(
            wait_for_state(env, running.daemon, waiting.request_id, pb.REQUEST_STATE_SIGNED),
            treasury["address"],
        )
    finally:
        set_clock_offset(running.clock_file, 0)

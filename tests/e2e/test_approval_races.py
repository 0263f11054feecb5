"""Approvals racing to the threshold give exactly one signature: threads on one daemon, and two daemon processes
sharing one SQLite file, 100 rounds each way."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb

from .approvals_support import Approvers, approver_key, assert_signed_by, get_request, submit_tx, treasury_tx
from .conftest import CUSTODY, Daemon, DevEnv, cli_json, start_daemon, stop_daemon

ROUNDS = 100
APPROVERS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> DevEnv:
    directory = tmp_path_factory.mktemp("races") / "env"
    subprocess.run([CUSTODY, "dev", "init", str(directory)], check=True, capture_output=True, timeout=120)
    return DevEnv(directory)


@pytest.fixture(scope="module")
def daemons(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    logs = tmp_path_factory.mktemp("race-logs")
    first = start_daemon(env, logs / "first.log")
    second = start_daemon(env, logs / "second.log")
    yield first, second
    assert stop_daemon(first) == 0
    assert stop_daemon(second) == 0


@pytest.fixture(scope="module")
def treasury(env: DevEnv, daemons: tuple[Daemon, Daemon]) -> dict[str, str]:
    return cli_json(env, daemons[0], "admin", "keys", "create", "--label", "treasury")  # type: ignore[return-value]


def signing_log_lines(daemons: tuple[Daemon, ...], request_id: str) -> int:
    pattern = re.compile(rf"request {request_id} signed with key")
    return sum(len(pattern.findall(daemon.log())) for daemon in daemons)


def race_round(
    env: DevEnv, approvers: Approvers, targets: list[Daemon], nonce: int
) -> tuple[pb.SigningRequest, list]:
    request = submit_tx(env, targets[0], "backend", "treasury", treasury_tx(nonce))
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL
    # Statements and signatures are made before the race so the calls leave as close together as possible.
    prepared = []
    for index, name in enumerate(APPROVERS):
        statement = approvers.statement(request, name)
        prepared.append(
            (name, targets[index % len(targets)], statement, approver_key(env, name).sign(statement))
        )

    def call(item: tuple[str, Daemon, bytes, bytes]) -> object:
        name, target, statement, signature = item
        try:
            return approvers.stub(name, target).Approve(
                pb.ApproveRequest(request_id=request.request_id, statement=statement, signature=signature),
                timeout=60,
            )
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(max_workers=len(prepared)) as pool:
        outcomes = list(pool.map(call, prepared))
    return request, outcomes


@pytest.mark.parametrize("spread", ["threads-on-one-daemon", "two-daemon-processes"])
def test_racing_approvals_sign_exactly_once(
    env: DevEnv, daemons: tuple[Daemon, Daemon], treasury: dict[str, str], spread: str
) -> None:
    targets = [daemons[0]] if spread == "threads-on-one-daemon" else list(daemons)
    approvers = Approvers(env, daemons[0])
    base_nonce = 0 if spread == "threads-on-one-daemon" else 10_000
    for round_number in range(ROUNDS):
        request, outcomes = race_round(env, approvers, targets, base_nonce + round_number)
        final = get_request(env, daemons[0], request.request_id)
        assert_signed_by(final, treasury["address"])
        # Exactly two verdicts counted (the quorum); the third arrived after it was met and was refused.
        accepted = [outcome for outcome in outcomes if not isinstance(outcome, grpc.StatusCode)]
        refused = [outcome for outcome in outcomes if isinstance(outcome, grpc.StatusCode)]
        assert len(accepted) == 2, outcomes
        assert refused == [grpc.StatusCode.FAILED_PRECONDITION], outcomes
        assert len(final.approvals) == 2
        assert signing_log_lines(daemons, request.request_id) == 1, f"round {round_number}"

"""Approvals racing to the threshold through three replicas sharing one database (each approver through a
different replica) give exactly one signature and one signing audit event, 100 rounds, on SQLite and on
PostgreSQL. Threads racing inside one process are tested in tests/app/test_approvals.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb

from .approvals_support import Approvers, approver_key, assert_signed_by, get_request, submit_tx, treasury_tx
from .conftest import Daemon, Databases, DevEnv, Nonces, cli_json, make_dev_env, start_daemon, stop_daemon

ROUNDS = 100
APPROVERS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    env = make_dev_env(tmp_path_factory.mktemp("races") / "env", backend, databases)
    return env


@pytest.fixture(scope="module")
def daemons(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, ...]]:
    logs = tmp_path_factory.mktemp("race-logs")
    replicas = tuple(start_daemon(env, logs / f"replica-{index}.log") for index in range(3))
    yield replicas
    for replica in replicas:
        assert stop_daemon(replica) == 0


@pytest.fixture(scope="module")
def treasury(env: DevEnv, daemons: tuple[Daemon, ...]) -> dict[str, str]:
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


def test_racing_approvals_through_three_replicas_sign_exactly_once(
    env: DevEnv, daemons: tuple[Daemon, ...], treasury: dict[str, str], nonces: Nonces
) -> None:
    approvers = Approvers(env, daemons[0])
    for round_number in range(ROUNDS):
        request, outcomes = race_round(env, approvers, list(daemons), next(nonces))
        final = get_request(env, daemons[0], request.request_id)
        assert_signed_by(final, treasury["address"])
        # Exactly two verdicts counted (the quorum); the third arrived after it was met and was refused.
        accepted = [outcome for outcome in outcomes if not isinstance(outcome, grpc.StatusCode)]
        refused = [outcome for outcome in outcomes if isinstance(outcome, grpc.StatusCode)]
        assert len(accepted) == 2, outcomes
        assert refused == [grpc.StatusCode.FAILED_PRECONDITION], outcomes
        assert len(final.approvals) == 2
        assert signing_log_lines(daemons, request.request_id) == 1, f"round {round_number}"
        signing_events = env.sql(
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'request.signed' AND request_id = ?",
            (request.request_id,),
        )
        assert signing_events[0][0] == 1, f"round {round_number}"

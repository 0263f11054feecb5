"""Watch streams cannot starve the daemon: a real daemon with four threads admits two watches, refuses more
with RESOURCE_EXHAUSTED, still answers approvals and health checks, and `custody requests wait` still ends
with the signature, whether its watch is refused (it polls) or cut short every second (it subscribes again).

Every signature is recovered with eth-account and compared with the treasury key's address.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from eth_account import Account
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

from .approvals_support import (
    Approvers,
    approver_key,
    assert_signed_by,
    independent_digest,
    submit_tx,
    treasury_tx,
)
from .conftest import (
    BACKENDS,
    CUSTODY,
    Daemon,
    Databases,
    DevEnv,
    Nonces,
    channel_for,
    cli_json,
    make_dev_env,
    start_daemon,
    stop_daemon,
)

# Longer than any step of these tests takes; only a daemon that stopped answering reaches it.
STREAM_TIMEOUT_SECONDS = 60
# What the brief promises a caller while every watch slot is taken: an answer within this many seconds.
PROMPT_SECONDS = 5


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> DevEnv:
    # The limits live in the transport, whatever the store; the first configured backend is enough.
    return make_dev_env(tmp_path_factory.mktemp("watch-limits") / "env", BACKENDS[0], databases)


@pytest.fixture(scope="module")
def base_config(env: DevEnv) -> str:
    return env.config.read_text()


@contextmanager
def serve_with_limits(
    env: DevEnv, base_config: str, log_path: Path, *, watch_seconds: float
) -> Iterator[Daemon]:
    env.config.write_text(
        base_config
        + f"\n[limits]\nmax_workers = 4\nmax_watches = 2\nwatch_seconds = {watch_seconds}\n"
        + "worker_interval_seconds = 0.2\n"
    )
    daemon = start_daemon(env, log_path)
    try:
        yield daemon
    finally:
        assert stop_daemon(daemon) == 0


def treasury_address(env: DevEnv, daemon: Daemon) -> str:
    """The treasury key's address, creating the key through the CLI the first time."""
    listed = cli_json(env, daemon, "admin", "keys", "list")
    assert isinstance(listed, list)
    for key in listed:
        if key["label"] == "treasury":
            return str(key["address"])
    created = cli_json(env, daemon, "admin", "keys", "create", "--label", "treasury")
    assert isinstance(created, dict)
    return str(created["address"])


def approve_promptly(
    env: DevEnv, daemon: Daemon, request: pb.SigningRequest, approver: str
) -> pb.SigningRequest:
    statement = Approvers(env, daemon).statement(request, approver)
    signature = approver_key(env, approver).sign(statement)
    with channel_for(env, daemon, approver) as channel:
        return (
            pb_grpc.ApprovalServiceStub(channel)
            .Approve(
                pb.ApproveRequest(request_id=request.request_id, statement=statement, signature=signature),
                timeout=PROMPT_SECONDS,
            )
            .request
        )


def start_cli_wait(env: DevEnv, daemon: Daemon, request_id: str) -> subprocess.Popen[str]:
    """`custody requests wait ID` as a user runs it, left running in the background."""
    return subprocess.Popen(
        [
            CUSTODY,
            "--profile",
            str(env.profile("backend")),
            "--server",
            daemon.address,
            "--json",
            "requests",
            "wait",
            request_id,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CUSTODY_PROFILE": ""},
    )


def finished_cli_wait(waiting: subprocess.Popen[str]) -> dict[str, object]:
    try:
        stdout, stderr = waiting.communicate(timeout=STREAM_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        waiting.kill()
        waiting.communicate()
        raise
    assert waiting.returncode == 0, stderr
    answer = json.loads(stdout)
    assert isinstance(answer, dict)
    return answer


def assert_cli_answer_signed_by(answer: dict[str, object], tx: dict[str, object], address: str) -> None:
    assert answer["state"] == "SIGNED", answer
    signed_tx = bytes.fromhex(str(answer["signed_tx"]).removeprefix("0x"))
    assert Account.recover_transaction(signed_tx) == address
    assert bytes.fromhex(str(answer["digest"]).removeprefix("0x")) == independent_digest(tx)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_extra_watches_are_refused_and_approvals_health_and_waiting_go_on(
    env: DevEnv, base_config: str, tmp_path: Path, nonces: Nonces
) -> None:
    with serve_with_limits(env, base_config, tmp_path / "daemon.log", watch_seconds=60) as daemon:
        address = treasury_address(env, daemon)
        tx = treasury_tx(next(nonces))
        request = submit_tx(env, daemon, "backend", "treasury", tx)
        assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request
        watch = pb.WatchRequestRequest(request_id=request.request_id)

        channels = [channel_for(env, daemon, "admin") for _ in range(5)]
        try:
            held = []
            for channel in channels[:2]:
                stream = pb_grpc.SigningServiceStub(channel).WatchRequest(
                    watch, timeout=STREAM_TIMEOUT_SECONDS
                )
                # The first message arrives once the stream runs, and so holds its slot.
                assert next(stream).state == pb.REQUEST_STATE_PENDING_APPROVAL
                held.append(stream)

            for channel in channels[2:4]:
                extra = pb_grpc.SigningServiceStub(channel).WatchRequest(
                    watch, timeout=STREAM_TIMEOUT_SECONDS
                )
                with pytest.raises(grpc.RpcError) as refused:
                    next(extra)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "GetRequest" in str(refused.value.details())
            # The health service's Watch holds a thread just the same, so it counts against the same limit.
            health_watch = health_pb2_grpc.HealthStub(channels[4]).Watch(
                health_pb2.HealthCheckRequest(), timeout=STREAM_TIMEOUT_SECONDS
            )
            with pytest.raises(grpc.RpcError) as refused_health:
                next(health_watch)
            assert refused_health.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            # The threads the watches do not hold still answer at once.
            check = health_pb2_grpc.HealthStub(channels[4]).Check(
                health_pb2.HealthCheckRequest(), timeout=PROMPT_SECONDS
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING

            # A user waiting now is refused a watch too, and keeps waiting by polling.
            refusals_before = daemon.log().count("refused WatchRequest")
            waiting = start_cli_wait(env, daemon, request.request_id)
            try:
                wait_for(
                    lambda: daemon.log().count("refused WatchRequest") > refusals_before,
                    "the CLI's watch to be refused",
                )
                assert waiting.poll() is None, waiting.communicate()

                first = approve_promptly(env, daemon, request, "alice")
                assert first.state == pb.REQUEST_STATE_PENDING_APPROVAL
                signed = approve_promptly(env, daemon, request, "bob")
                assert_signed_by(signed, address)
                answer = finished_cli_wait(waiting)
            finally:
                if waiting.poll() is None:
                    waiting.kill()
                    waiting.communicate()
            assert_cli_answer_signed_by(answer, tx, address)

            # The held watches report each change (alice's approval, then the signature) and end there.
            for stream in held:
                updates = list(stream)
                assert [update.state for update in updates][-1] == pb.REQUEST_STATE_SIGNED
                assert_signed_by(updates[-1], address)
        finally:
            for channel in channels:
                channel.close()


def test_waiting_outlasts_watches_cut_short_every_second(
    env: DevEnv, base_config: str, tmp_path: Path, nonces: Nonces
) -> None:
    with serve_with_limits(env, base_config, tmp_path / "daemon.log", watch_seconds=1) as daemon:
        address = treasury_address(env, daemon)
        tx = treasury_tx(next(nonces))
        request = submit_tx(env, daemon, "backend", "treasury", tx)
        assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request

        # The daemon ends a watch after watch_seconds, normally, although the request is not final.
        with channel_for(env, daemon, "admin") as channel:
            updates = list(
                pb_grpc.SigningServiceStub(channel).WatchRequest(
                    pb.WatchRequestRequest(request_id=request.request_id), timeout=STREAM_TIMEOUT_SECONDS
                )
            )
        assert [update.state for update in updates] == [pb.REQUEST_STATE_PENDING_APPROVAL]

        waiting = start_cli_wait(env, daemon, request.request_id)
        try:
            # Every watch the CLI opens ends with one log line; three of them are two re-subscriptions.
            wait_for(
                lambda: daemon.log().count("WatchRequest by backend: OK") >= 3,
                "the CLI to subscribe three times",
            )
            assert waiting.poll() is None, waiting.communicate()
            approve_promptly(env, daemon, request, "carol")
            assert_signed_by(approve_promptly(env, daemon, request, "alice"), address)
            answer = finished_cli_wait(waiting)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.communicate()
        assert_cli_answer_signed_by(answer, tx, address)

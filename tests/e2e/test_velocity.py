"""Velocity limits end to end: a key that moves too much in its window stops signing at once, and with
freeze_on_breach the circuit breaker freezes it automatically."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb

from .approvals_support import assert_signed_by, submit_tx, treasury_tx
from .conftest import Daemon, Databases, DevEnv, cli_json, make_dev_env, start_daemon, stop_daemon

VELOCITY = "velocity = { window_seconds = 3600, max_count = 2, freeze_on_breach = true }\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    env = make_dev_env(tmp_path_factory.mktemp("velocity") / "env", backend, databases)
    directory = env.directory
    # policy.toml seeds the database at the first start, so editing it before then sets the policy in force.
    policy = directory / "policy.toml"
    document = policy.read_text()
    cap = 'max_value_wei = "1000000000000000000"  # 1 ether\n'
    assert cap in document
    policy.write_text(document.replace(cap, cap + VELOCITY, 1))
    return env


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    assert stop_daemon(running) == 0


def test_hitting_the_velocity_limit_denies_and_freezes_the_key(env: DevEnv, daemon: Daemon) -> None:
    ops = cli_json(env, daemon, "admin", "keys", "create", "--label", "ops")
    for nonce in range(2):
        assert_signed_by(submit_tx(env, daemon, "backend", "ops", treasury_tx(nonce)), ops["address"])  # type: ignore[index]

    third = submit_tx(env, daemon, "backend", "ops", treasury_tx(2))
    assert third.state == pb.REQUEST_STATE_DENIED
    assert third.signature == b""
    assert cli_json(env, daemon, "admin", "keys", "show", "ops")["state"] == "FROZEN"  # type: ignore[index]

    explained = cli_json(env, daemon, "admin", "policy", "explain", third.request_id)
    velocity = [
        condition
        for rule in explained["rules"]  # type: ignore[index]
        if rule["rule"] == "ops-transactions"
        for condition in rule["conditions"]
        if condition["condition"].startswith("velocity")
    ]
    assert velocity and not velocity[0]["matched"]

    with pytest.raises(grpc.RpcError) as refused:
        submit_tx(env, daemon, "backend", "ops", treasury_tx(3))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "frozen" in refused.value.details()

"""Failing closed end to end: when the database (and so the audit log) cannot be written, nothing is signed,
nothing is recorded, and the caller gets UNAVAILABLE; once it can be written again, service resumes.

The database files are made immutable with chattr, which stops writes even for root, while the daemon runs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

from .approvals_support import assert_signed_by, submit_tx, treasury_tx
from .conftest import (
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

pytestmark = pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr (e2fsprogs) is not installed")


@pytest.fixture(scope="module", params=[False, True], ids=["two-transactions", "sign-in-write-transaction"])
def env(
    tmp_path_factory: pytest.TempPathFactory,
    backend: str,
    databases: Databases,
    request: pytest.FixtureRequest,
) -> DevEnv:
    """Each backend, signing after the claim commits and signing inside the recording transaction."""
    return make_dev_env(
        tmp_path_factory.mktemp("fail-closed") / "env",
        backend,
        databases,
        sign_in_write_transaction=request.param,
    )


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    stop_daemon(running)


def database_files(env: DevEnv) -> list[Path]:
    return [path for path in env.directory.glob("custody.db*") if path.is_file()]


def set_immutable(paths: list[Path], immutable: bool) -> None:
    for path in paths:
        subprocess.run(["chattr", "+i" if immutable else "-i", str(path)], check=True)


def count_requests(env: DevEnv, daemon: Daemon) -> int:
    with channel_for(env, daemon, "admin") as channel:
        return len(
            pb_grpc.SigningServiceStub(channel).ListRequests(pb.ListRequestsRequest(limit=1000)).requests
        )


def test_an_unwritable_database_signs_nothing_and_service_resumes(
    env: DevEnv, daemon: Daemon, nonces: Nonces
) -> None:
    if env.backend != "sqlite":
        pytest.skip(
            "the database files are only on this machine's disk for SQLite; the store tests cover PostgreSQL"
        )
    ops = cli_json(env, daemon, "admin", "keys", "create", "--label", "ops")
    assert_signed_by(submit_tx(env, daemon, "backend", "ops", treasury_tx(next(nonces))), ops["address"])  # type: ignore[index]
    # The refused request's nonce is not held: the same transaction signs once the database is writable.
    nonce = next(nonces)
    before = count_requests(env, daemon)

    files = database_files(env)
    set_immutable(files, True)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            submit_tx(env, daemon, "backend", "ops", treasury_tx(nonce))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database" in refused.value.details()
        with channel_for(env, daemon, "admin") as channel, pytest.raises(grpc.RpcError) as refused:
            pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="blocked"))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        set_immutable(files, False)

    assert count_requests(env, daemon) == before
    assert "blocked" not in {key["label"] for key in cli_json(env, daemon, "admin", "keys", "list")}  # type: ignore[union-attr]
    assert_signed_by(submit_tx(env, daemon, "backend", "ops", treasury_tx(nonce)), ops["address"])  # type: ignore[index]
    assert cli_json(env, daemon, "admin", "audit", "verify")["ok"] is True  # type: ignore[index]

"""The daemon with `[hsm] lanes = 3`: signatures come from worker processes, each logged in on its own, and
all of them verify."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from .approvals_support import assert_signed_by, submit_tx, treasury_tx
from .conftest import BACKENDS, Databases, DevEnv, Nonces, cli_json, make_dev_env, start_daemon, stop_daemon


def with_lanes(env: DevEnv, lanes: int) -> None:
    config = env.config.read_text()
    assert "\n[hsm]\n" in config
    env.config.write_text(config.replace("\n[hsm]\n", f"\n[hsm]\nlanes = {lanes}\n", 1))


def test_a_daemon_with_three_lanes_signs_concurrent_requests(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, nonces: Nonces
) -> None:
    # Lanes are worker processes in front of the HSM, whatever the store; the first configured backend is enough.
    # Lanes are for an HSM whose calls take milliseconds, which must never hold the write lock: the daemon
    # refuses lanes together with signing inside the write transaction.
    env = make_dev_env(
        tmp_path_factory.mktemp("lanes") / "env", BACKENDS[0], databases, sign_in_write_transaction=False
    )
    with_lanes(env, 3)
    daemon = start_daemon(env, tmp_path_factory.mktemp("lane-logs") / "daemon.log")
    try:
        ops = cli_json(env, daemon, "admin", "keys", "create", "--label", "ops")
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(
                pool.map(
                    lambda nonce: submit_tx(env, daemon, "backend", "ops", treasury_tx(nonce)),
                    nonces.reserve(36),
                )
            )
        for answer in answers:
            assert_signed_by(answer, ops["address"])  # type: ignore[index]
    finally:
        assert stop_daemon(daemon) == 0
    assert "started 3 HSM lanes" in daemon.log()
    assert "stopped the HSM lanes" in daemon.log()

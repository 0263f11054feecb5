"""What survives a daemon's restart: a time-locked request approved before a clean stop is signed by the next
daemon once its time-lock has passed, found by the background worker in the database.

The time-lock is a few real seconds, set in policy.toml before the first start seeds it. The in-process tests
of time-locks (tests/app/test_governance.py) move a clock instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from custody.api._gen import custody_pb2 as pb

from .approvals_support import (
    Approvers,
    assert_signed_by,
    get_request,
    submit_tx,
    treasury_tx,
    wait_for_state,
)
from .conftest import BACKENDS, Databases, Nonces, cli_json, make_dev_env, start_daemon, stop_daemon

TIMELOCK_SECONDS = 3


def test_a_timelocked_request_approved_before_a_restart_is_signed_after_it(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, nonces: Nonces
) -> None:
    # The store's query for due requests is tested on both backends in tests/integration/store; the first
    # configured backend is enough for the restart.
    env = make_dev_env(tmp_path_factory.mktemp("restarts") / "env", BACKENDS[0], databases)
    policy = env.directory / "policy.toml"
    document = policy.read_text()
    assert "timelock_seconds = 0\n" in document
    # The first time-lock in the development policy is the treasury transaction rule's.
    policy.write_text(
        document.replace("timelock_seconds = 0\n", f"timelock_seconds = {TIMELOCK_SECONDS}\n", 1)
    )
    env.config.write_text(env.config.read_text() + "\n[limits]\nworker_interval_seconds = 0.2\n")
    logs = tmp_path_factory.mktemp("restart-logs")

    first = start_daemon(env, logs / "first.log")
    try:
        treasury = cli_json(env, first, "admin", "keys", "create", "--label", "treasury")
        request = submit_tx(env, first, "backend", "treasury", treasury_tx(next(nonces)))
        approvers = Approvers(env, first)
        approvers.approve(request, "alice")
        approved = approvers.approve(request, "bob")
    finally:
        assert stop_daemon(first) == 0
    assert approved.state == pb.REQUEST_STATE_APPROVED
    assert approved.signature == b""
    not_before = datetime.fromisoformat(approved.not_before)
    time.sleep(max(0.0, (not_before - datetime.now(UTC)).total_seconds()))

    second = start_daemon(env, logs / "second.log")
    try:
        signed = wait_for_state(env, second, request.request_id, pb.REQUEST_STATE_SIGNED)
        assert_signed_by(signed, treasury["address"])  # type: ignore[index]
        assert get_request(env, second, request.request_id).signed_tx == signed.signed_tx
    finally:
        assert stop_daemon(second) == 0
    assert f"request {request.request_id} signed with key treasury" in second.log()

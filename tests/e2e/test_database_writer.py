"""A database writer gains no signing power, on a real daemon and on each backend.

The tests edit the daemon's database with plain SQL as an outsider who can write it but holds no HSM key
would: a policy version inserted with a rule that signs treasury transactions at once, a waiting treasury
request set to APPROVED with the decision "sign", and a time-lock moved to now after the quorum. Each time the
worker or the submission reaches the seal check before the HSM, nothing is signed, the request ends FAILED
naming the seal, a ``seal.mismatch`` audit event is written and the daemon logs it. And the newest audit
event rewritten with every hash after it computed again: the daemon appends nothing more and signs no
checkpoint over it. A freeze's events deleted right after it: nothing is signed, and the next start refuses
the database.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.exit_codes import EXIT_START_REFUSED
from custody.store.codec import encode_time
from tests.tampering import (
    append_chained_audit_event,
    copy_database,
    restore_database,
    rewrite_audit_actor,
)

from .approvals_support import Approvers, assert_signed_by, submit_tx, treasury_tx, wait_for_state
from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    Nonces,
    channel_for,
    cli_json,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)
from .test_startup_refusals import serve_until_exit

TIMELOCK_SECONDS = 3600
TREASURY_SIGNS_AT_ONCE = """[[rules]]
name = "treasury-sign"
keys = ["treasury"]
kinds = ["transaction"]
chain_ids = [1, 11155111]
action = "sign"

"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    env = make_dev_env(tmp_path_factory.mktemp("writer") / "env", backend, databases)
    config = env.directory / "server.toml"
    config.write_text(config.read_text() + "\n[limits]\nworker_interval_seconds = 0.2\n")
    # The treasury's transfers wait an hour after their quorum, so that moving the time-lock has a target.
    policy = env.directory / "policy.toml"
    document = policy.read_text()
    assert "timelock_seconds = 0\n" in document
    policy.write_text(
        document.replace("timelock_seconds = 0\n", f"timelock_seconds = {TIMELOCK_SECONDS}\n", 1)
    )
    return env


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    stop_daemon(running)


@pytest.fixture(scope="module")
def treasury_address(env: DevEnv, daemon: Daemon) -> str:
    with channel_for(env, daemon, "admin") as channel:
        keys = pb_grpc.KeyServiceStub(channel)
        return str(keys.CreateKey(pb.CreateKeyRequest(label="treasury")).key.address)


def _seal_mismatches(env: DevEnv, daemon: Daemon, request_id: str) -> list[pb.AuditEvent]:
    with channel_for(env, daemon, "admin") as channel:
        page = pb_grpc.AuditServiceStub(channel).ListEvents(
            pb.ListEventsRequest(limit=10_000, kind="seal.mismatch", request_id=request_id)
        )
    return list(page.events)


def _assert_refused_for_its_seal(env: DevEnv, daemon: Daemon, request_id: str) -> None:
    ended = wait_for_state(env, daemon, request_id, pb.REQUEST_STATE_FAILED)
    assert ended.state == pb.REQUEST_STATE_FAILED, ended
    assert not ended.signature and not ended.signed_tx
    assert "sealed" in ended.error
    (mismatch,) = _seal_mismatches(env, daemon, request_id)
    assert "seal" in json.loads(mismatch.details_json)["reason"]
    deadline = time.monotonic() + 5
    while request_id not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"request {request_id} was not signed" in daemon.log()


def test_a_waiting_request_edited_to_sign_at_once_is_not_signed(
    env: DevEnv, daemon: Daemon, treasury_address: str, nonces: Nonces
) -> None:
    request = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL

    env.sql(
        "UPDATE requests SET state = 'APPROVED', decision_action = 'sign', quorum = '[]' WHERE request_id = ?",
        (request.request_id,),
    )

    _assert_refused_for_its_seal(env, daemon, request.request_id)


def test_a_time_lock_moved_to_now_after_the_quorum_is_not_honoured(
    env: DevEnv, daemon: Daemon, treasury_address: str, nonces: Nonces
) -> None:
    approvers = Approvers(env, daemon)
    request = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
    approvers.approve(request, "alice")
    approved = approvers.approve(request, "bob")
    assert approved.state == pb.REQUEST_STATE_APPROVED and not approved.signed_tx

    env.sql(
        "UPDATE requests SET not_before = ? WHERE request_id = ?",
        (encode_time(datetime.now(UTC), "not_before"), request.request_id),
    )

    _assert_refused_for_its_seal(env, daemon, request.request_id)


def test_a_policy_version_inserted_in_the_database_signs_nothing(
    env: DevEnv, daemon: Daemon, treasury_address: str, nonces: Nonces
) -> None:
    ((active_version, document),) = env.sql(
        "SELECT version, document FROM policy_versions ORDER BY version DESC LIMIT 1"
    )
    forged_version = active_version + 1
    forged = document.replace(f"version = {active_version}\n", f"version = {forged_version}\n", 1).replace(
        "[[rules]]\n", TREASURY_SIGNS_AT_ONCE + "[[rules]]\n", 1
    )
    env.sql(
        "INSERT INTO policy_versions (version, document, activated_at, request_id) VALUES (?, ?, ?, NULL)",
        (forged_version, forged, encode_time(datetime.now(UTC), "activated_at")),
    )
    try:
        request = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
        assert request.decision.rule == "treasury-sign"
        _assert_refused_for_its_seal(env, daemon, request.request_id)
    finally:
        env.sql("DELETE FROM policy_versions WHERE version = ?", (forged_version,))

    # With the forged row gone the sealed policy is in force again: an honest request gathers its quorum and
    # waits for its time-lock, its seals verifying on every round of the worker.
    approvers = Approvers(env, daemon)
    honest = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
    assert honest.state == pb.REQUEST_STATE_PENDING_APPROVAL
    approvers.approve(honest, "alice")
    assert approvers.approve(honest, "carol").state == pb.REQUEST_STATE_APPROVED
    time.sleep(1)
    assert wait_for_state(env, daemon, honest.request_id, pb.REQUEST_STATE_APPROVED).state == (
        pb.REQUEST_STATE_APPROVED
    )
    assert _seal_mismatches(env, daemon, honest.request_id) == []


def test_audit_events_rewritten_after_the_last_checkpoint_get_no_checkpoint(
    tmp_path: Path, backend: str, databases: Databases, nonces: Nonces
) -> None:
    """The writer rewrites the newest event and computes every hash after it again, so the chain verifies;
    the daemon, which remembers the head it appended, refuses the next append and signs no checkpoint over the
    forgery, not even at shutdown."""
    env = make_dev_env(tmp_path / "env", backend, databases)
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        with channel_for(env, daemon, "admin") as channel:
            ops = pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="ops")).key
        signed = submit_tx(env, daemon, "backend", "ops", treasury_tx(next(nonces)))
        assert signed.state == pb.REQUEST_STATE_SIGNED and ops.address
        ((head,),) = env.sql("SELECT MAX(sequence) FROM audit_events")
        rewrite_audit_actor(env.sql, head - 1, "someone-else")

        with pytest.raises(grpc.RpcError) as refused:
            submit_tx(env, daemon, "backend", "ops", treasury_tx(next(nonces)))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop_daemon(daemon)
    assert env.sql("SELECT COUNT(*) FROM audit_events WHERE kind = 'audit.checkpoint'") == [(0,)]
    assert "was changed in the database" in daemon.log()


def _refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_START_REFUSED, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("custody: cannot start: ")]
    assert "listening" not in result.stderr
    return line


def _signed_ops_transfer(env: DevEnv, daemon: Daemon, nonce: int, address: str) -> None:
    signed = submit_tx(env, daemon, "backend", "ops", treasury_tx(nonce))
    assert signed.state == pb.REQUEST_STATE_SIGNED
    assert_signed_by(signed, address)


def test_a_database_restored_to_an_older_copy_does_not_start_until_the_anchor_is_retired(
    tmp_path: Path, backend: str, databases: Databases, nonces: Nonces
) -> None:
    """The writer takes a copy of the database, lets the daemon sign, then puts the copy back (which forgets the
    signatures and their nonces): the HSM token's anchor vouches for a later audit event, so the daemon does not
    start. An operator who restored the copy on purpose retires the anchor, and the next start records that."""
    env = make_dev_env(tmp_path / "env", backend, databases)
    daemon = start_daemon(env, tmp_path / "first.log")
    try:
        with channel_for(env, daemon, "admin") as channel:
            ops = pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="ops")).key
        copy_database(env, "older")
        _signed_ops_transfer(env, daemon, next(nonces), ops.address)
        _signed_ops_transfer(env, daemon, next(nonces), ops.address)
    finally:
        assert stop_daemon(daemon) == 0
    ((anchored,),) = env.sql("SELECT MAX(sequence) FROM audit_events")

    restore_database(env, "older")
    ((restored_head,),) = env.sql("SELECT MAX(sequence) FROM audit_events")

    refusal = _refusal(serve_until_exit(env))
    assert refusal == (
        f"custody: cannot start: the database's audit log ends at event {restored_head}, but the HSM token's"
        f" anchor vouches for event {anchored}: the database was restored to an older copy or its newest events"
        " were deleted; refusing to start (an operator who restored this copy on purpose retires the token's"
        " anchor with `custody audit retire-token-state`, see docs/operations.md)"
    )

    ((seal_key_id,),) = env.sql("SELECT key_id FROM daemon_keys WHERE purpose = 'seal'")
    unnamed = run_cli(
        env, None, None, "audit", "retire-token-state", "--config", str(env.config), check=False
    )
    assert unnamed.returncode != 0 and seal_key_id in unnamed.stderr
    retired = run_cli(
        env,
        None,
        None,
        "audit",
        "retire-token-state",
        "--config",
        str(env.config),
        "--seal-key-id",
        seal_key_id,
    )
    assert f"seal key {seal_key_id} (anchored at audit event {anchored})" in retired.stdout
    daemon = start_daemon(env, tmp_path / "second.log")
    try:
        with channel_for(env, daemon, "admin") as channel:
            events = pb_grpc.AuditServiceStub(channel).ListEvents(
                pb.ListEventsRequest(limit=100, kind="anchor.retired")
            )
        (event,) = events.events
        assert json.loads(event.details_json)["anchors"][0]["sequence"] == anchored
        _signed_ops_transfer(env, daemon, next(nonces), ops.address)
    finally:
        assert stop_daemon(daemon) == 0


def test_deleting_every_seal_and_the_seal_keys_record_does_not_start(
    tmp_path: Path, backend: str, databases: Databases, nonces: Nonces
) -> None:
    """With every seal and the record of the seal key deleted, a new seal key would seal whatever the database
    holds, here a waiting treasury request edited to sign at once: the token still holds the seal key, so the
    daemon does not start and nothing is signed."""
    env = make_dev_env(tmp_path / "env", backend, databases)
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        with channel_for(env, daemon, "admin") as channel:
            pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="treasury"))
        request = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
        assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL
    finally:
        assert stop_daemon(daemon) == 0
    env.sql(
        "UPDATE requests SET state = 'APPROVED', decision_action = 'sign', quorum = '[]' WHERE request_id = ?",
        (request.request_id,),
    )
    env.sql("DELETE FROM seals")
    ((seal_key_id,),) = env.sql("SELECT key_id FROM daemon_keys WHERE purpose = 'seal'")
    env.sql("DELETE FROM daemon_keys WHERE purpose = 'seal'")

    refusal = _refusal(serve_until_exit(env))

    assert f"the HSM token holds custody's seal key {seal_key_id}" in refusal
    assert "which the database does not name" in refusal
    assert env.sql("SELECT COUNT(*) FROM seals") == [(0,)]
    assert env.sql("SELECT signature FROM requests WHERE request_id = ?", (request.request_id,)) == [(None,)]


def test_a_frozen_keys_older_sealed_active_row_put_back_signs_nothing(
    tmp_path: Path, backend: str, databases: Databases, nonces: Nonces
) -> None:
    """The writer keeps the ops key's ACTIVE row and its seal, and puts both back after the security approver
    froze the key: the seal verifies, but the audit log says the key was frozen since, so nothing is signed,
    before a restart and after one."""
    env = make_dev_env(tmp_path / "env", backend, databases)
    daemon = start_daemon(env, tmp_path / "first.log")
    try:
        _freeze_ops_and_put_its_active_row_back(env, daemon, next(nonces))

        refused = submit_tx(env, daemon, "backend", "ops", treasury_tx(next(nonces)))
        _assert_put_back_refused(env, daemon, refused.request_id)
    finally:
        assert stop_daemon(daemon) == 0
    daemon = start_daemon(env, tmp_path / "second.log")
    try:
        refused = submit_tx(env, daemon, "backend", "ops", treasury_tx(next(nonces)))
        _assert_put_back_refused(env, daemon, refused.request_id)
    finally:
        assert stop_daemon(daemon) == 0
    assert env.sql("SELECT COUNT(*) FROM requests WHERE key_label = 'ops' AND state = 'SIGNED'") == [(1,)]


def _freeze_ops_and_put_its_active_row_back(env: DevEnv, daemon: Daemon, nonce: int) -> int:
    """Create the ops key and sign one transfer with it, keep its ACTIVE row and seal, have the security approver
    freeze it, and put the copy back as the writer would; returns the freeze count the freeze left."""
    with channel_for(env, daemon, "admin") as channel:
        ops = pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="ops")).key
    _signed_ops_transfer(env, daemon, nonce, ops.address)
    kept_row = env.sql("SELECT state, freezes FROM keys WHERE label = 'ops'")
    kept_seal = env.sql("SELECT seal FROM seals WHERE subject = 'key:ops'")
    with channel_for(env, daemon, "dave") as channel:
        pb_grpc.KeyServiceStub(channel).FreezeKey(pb.FreezeKeyRequest(label="ops", reason="lost laptop"))
    ((freezes_now,),) = env.sql("SELECT freezes FROM keys WHERE label = 'ops'")
    ((state, freezes),), ((seal,),) = kept_row, kept_seal
    env.sql("UPDATE keys SET state = ?, freezes = ? WHERE label = 'ops'", (state, freezes))
    env.sql("UPDATE seals SET seal = ? WHERE subject = 'key:ops'", (seal,))
    return int(freezes_now)


def _assert_ops_submission_unavailable(env: DevEnv, daemon: Daemon, nonce: int, because: str) -> None:
    """A transfer submitted for ops is refused with UNAVAILABLE, for a reason naming ``because``."""
    with pytest.raises(grpc.RpcError) as refused:
        submit_tx(env, daemon, "backend", "ops", treasury_tx(nonce))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert because in (refused.value.details() or "")


def _assert_put_back_refused(env: DevEnv, daemon: Daemon, request_id: str) -> None:
    ended = wait_for_state(env, daemon, request_id, pb.REQUEST_STATE_FAILED)
    assert ended.state == pb.REQUEST_STATE_FAILED, ended
    assert not ended.signature and not ended.signed_tx
    assert "key ops was frozen" in ended.error and "put back to an older sealed value" in ended.error
    (mismatch,) = _seal_mismatches(env, daemon, request_id)
    assert "put back" in json.loads(mismatch.details_json)["reason"]


def test_online_verification_fails_when_the_anchored_events_are_removed(
    tmp_path: Path, backend: str, databases: Databases, nonces: Nonces
) -> None:
    """The writer removes the newest events, the anchored checkpoint among them, under a running daemon: what is
    left verifies as a chain, but `custody audit verify` compares it with the token's anchor and exits 1."""
    env = make_dev_env(tmp_path / "env", backend, databases)
    daemon = start_daemon(env, tmp_path / "first.log")
    assert stop_daemon(daemon) == 0  # A shutdown checkpoint, anchored in the token.
    daemon = start_daemon(env, tmp_path / "second.log")
    try:
        assert cli_json(env, daemon, "admin", "audit", "verify")["ok"] is True  # type: ignore[index]
        ((anchored,),) = env.sql("SELECT MAX(sequence) FROM audit_events WHERE kind = 'audit.checkpoint'")
        env.sql("DELETE FROM audit_events WHERE sequence >= ?", (anchored - 1,))

        result = run_cli(env, daemon, "admin", "--json", "audit", "verify", check=False)

        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is False and report["first_bad_sequence"] == anchored
        assert f"but the HSM token's anchor vouches for event {anchored}" in report["problem"]
    finally:
        stop_daemon(daemon)


def test_a_chained_unfreeze_event_appended_in_the_database_signs_nothing_and_gets_no_checkpoint(
    tmp_path: Path, backend: str, databases: Databases, nonces: Nonces
) -> None:
    """The writer puts the frozen ops key's older sealed ACTIVE row back and appends a ``key.unfrozen`` event
    whose hash continues the chain: the event carries no seal of the HSM key, so the daemon signs nothing on
    its word, appends nothing after it and signs no checkpoint over it, not even at shutdown."""
    env = make_dev_env(tmp_path / "env", backend, databases)
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        freezes_now = _freeze_ops_and_put_its_active_row_back(env, daemon, next(nonces))
        forged = append_chained_audit_event(env.sql, "key.unfrozen", key="ops", freeze=freezes_now)

        _assert_ops_submission_unavailable(env, daemon, next(nonces), "carries no seal")
    finally:
        stop_daemon(daemon)
    assert env.sql("SELECT COUNT(*) FROM requests WHERE key_label = 'ops' AND state = 'SIGNED'") == [(1,)]
    assert env.sql("SELECT MAX(sequence) FROM audit_events") == [(forged,)]
    assert "without the seal of the HSM seal key" in daemon.log()


def test_a_freeze_deleted_before_any_checkpoint_covers_it_stops_the_next_start(
    tmp_path: Path, backend: str, databases: Databases, nonces: Nonces
) -> None:
    """Right after the security approver froze ops, the writer deletes the freeze's events (and their head
    seals) and puts the key's older sealed ACTIVE row back: the running daemon refuses to append to the
    shortened log, so nothing is signed, and has the HSM token vouch for the event it lost, so the next start
    refuses the database instead of forgetting the freeze."""
    env = make_dev_env(tmp_path / "env", backend, databases)
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        _freeze_ops_and_put_its_active_row_back(env, daemon, next(nonces))
        ((freeze,),) = env.sql("SELECT MIN(sequence) FROM audit_events WHERE kind = 'key.frozen'")
        ((head,),) = env.sql("SELECT MAX(sequence) FROM audit_events")
        for sequence in range(freeze, head + 1):
            env.sql("DELETE FROM seals WHERE subject = ?", (f"audit-head:{sequence}",))
        env.sql("DELETE FROM audit_events WHERE sequence >= ?", (freeze,))
        before_freeze = freeze - 1

        _assert_ops_submission_unavailable(env, daemon, next(nonces), "went back")
    finally:
        stop_daemon(daemon)
    assert env.sql("SELECT COUNT(*) FROM requests WHERE key_label = 'ops' AND state = 'SIGNED'") == [(1,)]

    refusal = _refusal(serve_until_exit(env))
    assert f"the database's audit log ends at event {before_freeze}" in refusal
    assert "restored to an older copy or its newest events were deleted" in refusal

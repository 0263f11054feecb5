"""The audit log end to end: every state change and refusal recorded, the chain verified online and offline,
tampering named by sequence number, checkpoints signed by the HSM's audit key, and the daemon refusing to start
on a log whose head does not verify."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.audit.chain import checkpoint_statement
from custody.tls.certificates import IssuedCertificate, issue_client_certificate

from .approvals_support import Approvers, assert_signed_by, submit_tx, treasury_tx
from .conftest import (
    CUSTODY,
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

CHECKPOINT_EVERY = 5


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str, databases: Databases) -> DevEnv:
    env = make_dev_env(tmp_path_factory.mktemp("audit") / "env", backend, databases)
    directory = env.directory
    config = directory / "server.toml"
    config.write_text(
        config.read_text()
        + f"\n[limits]\nworker_interval_seconds = 0.2\naudit_checkpoint_every = {CHECKPOINT_EVERY}\n"
    )
    return env


@pytest.fixture(scope="module")
def daemon(env: DevEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(env, tmp_path_factory.mktemp("logs") / "daemon.log")
    yield running
    stop_daemon(running)


@pytest.fixture(scope="module")
def activity(env: DevEnv, daemon: Daemon) -> dict[str, object]:
    """A day's work: keys, an auto-signed and an approved transaction, a denial, a rejection, refusals."""
    ops = cli_json(env, daemon, "admin", "keys", "create", "--label", "ops")
    treasury = cli_json(env, daemon, "admin", "keys", "create", "--label", "treasury")
    signed = submit_tx(env, daemon, "backend", "ops", treasury_tx(1))
    assert_signed_by(signed, ops["address"])  # type: ignore[index]
    denied = submit_tx(env, daemon, "backend", "ops", treasury_tx(2, value=5 * 10**18))
    assert denied.state == pb.REQUEST_STATE_DENIED
    approvers = Approvers(env, daemon)
    approved = submit_tx(env, daemon, "backend", "treasury", treasury_tx(3))
    approvers.approve(approved, "alice")
    with pytest.raises(grpc.RpcError):
        approvers.approve(approved, "alice")  # a duplicate: refused, and recorded as refused
    assert_signed_by(approvers.approve(approved, "bob"), treasury["address"])  # type: ignore[index]
    rejected = submit_tx(env, daemon, "backend", "treasury", treasury_tx(4))
    approvers.reject(rejected, "carol", "not this one")
    with channel_for(env, daemon, "backend") as channel, pytest.raises(grpc.RpcError):
        pb_grpc.KeyServiceStub(channel).CreateKey(pb.CreateKeyRequest(label="sneaky"))
    ca = IssuedCertificate(cert_pem=env.pki("ca.pem"), key_pem=env.pki("ca.key"))
    mallory = issue_client_certificate(ca, "mallory")
    with (
        channel_for(env, daemon, None, cert=mallory.cert_pem, key=mallory.key_pem) as channel,
        pytest.raises(grpc.RpcError),
    ):
        pb_grpc.KeyServiceStub(channel).ListKeys(pb.ListKeysRequest())
    return {"signed": signed, "denied": denied, "approved": approved, "rejected": rejected}


def events(env: DevEnv, daemon: Daemon, identity: str = "admin", **filters: object) -> list[pb.AuditEvent]:
    with channel_for(env, daemon, identity) as channel:
        stub = pb_grpc.AuditServiceStub(channel)
        return list(stub.ListEvents(pb.ListEventsRequest(limit=10_000, **filters)).events)  # type: ignore[arg-type]


def test_every_state_change_and_refusal_is_recorded(env: DevEnv, daemon: Daemon, activity: dict) -> None:
    kinds = [event.kind for event in events(env, daemon)]
    for expected in (
        "policy.activated",
        "key.created",
        "request.submitted",
        "request.signed",
        "request.denied",
        "approval.counted",
        "approval.refused",
        "request.approved",
        "request.rejected",
        "permission.denied",
        "auth.refused",
    ):
        assert expected in kinds, expected
    approved_id = activity["approved"].request_id
    trail = [(e.kind, e.actor) for e in events(env, daemon, request_id=approved_id)]
    assert trail == [
        ("request.submitted", "backend"),
        ("approval.counted", "alice"),
        ("approval.refused", "alice"),
        ("approval.counted", "bob"),
        ("request.approved", "custody"),
        ("request.signed", "custody"),
    ]
    signed_event = events(env, daemon, request_id=approved_id, kind="request.signed")[0]
    signed = next(e for e in events(env, daemon, request_id=approved_id) if e.kind == "request.signed")
    assert signed_event == signed
    assert json.loads(signed_event.details_json)["key"] == "treasury"


def test_only_auditors_and_admins_read_the_log(env: DevEnv, daemon: Daemon, activity: dict) -> None:
    for identity in ("backend", "alice"):
        with channel_for(env, daemon, identity) as channel, pytest.raises(grpc.RpcError) as refused:
            pb_grpc.AuditServiceStub(channel).ListEvents(pb.ListEventsRequest())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_checkpoints_are_signed_by_the_hsm_audit_key(env: DevEnv, daemon: Daemon, activity: dict) -> None:
    verified = cli_json(env, daemon, "admin", "audit", "verify")
    assert verified["ok"] is True  # type: ignore[index]
    public_key = bytes.fromhex(str(verified["audit_public_key"]).removeprefix("0x"))  # type: ignore[index]
    checkpoints = events(env, daemon, kind="audit.checkpoint")
    assert checkpoints, "the worker writes a checkpoint every few events"
    for checkpoint in checkpoints:
        details = json.loads(checkpoint.details_json)
        assert details["covers_sequence"] == checkpoint.sequence - 1
        statement = checkpoint_statement(details["covers_sequence"], bytes.fromhex(details["covers_hash"]))
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(details["signature"]), statement)


def test_export_verifies_offline_and_tampering_is_named(
    env: DevEnv, daemon: Daemon, activity: dict, tmp_path: Path
) -> None:
    public_key = cli_json(env, daemon, "admin", "audit", "verify")["audit_public_key"]  # type: ignore[index]
    export = tmp_path / "audit.jsonl"
    run_cli(env, daemon, "admin", "audit", "export", "--out", str(export))
    lines = export.read_text().splitlines()
    assert len(lines) >= 10
    offline = [CUSTODY, "audit", "verify", "--file", str(export), "--public-key", str(public_key)]
    assert subprocess.run(offline, capture_output=True, text=True, check=False).returncode == 0

    edited = json.loads(lines[3])
    edited["actor"] = "someone-else"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join([*lines[:3], json.dumps(edited), *lines[4:]]) + "\n")
    result = subprocess.run(
        [*offline[:4], str(tampered), *offline[5:]], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert str(edited["sequence"]) in result.stdout + result.stderr

    deleted = tmp_path / "deleted.jsonl"
    deleted.write_text("\n".join([*lines[:5], *lines[6:]]) + "\n")
    result = subprocess.run(
        [*offline[:4], str(deleted), *offline[5:]], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert str(json.loads(lines[5])["sequence"]) in result.stdout + result.stderr


def test_an_edited_database_event_is_named_by_online_verification(
    env: DevEnv, daemon: Daemon, activity: dict
) -> None:
    target = events(env, daemon, kind="request.denied")[0]
    original = env.sql("SELECT details FROM audit_events WHERE sequence = ?", (target.sequence,))[0][0]
    env.sql(
        "UPDATE audit_events SET details = ? WHERE sequence = ?",
        (original.replace("deny by default", "allowed"), target.sequence),
    )
    try:
        verified = json.loads(run_cli(env, daemon, "admin", "--json", "audit", "verify", check=False).stdout)
        assert verified["ok"] is False
        assert verified["first_bad_sequence"] == target.sequence
    finally:
        env.sql("UPDATE audit_events SET details = ? WHERE sequence = ?", (original, target.sequence))
    assert cli_json(env, daemon, "admin", "audit", "verify")["ok"] is True  # type: ignore[index]


def test_shutdown_checkpoints_and_a_tampered_head_stops_the_next_start(
    env: DevEnv, daemon: Daemon, activity: dict, tmp_path: Path
) -> None:
    # A second daemon on the same database: stopping it writes a checkpoint as the log's last event.
    second = start_daemon(env, tmp_path / "second.log")
    submit_tx(env, second, "backend", "ops", treasury_tx(50))
    assert stop_daemon(second) == 0
    last = events(env, daemon)[-1]
    assert last.kind == "audit.checkpoint"

    original_actor = env.sql("SELECT actor FROM audit_events WHERE sequence = ?", (last.sequence - 1,))[0][0]
    env.sql("UPDATE audit_events SET actor = 'mallory' WHERE sequence = ?", (last.sequence - 1,))
    try:
        result = subprocess.run(
            [CUSTODY, "serve", "--config", str(env.config), "--listen", "127.0.0.1:0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert "audit log does not verify" in result.stderr
        assert str(last.sequence - 1) in result.stderr
    finally:
        env.sql("UPDATE audit_events SET actor = ? WHERE sequence = ?", (original_actor, last.sequence - 1))

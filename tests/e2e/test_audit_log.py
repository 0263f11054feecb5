"""The audit log through a real daemon: refusals the transport makes recorded, the export verified offline by
the command line with tampering named by sequence number, an export of thousands of events paged under the
daemon's message limit, and the daemon refusing to start on a log whose head does not verify.

What the use cases write to the log, checkpoints and online verification are tested in process, in
tests/app/test_audit_events.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.audit.events import AuditDraft, event_hash
from custody.cli.audit import audit_event_from_proto
from custody.config import DEFAULT_MAX_MESSAGE_BYTES
from custody.store import open_store
from custody.tls.certificates import IssuedCertificate, issue_client_certificate

from .approvals_support import (
    Approvers,
    assert_signed_by,
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
def activity(env: DevEnv, daemon: Daemon, nonces: Nonces) -> None:
    """A day's work through gRPC: keys, an auto-signed and an approved transaction, a denial, a rejection, and
    two refusals the transport makes (a caller without the role, a certificate nobody configured)."""
    with channel_for(env, daemon, "admin") as channel:
        keys = pb_grpc.KeyServiceStub(channel)
        ops, treasury = (
            keys.CreateKey(pb.CreateKeyRequest(label=label)).key for label in ("ops", "treasury")
        )
    assert_signed_by(submit_tx(env, daemon, "backend", "ops", treasury_tx(next(nonces))), ops.address)
    denied = submit_tx(env, daemon, "backend", "ops", treasury_tx(next(nonces), value=5 * 10**18))
    assert denied.state == pb.REQUEST_STATE_DENIED
    approvers = Approvers(env, daemon)
    approved = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
    approvers.approve(approved, "alice")
    assert_signed_by(approvers.approve(approved, "bob"), treasury.address)
    rejected = submit_tx(env, daemon, "backend", "treasury", treasury_tx(next(nonces)))
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


def events(env: DevEnv, daemon: Daemon, identity: str = "admin", **filters: object) -> list[pb.AuditEvent]:
    """Every event the filters match, paging as the daemon caps each page."""
    found: list[pb.AuditEvent] = []
    with channel_for(env, daemon, identity) as channel:
        stub = pb_grpc.AuditServiceStub(channel)
        while True:
            after = found[-1].sequence if found else 0
            page = stub.ListEvents(pb.ListEventsRequest(limit=10_000, after_sequence=after, **filters))  # type: ignore[arg-type]
            if not page.events:
                return found
            found.extend(page.events)


def test_refusals_the_transport_makes_are_recorded(env: DevEnv, daemon: Daemon, activity: None) -> None:
    """A caller without the role and a certificate nobody configured are refused before any use case runs;
    the gRPC layer records both. What the use cases record is checked in tests/app/test_audit_events.py."""
    (unauthenticated,) = events(env, daemon, kind="auth.refused")
    assert unauthenticated.actor == "unauthenticated"
    assert "mallory" in json.loads(unauthenticated.details_json)["reason"]
    denied = events(env, daemon, kind="permission.denied")
    assert [event.actor for event in denied] == ["backend"]
    assert "admin role" in json.loads(denied[0].details_json)["reason"]
    # Only auditors and admins read the log, over the wire too.
    for identity in ("backend", "alice"):
        with channel_for(env, daemon, identity) as channel, pytest.raises(grpc.RpcError) as refused:
            pb_grpc.AuditServiceStub(channel).ListEvents(pb.ListEventsRequest())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_export_verifies_offline_and_tampering_is_named(
    env: DevEnv, daemon: Daemon, activity: None, tmp_path: Path
) -> None:
    public_key = cli_json(env, daemon, "admin", "audit", "verify")["audit_public_key"]  # type: ignore[index]
    export = tmp_path / "audit.jsonl"
    run_cli(env, daemon, "admin", "audit", "export", "--out", str(export))
    lines = export.read_text().splitlines()
    assert len(lines) >= 10
    offline = [CUSTODY, "audit", "verify", "--file", str(export), "--public-key", str(public_key)]
    strict = subprocess.run(offline, capture_output=True, text=True, check=False)
    # Events after the last checkpoint are not verified offline unless the verifier accepts an unsigned tail.
    if json.loads(lines[-1])["kind"] == "audit.checkpoint":
        assert strict.returncode == 0, strict.stdout
    else:
        assert strict.returncode == 1 and "NOT VERIFIED" in strict.stdout, strict.stdout
    offline.append("--accept-unsigned-tail")
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


def test_shutdown_checkpoints_and_a_tampered_head_stops_the_next_start(
    env: DevEnv, daemon: Daemon, activity: None, tmp_path: Path, nonces: Nonces
) -> None:
    # A second daemon on the same database: stopping it writes a checkpoint as the log's last event.
    second = start_daemon(env, tmp_path / "second.log")
    submit_tx(env, second, "backend", "ops", treasury_tx(next(nonces)))
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


def test_an_edited_checkpoint_stops_the_next_start_in_one_sentence(
    env: DevEnv, daemon: Daemon, activity: None
) -> None:
    checkpoint = events(env, daemon, kind="audit.checkpoint")[-1]
    stored_details, stored_hash = env.sql(
        "SELECT details, hash FROM audit_events WHERE sequence = ?", (checkpoint.sequence,)
    )[0]
    edited = {**json.loads(stored_details), "covers_sequence": "abc"}
    edited_details = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    # Edited as it stands, the checkpoint no longer matches its hash; edited and rehashed by someone who
    # knows the encoding, it is refused for what it says, or first for its hash when the HSM token's anchor
    # vouches for this very checkpoint (the daemon anchors each checkpoint it writes, and its head at start,
    # which may be a later event). It is the last checkpoint whichever way.
    rehashed = event_hash(checkpoint.sequence, audit_event_from_proto(checkpoint), checkpoint.previous_hash)
    assert rehashed == bytes(stored_hash)
    forged = audit_event_from_proto(checkpoint)
    forged_hash = event_hash(
        checkpoint.sequence,
        AuditDraft(time=forged.time, actor=forged.actor, kind=forged.kind, details=edited),
        checkpoint.previous_hash,
    )
    try:
        for new_hash, problems in (
            (bytes(stored_hash), (f"{checkpoint.sequence}: event {checkpoint.sequence} was altered",)),
            (
                forged_hash,
                (
                    f"{checkpoint.sequence}: checkpoint {checkpoint.sequence} has a covers_sequence that is not"
                    " an integer",
                    f"audit event {checkpoint.sequence} in the database's audit log has hash"
                    f" {forged_hash.hex()[:16]}..., but the HSM token's anchor vouches for hash",
                ),
            ),
        ):
            env.sql(
                "UPDATE audit_events SET details = ?, hash = ? WHERE sequence = ?",
                (edited_details, new_hash, checkpoint.sequence),
            )
            result = subprocess.run(
                [CUSTODY, "serve", "--config", str(env.config), "--listen", "127.0.0.1:0"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 2, result.stderr
            (refusal,) = [
                line for line in result.stderr.splitlines() if line.startswith("custody: cannot start: ")
            ]
            assert any(problem in refusal for problem in problems), refusal
            assert "does not verify at sequence" in refusal or "anchor" in refusal
            assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
    finally:
        env.sql(
            "UPDATE audit_events SET details = ?, hash = ? WHERE sequence = ?",
            (stored_details, bytes(stored_hash), checkpoint.sequence),
        )
    assert cli_json(env, daemon, "admin", "audit", "verify")["ok"] is True  # type: ignore[index]


# Events appended through the store for the export test: more than the 5,000 the command line once asked for
# in one page, each the size of a real request.submitted event.
MANY_EVENTS = 5200


def append_submitted_events(env: DevEnv, count: int) -> None:
    """Chain ``count`` request.submitted events through the store, as a daemon that had been busy would."""
    url = env.database_url or f"sqlite:///{env.directory / 'custody.db'}"
    store = open_store(url, env.directory)
    try:
        now = datetime.now(UTC)
        for batch in range(0, count, 500):
            with store.transaction() as tx:
                for index in range(batch, min(batch + 500, count)):
                    tx.append_audit(
                        AuditDraft(
                            time=now,
                            actor="backend",
                            kind="request.submitted",
                            request_id=f"req_{index:032x}",
                            details={
                                "key": "ops",
                                "payload_kind": "transaction",
                                "chain_id": 11155111,
                                "digest": "0x" + hashlib.sha256(b"digest %d" % index).hexdigest(),
                                "payload_sha256": "0x" + hashlib.sha256(b"payload %d" % index).hexdigest(),
                                "decision": "allow",
                                "rule": "ops-transactions",
                                "policy_version": 1,
                                "replaces": None,
                            },
                        )
                    )
    finally:
        store.close()
    seal_audit_head(env)


# Run in a process of its own, as the holder of the HSM PIN: the token is the environment's, whose SoftHSM2
# configuration the PKCS#11 library reads once per process.
_SEAL_HEAD = """
import os, sys
from pathlib import Path
from custody.config import load_server_config, read_hsm_pin
from custody.domain import seals
from custody.store import open_store
config_path = Path(sys.argv[1])
config = load_server_config(config_path)
os.environ.update(config.hsm.environment)
from custody.hsm.pkcs11 import Pkcs11Hsm
hsm = Pkcs11Hsm(config.hsm.module, config.hsm.token_label, read_hsm_pin(config.hsm))
store = open_store(config.database_url, config_path.parent)
try:
    with store.transaction() as tx:
        key_id = bytes.fromhex(tx.daemon_key("seal").key_id)
        head = tx.audit_head()
        sealed = seals.sealed_audit_head(head.sequence, head.hash)
        tx.put_seal(seals.audit_head_subject(head.sequence), hsm.seal(key_id, sealed))
finally:
    store.close()
    hsm.close()
"""


def seal_audit_head(env: DevEnv) -> None:
    """Seal the audit log's head with the environment's HSM seal key, as the daemon seals the last event of each
    write transaction: events chained in directly then read as a busy daemon's, not as a database writer's."""
    subprocess.run(
        [sys.executable, "-c", _SEAL_HEAD, str(env.config)], check=True, capture_output=True, text=True
    )


def test_an_export_of_thousands_of_events_pages_under_the_message_limit_and_verifies_offline(
    databases: Databases, tmp_path: Path
) -> None:
    # Pages are cut by size in the transport, and the store's listing is tested on both backends in
    # tests/integration/store; the first configured backend is enough here.
    big = make_dev_env(tmp_path / "env", BACKENDS[0], databases)
    big.config.write_text(big.config.read_text() + "\n[limits]\nworker_interval_seconds = 0.2\n")
    # A first start makes the schema, the audit key and the first events, and its stop a checkpoint.
    assert stop_daemon(start_daemon(big, tmp_path / "first.log")) == 0
    append_submitted_events(big, MANY_EVENTS)
    daemon = start_daemon(big, tmp_path / "second.log")
    try:
        # The worker signs a checkpoint over the new head (more than a thousand events since the last one).
        deadline = time.monotonic() + 60
        while True:
            online = cli_json(big, daemon, "admin", "audit", "verify")
            if online["unsigned_tail"] == 0 or time.monotonic() > deadline:  # type: ignore[index]
                break
            time.sleep(0.2)
        assert online["ok"] is True and online["unsigned_tail"] == 0, online  # type: ignore[index]
        total = int(online["last_sequence"])  # type: ignore[index]
        assert total > MANY_EVENTS

        # One call asking for everything gets a page the daemon cut by size, well under its message limit.
        with channel_for(big, daemon, "admin") as channel:
            page = pb_grpc.AuditServiceStub(channel).ListEvents(pb.ListEventsRequest(limit=10_000))
        assert 0 < len(page.events) < total
        assert page.ByteSize() <= DEFAULT_MAX_MESSAGE_BYTES // 2
        assert [event.sequence for event in page.events] == list(range(1, len(page.events) + 1))

        export = tmp_path / "audit.jsonl"
        written = run_cli(big, daemon, "admin", "audit", "export", "--out", str(export))
        assert written.stdout == ""
        lines = export.read_text().splitlines()
        # Nothing writes to the log meanwhile: reading it is not an event.
        assert [json.loads(line)["sequence"] for line in lines] == list(range(1, total + 1))
        # To stdout, the same lines and nothing else (no progress: stderr is not a terminal here).
        streamed = run_cli(big, daemon, "admin", "audit", "export")
        assert streamed.stdout.splitlines() == lines and streamed.stderr == ""
    finally:
        assert stop_daemon(daemon) == 0

    public_key = str(online["audit_public_key"])  # type: ignore[index]
    offline = subprocess.run(
        [CUSTODY, "--json", "audit", "verify", "--file", str(export), "--public-key", public_key],
        capture_output=True,
        text=True,
        check=False,
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    report = json.loads(offline.stdout)
    assert report["ok"] is True and report["events_checked"] == total
    assert report["checkpoints_checked"] >= 2 and report["unsigned_tail"] == 0
    assert report["last_sequence"] == total and report["head_hash"] == online["head_hash"]  # type: ignore[index]

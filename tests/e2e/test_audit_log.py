"""The audit log end to end: every state change and refusal recorded, the chain verified online and offline,
tampering named by sequence number, checkpoints signed by the HSM's audit key, an export of thousands of events
paged under the daemon's message limit, and the daemon refusing to start on a log whose head does not verify.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.audit.chain import checkpoint_statement
from custody.audit.events import AuditDraft, event_hash
from custody.cli.audit import audit_event_from_proto
from custody.config import DEFAULT_MAX_MESSAGE_BYTES
from custody.store import open_store
from custody.tls.certificates import IssuedCertificate, issue_client_certificate

from .approvals_support import (
    Approvers,
    assert_signed_by,
    get_request,
    set_clock_offset,
    submit_tx,
    treasury_tx,
    wait_for_state,
)
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
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seconds the module's daemon adds to its clock: a request can then outlive its lifetime in a moment."""
    path = tmp_path_factory.mktemp("clock") / "offset"
    set_clock_offset(path, 0)
    return path


@pytest.fixture(scope="module")
def daemon(env: DevEnv, clock_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(
        env,
        tmp_path_factory.mktemp("logs") / "daemon.log",
        extra_env={"CUSTODY_UNSAFE_CLOCK_OFFSET_FILE": str(clock_file)},
    )
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


def written_since(env: DevEnv, daemon: Daemon, sequence: int) -> list[tuple[str, str, str]]:
    """(kind, actor, request id) of each event after ``sequence``, leaving out the worker's checkpoints, which
    land whenever enough events have been written."""
    return [
        (event.kind, event.actor, event.request_id)
        for event in events(env, daemon)
        if event.sequence > sequence and event.kind != "audit.checkpoint"
    ]


def details(env: DevEnv, daemon: Daemon, kind: str, request_id: str = "") -> dict[str, object]:
    """The details of the one event of ``kind`` (of ``request_id`` when given)."""
    matching = [event for event in events(env, daemon, kind=kind) if event.request_id == request_id]
    assert len(matching) == 1, matching
    decoded: dict[str, object] = json.loads(matching[0].details_json)
    return decoded


def head_sequence(env: DevEnv, daemon: Daemon) -> int:
    return events(env, daemon)[-1].sequence


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
    # The head the daemon reached, and how many events after its last checkpoint nothing signs yet. The worker
    # may write more meanwhile, so only the events up to that head are compared.
    head = verified["last_sequence"]  # type: ignore[index]
    logged = [event for event in events(env, daemon) if event.sequence <= head]
    assert len(logged) == head and verified["events_checked"] == head  # type: ignore[index]
    assert verified["head_hash"] == "0x" + logged[-1].hash.hex()  # type: ignore[index]
    last_checkpoint = max(event.sequence for event in logged if event.kind == "audit.checkpoint")
    assert verified["unsigned_tail"] == head - last_checkpoint  # type: ignore[index]
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


def test_freezing_and_unfreezing_a_key_write_their_events(
    env: DevEnv, daemon: Daemon, activity: dict
) -> None:
    start = head_sequence(env, daemon)
    frozen = cli_json(env, daemon, "dave", "keys", "freeze", "ops", "--reason", "audit drill")
    assert frozen["state"] == "FROZEN"  # type: ignore[index]
    assert written_since(env, daemon, start) == [("key.frozen", "dave", "")]
    assert details(env, daemon, "key.frozen") == {"key": "ops", "reason": "audit drill"}

    start = head_sequence(env, daemon)
    unfreeze = cli_json(env, daemon, "admin", "keys", "unfreeze", "ops", "--reason", "drill over")
    request_id = str(unfreeze["request_id"])  # type: ignore[index]
    request = get_request(env, daemon, request_id)
    approvers = Approvers(env, daemon)
    approvers.approve(request, "alice")
    assert approvers.approve(request, "dave").state == pb.REQUEST_STATE_APPROVED
    assert cli_json(env, daemon, "admin", "keys", "show", "ops")["state"] == "ACTIVE"  # type: ignore[index]
    assert written_since(env, daemon, start) == [
        ("request.submitted", "admin", request_id),
        ("approval.counted", "alice", request_id),
        ("approval.counted", "dave", request_id),
        ("key.unfrozen", "custody", request_id),
        ("request.approved", "custody", request_id),
    ]
    assert details(env, daemon, "key.unfrozen", request_id) == {"key": "ops"}


def test_a_policy_proposal_and_cancellations_write_their_events(
    env: DevEnv, daemon: Daemon, activity: dict, tmp_path: Path
) -> None:
    document = (env.directory / "policy.toml").read_text().replace("version = 1\n", "version = 2\n", 1)
    proposal_file = tmp_path / "policy-v2.toml"
    proposal_file.write_text(document)
    start = head_sequence(env, daemon)
    proposal = cli_json(env, daemon, "admin", "policy", "propose", str(proposal_file))
    proposal_id = str(proposal["request_id"])  # type: ignore[index]
    assert written_since(env, daemon, start) == [("policy.proposed", "admin", proposal_id)]
    assert details(env, daemon, "policy.proposed", proposal_id) == {
        "proposed_version": 2,
        "document_sha256": "0x" + hashlib.sha256(document.encode()).hexdigest(),
    }

    # The admin withdraws the proposal; a requester cancels its own transaction.
    start = head_sequence(env, daemon)
    cancelled = cli_json(env, daemon, "admin", "requests", "cancel", proposal_id, "--reason", "not now")
    assert cancelled["state"] == "CANCELLED"  # type: ignore[index]
    assert written_since(env, daemon, start) == [("request.cancelled", "admin", proposal_id)]
    assert details(env, daemon, "request.cancelled", proposal_id) == {"reason": "not now"}

    waiting = submit_tx(env, daemon, "backend", "treasury", treasury_tx(60))
    start = head_sequence(env, daemon)
    run_cli(env, daemon, "backend", "requests", "cancel", waiting.request_id, "--reason", "wrong amount")
    assert written_since(env, daemon, start) == [("request.cancelled", "backend", waiting.request_id)]
    assert details(env, daemon, "request.cancelled", waiting.request_id) == {"reason": "wrong amount"}


def test_a_request_that_outlives_its_lifetime_writes_its_expiry(
    env: DevEnv, daemon: Daemon, activity: dict, clock_file: Path
) -> None:
    waiting = submit_tx(env, daemon, "backend", "treasury", treasury_tx(61))
    assert waiting.state == pb.REQUEST_STATE_PENDING_APPROVAL
    start = head_sequence(env, daemon)
    try:
        set_clock_offset(clock_file, 25 * 3600)  # past the dev policy's 24-hour lifetime
        expired = wait_for_state(env, daemon, waiting.request_id, pb.REQUEST_STATE_EXPIRED)
        assert expired.state == pb.REQUEST_STATE_EXPIRED
    finally:
        set_clock_offset(clock_file, 0)
    assert written_since(env, daemon, start) == [("request.expired", "custody", waiting.request_id)]
    assert details(env, daemon, "request.expired", waiting.request_id) == {}


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


def test_an_edited_checkpoint_stops_the_next_start_in_one_sentence(
    env: DevEnv, daemon: Daemon, activity: dict
) -> None:
    checkpoint = events(env, daemon, kind="audit.checkpoint")[-1]
    stored_details, stored_hash = env.sql(
        "SELECT details, hash FROM audit_events WHERE sequence = ?", (checkpoint.sequence,)
    )[0]
    edited = {**json.loads(stored_details), "covers_sequence": "abc"}
    edited_details = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    # Edited as it stands, the checkpoint no longer matches its hash; edited and rehashed by someone who
    # knows the encoding, it is refused for what it says, and it is the last checkpoint whichever way.
    rehashed = event_hash(checkpoint.sequence, audit_event_from_proto(checkpoint), checkpoint.previous_hash)
    assert rehashed == bytes(stored_hash)
    forged = audit_event_from_proto(checkpoint)
    forged_hash = event_hash(
        checkpoint.sequence,
        AuditDraft(time=forged.time, actor=forged.actor, kind=forged.kind, details=edited),
        checkpoint.previous_hash,
    )
    try:
        for new_hash, problem in (
            (bytes(stored_hash), f"event {checkpoint.sequence} was altered"),
            (forged_hash, f"checkpoint {checkpoint.sequence} has a covers_sequence that is not an integer"),
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
            assert (
                f"the audit log does not verify at sequence {checkpoint.sequence}: {problem}" in result.stderr
            )
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


def test_an_export_of_thousands_of_events_pages_under_the_message_limit_and_verifies_offline(
    backend: str, databases: Databases, tmp_path: Path
) -> None:
    big = make_dev_env(tmp_path / "env", backend, databases)
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

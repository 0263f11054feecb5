"""`custody audit` and `sign tx --replaces` without a daemon.

Exports are built with the real chaining code and real Ed25519 checkpoints (cryptography), then verified
offline through the command line. Paging and output go through a real mTLS gRPC server serving an audit
service over a chain held in a list: it stands in for the daemon's answers, not for the HSM or a database.
The lead's end-to-end tests drive the real daemon.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custody.api._gen import custody_pb2, custody_pb2_grpc
from custody.audit.chain import event_to_json_line
from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, chain_event, event_hash, format_time
from custody.cli.audit import (
    EXPORT_PAGE_SIZE,
    PROGRESS_EVERY,
    audit_event_from_proto,
    list_events_query,
    parse_public_key,
    with_progress,
)
from custody.cli.dev_env import DevEnvironment, init_dev_environment
from custody.cli.main import run
from custody.cli.output import request_text, request_to_json
from custody.cli.review import domain_request, recompute_hashes, review_text
from custody.cli.sign import submit_request
from custody.domain.errors import InvalidInput

CHECKPOINT_STATEMENT_PREFIX = b"custody audit checkpoint v1\n"
EXPORT_KEYS = {"sequence", "time", "actor", "kind", "request_id", "details", "previous_hash", "hash"}
START = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def checkpoint_statement(covers: AuditEvent) -> bytes:
    body = json.dumps(
        {"hash": covers.hash.hex(), "sequence": covers.sequence}, sort_keys=True, separators=(",", ":")
    )
    return CHECKPOINT_STATEMENT_PREFIX + body.encode("ascii")


def build_chain(
    count: int, private_key: Ed25519PrivateKey, *, checkpoint_every: int = 4, final_checkpoint: bool = True
) -> list[AuditEvent]:
    """``count`` ordinary events with a signed checkpoint after every ``checkpoint_every`` of them, the way the
    daemon writes its log."""
    events: list[AuditEvent] = []

    def append(draft: AuditDraft) -> None:
        previous = events[-1].hash if events else GENESIS_HASH
        events.append(chain_event(draft, len(events) + 1, previous))

    def checkpoint() -> None:
        covers = events[-1]
        append(
            AuditDraft(
                time=START + timedelta(seconds=len(events)),
                actor="custody",
                kind="audit.checkpoint",
                details={
                    "covers_sequence": covers.sequence,
                    "covers_hash": covers.hash.hex(),
                    "public_key": raw_public_key(private_key).hex(),
                    "signature": private_key.sign(checkpoint_statement(covers)).hex(),
                },
            )
        )

    for index in range(count):
        append(
            AuditDraft(
                time=START + timedelta(seconds=len(events)),
                actor="backend" if index % 2 else "alice",
                kind="request.submitted" if index % 2 else "approval.counted",
                request_id=f"req_{index // 2}",
                details={"key": "ops", "nonce": index, "note": 'ünïcode and "quotes"'},
            )
        )
        if (index + 1) % checkpoint_every == 0:
            checkpoint()
    if final_checkpoint and events[-1].kind != "audit.checkpoint":
        checkpoint()
    return events


def write_export(path: Path, events: list[AuditEvent]) -> Path:
    path.write_text("".join(event_to_json_line(event) + "\n" for event in events), encoding="utf-8")
    return path


def to_proto(event: AuditEvent) -> custody_pb2.AuditEvent:
    return custody_pb2.AuditEvent(
        sequence=event.sequence,
        time=format_time(event.time),
        actor=event.actor,
        kind=event.kind,
        request_id=event.request_id or "",
        details_json=json.dumps(dict(event.details), sort_keys=True, separators=(",", ":")),
        previous_hash=event.previous_hash,
        hash=event.hash,
    )


@pytest.fixture(scope="module")
def audit_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def chain(audit_key: Ed25519PrivateKey) -> list[AuditEvent]:
    return build_chain(10, audit_key)


@pytest.fixture
def no_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # Offline verification must work where no profile exists at all.
    monkeypatch.delenv("CUSTODY_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- offline verification ----------------------------------------------------------------------------------


def test_the_export_lines_carry_exactly_the_export_keys(chain: list[AuditEvent]) -> None:
    line = json.loads(event_to_json_line(chain[0]))
    assert set(line) == EXPORT_KEYS
    assert line["hash"] == chain[0].hash.hex()
    assert line["previous_hash"] == GENESIS_HASH.hex()


def test_an_untouched_export_verifies_offline_without_a_profile(
    chain: list[AuditEvent],
    audit_key: Ed25519PrivateKey,
    no_profile: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export = write_export(no_profile / "audit.jsonl", chain)
    key = raw_public_key(audit_key).hex()
    assert run(["audit", "verify", "--file", str(export), "--public-key", key]) == 0
    out = capsys.readouterr().out
    assert "audit log:" in out and "ok" in out
    assert f"events checked:      {len(chain)}" in out
    assert "checkpoints checked: 3" in out
    assert f"0x{key}" in out

    assert run(["audit", "verify", "--file", str(export), "--public-key", "0x" + key, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["events_checked"] == len(chain)
    assert report["checkpoints_checked"] == 3
    assert report["first_bad_sequence"] is None
    assert report["audit_public_key"] == "0x" + key
    assert report["last_sequence"] == len(chain)
    assert report["head_hash"] == "0x" + chain[-1].hash.hex()
    assert report["unsigned_tail"] == 0


def test_events_after_the_last_checkpoint_are_reported_as_unsigned(
    audit_key: Ed25519PrivateKey, no_profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_export(no_profile / "tail.jsonl", build_chain(6, audit_key, final_checkpoint=False))
    key = raw_public_key(audit_key).hex()
    # Whoever wrote the database may have rewritten the tail, so it is not verified unless accepted.
    assert run(["audit", "verify", "--file", str(export), "--public-key", key]) == 1
    out = capsys.readouterr().out
    assert "audit log:           NOT VERIFIED: events 6 to 7 follow the last checkpoint" in out
    assert "TAMPERED" not in out
    accepted = ["audit", "verify", "--file", str(export), "--public-key", key, "--accept-unsigned-tail"]
    assert run(accepted) == 0
    out = capsys.readouterr().out
    assert (
        "unsigned tail:       2 events after the last checkpoint are chained but not yet signed"
        " (the last checkpoint is event 5)" in out
    )
    assert "last sequence:       7" in out
    assert run([*accepted, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unsigned_tail"] == 2


def test_an_export_without_a_checkpoint_is_not_verified(
    audit_key: Ed25519PrivateKey, no_profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first three events of a real log, cut before its first checkpoint: an intact chain, but one that
    # anyone could have computed, so it proves nothing and the command says so and exits 1.
    events = build_chain(3, audit_key, final_checkpoint=False)
    export = write_export(no_profile / "unsigned.jsonl", events)
    key = raw_public_key(audit_key).hex()
    assert run(["audit", "verify", "--file", str(export), "--public-key", key]) == 1
    out = capsys.readouterr().out
    assert (
        "audit log:           NOT VERIFIED: no checkpoint signed by the audit public key covers these 3 events"
        in out
    )
    assert "unsigned tail:       3 events are chained but no checkpoint signs them" in out
    assert "TAMPERED" not in out

    assert run(["audit", "verify", "--file", str(export), "--public-key", key, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["first_bad_sequence"] is None
    assert report["events_checked"] == 3 and report["checkpoints_checked"] == 0
    assert report["unsigned_tail"] == 3 and report["last_sequence"] == 3


def test_an_empty_export_says_there_is_nothing_to_verify_and_exits_1(
    audit_key: Ed25519PrivateKey, no_profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = no_profile / "empty.jsonl"
    export.write_text("")
    key = raw_public_key(audit_key).hex()
    assert run(["audit", "verify", "--file", str(export), "--public-key", key]) == 1
    out = capsys.readouterr().out
    assert "NOT VERIFIED: the export holds no events, so there is nothing to verify" in out
    assert "last sequence" not in out
    assert run(["audit", "verify", "--file", str(export), "--public-key", key, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["events_checked"] == 0
    assert report["last_sequence"] is None and report["head_hash"] is None


def test_an_edited_event_fails_and_is_named_by_sequence(
    chain: list[AuditEvent],
    audit_key: Ed25519PrivateKey,
    no_profile: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The line stays in the exact export form with its old hash: only the recomputed hash gives it away.
    lines = [event_to_json_line(event) for event in chain]
    lines[4] = event_to_json_line(replace(chain[4], details={**chain[4].details, "nonce": 99}))
    export = no_profile / "edited.jsonl"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    key = raw_public_key(audit_key).hex()
    assert run(["audit", "verify", "--file", str(export), "--public-key", key]) == 1
    out = capsys.readouterr().out
    assert f"TAMPERED at sequence {chain[4].sequence}" in out

    assert run(["audit", "verify", "--file", str(export), "--public-key", key, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["first_bad_sequence"] == chain[4].sequence
    assert report["problem"]


def test_a_deleted_event_fails_and_is_named_by_sequence(
    chain: list[AuditEvent],
    audit_key: Ed25519PrivateKey,
    no_profile: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export = write_export(no_profile / "deleted.jsonl", chain[:2] + chain[3:])
    assert (
        run(["audit", "verify", "--file", str(export), "--public-key", raw_public_key(audit_key).hex()]) == 1
    )
    assert "TAMPERED at sequence 3" in capsys.readouterr().out


def test_a_rebuilt_chain_signed_by_another_key_fails(
    audit_key: Ed25519PrivateKey, no_profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A forger can recompute every hash, but cannot sign the checkpoints with the audit key.
    forged = build_chain(10, Ed25519PrivateKey.generate())
    export = write_export(no_profile / "forged.jsonl", forged)
    assert (
        run(["audit", "verify", "--file", str(export), "--public-key", raw_public_key(audit_key).hex()]) == 1
    )
    assert "TAMPERED at sequence" in capsys.readouterr().out


def test_offline_verification_needs_both_options(
    no_profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "verify", "--file", "audit.jsonl"]) == 2
    assert "--file and --public-key go together" in capsys.readouterr().err
    assert run(["audit", "verify", "--public-key", "00" * 32]) == 2


def test_an_unreadable_export_is_one_sentence(no_profile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = no_profile / "missing.jsonl"
    assert run(["audit", "verify", "--file", str(missing), "--public-key", "00" * 32]) == 1
    assert capsys.readouterr().err == f"error: --file: cannot read {missing}: no such file or directory.\n"


# --- the public key ----------------------------------------------------------------------------------------


def test_the_public_key_is_hex_with_or_without_0x_or_a_file(
    tmp_path: Path, audit_key: Ed25519PrivateKey
) -> None:
    key = raw_public_key(audit_key)
    assert parse_public_key(key.hex()) == key
    assert parse_public_key("0x" + key.hex().upper()) == key
    assert parse_public_key(f"  {key.hex()}\n") == key
    key_file = tmp_path / "audit.pub"
    key_file.write_text(f"0x{key.hex()}\n")
    assert parse_public_key(str(key_file)) == key
    # The parsed key really is the one that verifies the audit key's signatures.
    Ed25519PublicKey.from_public_bytes(parse_public_key(str(key_file))).verify(
        audit_key.sign(b"statement"), b"statement"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ab" * 31, "neither 64 hex characters nor a file that exists"),
        ("zz" * 32, "neither 64 hex characters nor a file that exists"),
        ("0x" + "ab" * 33, "neither 64 hex characters nor a file that exists"),
    ],
)
def test_a_malformed_public_key_names_the_option(value: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_public_key(value)
    assert raised.value.message.startswith("--public-key: ")
    assert problem in raised.value.message


def test_a_key_file_without_a_key_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.pub"
    key_file.write_text("-----BEGIN PUBLIC KEY-----\n")
    with pytest.raises(InvalidInput, match="does not hold an audit public key of 64 hex characters"):
        parse_public_key(str(key_file))


# --- proto -> AuditEvent -----------------------------------------------------------------------------------


def test_the_proto_converter_round_trips_and_the_hash_recomputes(chain: list[AuditEvent]) -> None:
    for event in chain:
        converted = audit_event_from_proto(to_proto(event))
        assert converted == event
        assert event_hash(converted.sequence, converted, converted.previous_hash) == bytes(
            to_proto(event).hash
        )
        # The daemon sends details with sorted keys, so only the order of keys may differ from the original.
        assert json.loads(event_to_json_line(converted)) == json.loads(event_to_json_line(event))
    assert audit_event_from_proto(to_proto(chain[-1])).request_id is None


def test_the_converter_refuses_a_bad_time_or_details() -> None:
    good = custody_pb2.AuditEvent(sequence=7, time=format_time(START), details_json="{}")
    bad_time = custody_pb2.AuditEvent()
    bad_time.CopyFrom(good)
    bad_time.time = "2024-05-01 12:00:00"
    with pytest.raises(InvalidInput, match="audit event 7 from the daemon has time"):
        audit_event_from_proto(bad_time)
    bad_details = custody_pb2.AuditEvent()
    bad_details.CopyFrom(good)
    bad_details.details_json = "[1, 2]"
    with pytest.raises(
        InvalidInput, match="audit event 7 from the daemon has details that are not a JSON object"
    ):
        audit_event_from_proto(bad_details)


# --- export query and progress -----------------------------------------------------------------------------


def test_the_export_query_normalises_times_to_the_stored_form() -> None:
    query = list_events_query(
        request_id="req_1", kind="request.signed", since="2024-05-01", until="2024-05-02T02:00:00+02:00"
    )
    assert query.request_id == "req_1"
    assert query.kind == "request.signed"
    assert query.actor == ""
    assert query.since == "2024-05-01T00:00:00.000000Z"
    assert query.until == "2024-05-02T00:00:00.000000Z"
    assert query.limit == EXPORT_PAGE_SIZE == 500
    assert query.after_sequence == 0
    with pytest.raises(InvalidInput, match="--since: 'yesterday' is not an ISO 8601 time"):
        list_events_query(since="yesterday")
    with pytest.raises(InvalidInput, match="--since: 2024-05-02 is after --until 2024-05-01"):
        list_events_query(since="2024-05-02", until="2024-05-01")


def test_progress_is_written_every_100000_items_only_when_enabled(capsys: pytest.CaptureFixture[str]) -> None:
    assert sum(1 for _ in with_progress(range(2 * PROGRESS_EVERY + 5), "events read", enabled=True)) == (
        2 * PROGRESS_EVERY + 5
    )
    assert capsys.readouterr().err == "100,000 events read...\n200,000 events read...\n"
    assert list(with_progress(range(PROGRESS_EVERY), "events read", enabled=False)) == list(
        range(PROGRESS_EVERY)
    )
    assert capsys.readouterr().err == ""


def test_export_refuses_to_overwrite_before_connecting(
    no_profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = no_profile / "audit.jsonl"
    existing.write_text("keep me\n")
    assert run(["audit", "export", "--out", str(existing)]) == 1
    assert capsys.readouterr().err == f"error: {existing} already exists; pass --force to overwrite it.\n"
    assert existing.read_text() == "keep me\n"


def test_an_export_into_a_missing_directory_is_one_sentence(
    environment: DevEnvironment, no_profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = no_profile / "missing" / "audit.jsonl"
    # The server is never reached: the file cannot be created, which is reported before the first call.
    arguments = ["--profile", str(environment.profiles["admin"]), "--server", "127.0.0.1:1"]
    assert run([*arguments, "audit", "export", "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"error: --out: cannot write {out}: no such file or directory.\n"


# --- against a gRPC audit service --------------------------------------------------------------------------


@dataclass
class ListAuditService(custody_pb2_grpc.AuditServiceServicer):  # type: ignore[misc]
    """Serves a chain held in a list, capping pages below what is asked so the client must keep paging."""

    events: list[AuditEvent]
    verification: custody_pb2.VerifyChainResponse
    page_cap: int = 3
    queries: list[custody_pb2.ListEventsRequest] = field(default_factory=list)
    # Answer RESOURCE_EXHAUSTED with these details to a query after this sequence, as an overloaded daemon does.
    exhausted_after: tuple[int, str] | None = None

    def ListEvents(
        self, request: custody_pb2.ListEventsRequest, context: grpc.ServicerContext
    ) -> custody_pb2.ListEventsResponse:
        self.queries.append(request)
        if self.exhausted_after is not None and request.after_sequence >= self.exhausted_after[0]:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.exhausted_after[1])
        after = [event for event in self.events if event.sequence > request.after_sequence]
        if request.kind:
            after = [event for event in after if event.kind == request.kind]
        page = after[: min(request.limit, self.page_cap)]
        return custody_pb2.ListEventsResponse(events=[to_proto(event) for event in page])

    def VerifyChain(
        self, request: custody_pb2.VerifyChainRequest, context: grpc.ServicerContext
    ) -> custody_pb2.VerifyChainResponse:
        return self.verification


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("audit-cli") / "env", None)


@contextmanager
def serving(
    environment: DevEnvironment, service: ListAuditService, max_send_message_length: int | None = None
) -> Iterator[str]:
    """``service`` on a real mTLS gRPC server with the dev environment's certificates; yields its address."""
    pki = environment.directory / "pki"
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    options = (
        [] if max_send_message_length is None else [("grpc.max_send_message_length", max_send_message_length)]
    )
    server = grpc.server(thread_pool=ThreadPoolExecutor(max_workers=2), options=options)
    custody_pb2_grpc.add_AuditServiceServicer_to_server(service, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def audit_server(
    environment: DevEnvironment, chain: list[AuditEvent], audit_key: Ed25519PrivateKey
) -> Iterator[tuple[str, ListAuditService]]:
    service = ListAuditService(
        events=chain,
        verification=custody_pb2.VerifyChainResponse(
            ok=True,
            events_checked=len(chain),
            checkpoints_checked=3,
            audit_public_key=raw_public_key(audit_key),
            unsigned_tail=0,
            last_sequence=chain[-1].sequence,
            head_hash=chain[-1].hash,
        ),
    )
    with serving(environment, service) as address:
        yield address, service


def test_a_full_export_pages_through_everything_and_verifies_offline(
    environment: DevEnvironment,
    audit_server: tuple[str, ListAuditService],
    chain: list[AuditEvent],
    audit_key: Ed25519PrivateKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address, service = audit_server
    profile = str(environment.profiles["admin"])
    out = tmp_path / "audit.jsonl"
    assert run(["--profile", profile, "--server", address, "audit", "export", "--out", str(out)]) == 0
    # 13 events in pages of at most 3: the last, empty page is what ends the export.
    assert len(chain) == 13
    assert capsys.readouterr().err.splitlines()[-1] == f"wrote 13 audit events to {out}"
    assert [query.after_sequence for query in service.queries] == [0, 3, 6, 9, 12, 13]
    assert all(query.limit == EXPORT_PAGE_SIZE for query in service.queries)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == list(range(1, len(chain) + 1))
    assert list(tmp_path.iterdir()) == [out]  # no partial file left behind
    capsys.readouterr()
    assert run(["audit", "verify", "--file", str(out), "--public-key", raw_public_key(audit_key).hex()]) == 0

    # Without --force an existing export stays as it is; with it, it is replaced.
    assert run(["--profile", profile, "--server", address, "audit", "export", "--out", str(out)]) == 1
    service.queries.clear()
    assert (
        run(["--profile", profile, "--server", address, "audit", "export", "--out", str(out), "--force"]) == 0
    )
    assert out.read_text(encoding="utf-8").splitlines() == lines


def test_a_filtered_export_to_stdout_sends_the_filter(
    environment: DevEnvironment,
    audit_server: tuple[str, ListAuditService],
    capsys: pytest.CaptureFixture[str],
) -> None:
    address, service = audit_server
    profile = str(environment.profiles["admin"])
    arguments = ["--profile", profile, "--server", address, "audit", "export", "--kind", "audit.checkpoint"]
    assert run([*arguments, "--since", "2024-05-01T12:00:00Z"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [event["kind"] for event in events] == ["audit.checkpoint"] * 3
    assert {query.kind for query in service.queries} == {"audit.checkpoint"}
    assert {query.since for query in service.queries} == {"2024-05-01T12:00:00.000000Z"}


def test_online_verification_prints_the_result_and_the_public_key(
    environment: DevEnvironment,
    audit_server: tuple[str, ListAuditService],
    chain: list[AuditEvent],
    audit_key: Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address, service = audit_server
    arguments = ["--profile", str(environment.profiles["admin"]), "--server", address, "audit", "verify"]
    key = "0x" + raw_public_key(audit_key).hex()
    assert run(arguments) == 0
    out = capsys.readouterr().out
    assert "audit log:           ok" in out
    assert f"audit public key:    {key}" in out
    assert f"last sequence:       {len(chain)}" in out
    assert f"head hash:           0x{chain[-1].hash.hex()}" in out
    assert "unsigned tail:       none: a checkpoint covers the last event" in out
    assert "custody audit verify --file F --public-key KEY" in out
    assert run([*arguments, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["last_sequence"] == len(chain) and report["unsigned_tail"] == 0
    assert report["head_hash"] == "0x" + chain[-1].hash.hex()

    service.verification = custody_pb2.VerifyChainResponse(
        ok=True,
        events_checked=len(chain) + 2,
        checkpoints_checked=3,
        audit_public_key=raw_public_key(audit_key),
        unsigned_tail=2,
        last_sequence=len(chain) + 2,
        head_hash=bytes(range(32)),
    )
    assert run(arguments) == 0
    out = capsys.readouterr().out
    assert "unsigned tail:       2 events after the last checkpoint are chained but not yet signed" in out
    assert f"head hash:           0x{bytes(range(32)).hex()}" in out

    service.verification = custody_pb2.VerifyChainResponse(
        ok=False,
        events_checked=4,
        first_bad_sequence=5,
        problem="event 5's hash does not match its contents",
        audit_public_key=raw_public_key(audit_key),
        unsigned_tail=4,
        last_sequence=4,
        head_hash=chain[3].hash,
    )
    assert run([*arguments, "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "ok": False,
        "events_checked": 4,
        "checkpoints_checked": 0,
        "first_bad_sequence": 5,
        "problem": "event 5's hash does not match its contents",
        "audit_public_key": key,
        "last_sequence": 4,
        "head_hash": "0x" + chain[3].hash.hex(),
        "unsigned_tail": 4,
    }
    assert run(arguments) == 1
    assert "TAMPERED at sequence 5: event 5's hash does not match its contents" in capsys.readouterr().out


def test_a_page_over_the_message_limit_is_one_sentence_and_leaves_no_file(
    environment: DevEnvironment,
    chain: list[AuditEvent],
    audit_key: Ed25519PrivateKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A daemon that caps pages by count alone, with a send limit below one page: gRPC itself refuses to send.
    service = ListAuditService(
        events=chain, verification=custody_pb2.VerifyChainResponse(), page_cap=len(chain)
    )
    with serving(environment, service, max_send_message_length=2000) as address:
        out = tmp_path / "audit.jsonl"
        arguments = ["--profile", str(environment.profiles["admin"]), "--server", address, "audit", "export"]
        assert run([*arguments, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(
            "error: the export stopped after event 0: a page of audit events was larger than a gRPC message"
            " may be (SERVER: Sent message larger than max ("
        )
        assert "vs. 2000)); a current daemon keeps its pages under that limit" in err
        assert "raise limits.max_message_bytes" in err and err.count("\n") == 1
        assert list(tmp_path.iterdir()) == []

        # To stdout nothing but events is ever written: the sentence goes to stderr.
        assert run(arguments) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("error: the export stopped after event 0")


def test_an_overloaded_daemon_stops_the_export_in_one_sentence_naming_where(
    environment: DevEnvironment,
    chain: list[AuditEvent],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = ListAuditService(
        events=chain,
        verification=custody_pb2.VerifyChainResponse(),
        exhausted_after=(6, "Concurrent RPC limit exceeded!"),
    )
    with serving(environment, service) as address:
        arguments = ["--profile", str(environment.profiles["admin"]), "--server", address, "audit", "export"]
        assert run(arguments) == 1
        captured = capsys.readouterr()
    assert captured.err == (
        "error: the export stopped after event 6: the daemon refused the next page"
        " (Concurrent RPC limit exceeded).\n"
    )
    # The events before the refusal were written; an export to stdout cannot take them back.
    assert [json.loads(line)["sequence"] for line in captured.out.splitlines()] == list(range(1, 7))


# --- sign tx --replaces ------------------------------------------------------------------------------------


def test_replaces_goes_into_the_submitted_request() -> None:
    payload = b'{"nonce": 7}'
    message = submit_request(
        "ops", custody_pb2.PAYLOAD_KIND_TRANSACTION, payload, replaces_request_id="req_1"
    )
    assert message.replaces_request_id == "req_1"
    assert (message.key_label, message.kind, message.payload) == (
        "ops",
        custody_pb2.PAYLOAD_KIND_TRANSACTION,
        payload,
    )
    assert submit_request("ops", custody_pb2.PAYLOAD_KIND_TRANSACTION, payload).replaces_request_id == ""
    with pytest.raises(InvalidInput, match="--replaces: the request id to replace is empty"):
        submit_request("ops", custody_pb2.PAYLOAD_KIND_TRANSACTION, payload, replaces_request_id=" ")


def test_replaces_is_offered_only_by_sign_tx(no_profile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = no_profile / "tx.json"
    payload.write_text("{}")
    # Accepted by sign tx: the command gets as far as looking for a profile.
    assert run(["sign", "tx", "--key", "ops", "--file", str(payload), "--replaces", "req_1"]) == 2
    assert "no client profile given" in capsys.readouterr().err
    assert run(["sign", "message", "--key", "ops", "--text", "hi", "--replaces", "req_1"]) == 2
    assert "No such option '--replaces'" in capsys.readouterr().err


def test_replaces_shows_in_request_output() -> None:
    replacing = custody_pb2.SigningRequest(
        request_id="req_2", kind=custody_pb2.PAYLOAD_KIND_TRANSACTION, replaces="req_1"
    )
    assert request_to_json(replacing)["replaces"] == "req_1"
    assert "replaces:" in request_text(replacing) and "req_1 (same nonce" in request_text(replacing)
    plain = custody_pb2.SigningRequest(request_id="req_3", kind=custody_pb2.PAYLOAD_KIND_TRANSACTION)
    assert request_to_json(plain)["replaces"] is None
    assert "replaces" not in request_text(plain)


def test_an_approver_sees_that_a_request_replaces_another() -> None:
    transaction = {
        "type": 2,
        "chainId": 11155111,
        "nonce": 7,
        "to": "0x000000000000000000000000000000000000dEaD",
        "value": 0,
        "gas": 21000,
        "maxFeePerGas": 60 * 10**9,
        "maxPriorityFeePerGas": 2 * 10**9,
    }
    request = custody_pb2.SigningRequest(
        request_id="req_2",
        key_label="ops",
        kind=custody_pb2.PAYLOAD_KIND_TRANSACTION,
        payload=json.dumps(transaction).encode(),
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        decision=custody_pb2.Decision(action="approve", rule="treasury", policy_version=1),
        created_at="2024-05-01T12:00:00Z",
        replaces="req_1",
    )
    recomputed = recompute_hashes(request)
    assert "REPLACES       request req_1 (same nonce" in review_text(request, recomputed)
    assert domain_request(request, recomputed).replaces == "req_1"

"""`custody audit ...`: verify the tamper-evident audit log, online or from an export, and export it.

Online verification asks the daemon to recompute its chain. Offline verification needs only an export and the
audit public key, so an auditor can check the log on a machine that never talks to the daemon: the export is
streamed line by line, because a log can hold millions of events.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import grpc

from custody.api._gen import custody_pb2
from custody.audit.chain import ChainVerification, event_to_json_line, verify_json_lines
from custody.audit.events import AuditEvent, format_time
from custody.cli.client import UNARY_TIMEOUT_SECONDS, Connection, connect
from custody.cli.options import client_options, options_of
from custody.cli.output import emit_json, hex_bytes, mapping_text
from custody.domain.errors import AlreadyExists, InvalidInput, ResourceExhausted
from custody.exit_codes import EXIT_ERROR

# Events asked for per ListEvents call: a million-event export takes two thousand calls, and a page of typical
# events (about 300 bytes each) stays well under the daemon's default 512 KiB message limit. The daemon also
# stops a page early by its encoded size, so unusually large events only make pages shorter.
EXPORT_PAGE_SIZE = 500
# A line on stderr this often, so a long run visibly makes progress.
PROGRESS_EVERY = 100_000
ED25519_PUBLIC_KEY_BYTES = 32
# What format_time writes; the daemon sends event times in exactly this form.
_EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@click.group("audit")
@client_options
def audit_group() -> None:
    """The tamper-evident audit log (auditor and admin roles)."""


@audit_group.command("verify")
@client_options
@click.option(
    "--file",
    "file_name",
    metavar="FILE",
    help="Verify this JSON-lines export offline, without a daemon or profile; - for stdin.",
)
@click.option(
    "--public-key",
    metavar="KEY",
    help="With --file: the audit public key, 64 hex characters (0x optional) or a file holding them.",
)
@click.pass_context
@click.option(
    "--accept-unsigned-tail",
    is_flag=True,
    help="With --file: accept an export whose last events no checkpoint signs, verifying the rest.",
)
@click.option(
    "--anchor",
    "anchor",
    metavar="SEQUENCE:HASH",
    help="With --file: an event recorded apart from the database earlier (an earlier verification's last"
    " sequence and head hash); the export must hold it unchanged.",
)
def verify(
    context: click.Context,
    file_name: str | None,
    public_key: str | None,
    accept_unsigned_tail: bool,
    anchor: str | None,
) -> None:
    """Recompute the hash chain and check the signed checkpoints; exit 1 if the log was tampered with.

    Without --file the daemon verifies its own log and names its audit public key; with --file and
    --public-key an export is verified here, offline. An export is verified only if a checkpoint signed by
    that key covers its events: one without such a checkpoint, or an empty one, exits 1 as NOT VERIFIED.
    Events after the last checkpoint are reported as the unsigned tail; offline they are NOT VERIFIED and the
    command exits 1, since whoever wrote the database could have rewritten them, unless
    --accept-unsigned-tail says to accept the checkpointed events alone.
    """
    json_output = options_of(context).json_output
    if anchor is not None and file_name is None:
        raise click.UsageError("--anchor checks an export: give it with --file and --public-key.")
    if file_name is None and public_key is None:
        with connect(options_of(context)) as connection:
            response = connection.audit.VerifyChain(
                custody_pb2.VerifyChainRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        report = online_verification_to_json(response)
        ok = response.ok
        hint = "(verify an export offline with `custody audit verify --file F --public-key KEY`)"
    elif file_name is not None and public_key is not None:
        key = parse_public_key(public_key)
        recorded = parse_recorded_event(anchor) if anchor is not None else None
        with open_export(file_name) as lines:
            verification = verify_json_lines(
                with_progress(lines, "events read", enabled=sys.stderr.isatty()),
                key,
                accept_unsigned_tail=accept_unsigned_tail,
                recorded=recorded,
            )
        report = offline_verification_to_json(verification, key)
        ok = verification.ok
        hint = ""
    else:
        raise click.UsageError("--file and --public-key go together: give both to verify an export offline.")
    if json_output:
        emit_json(report)
    else:
        click.echo(verification_text(report) + (f"\n{hint}" if hint else ""))
    if not ok:
        context.exit(EXIT_ERROR)


@audit_group.command("retire-token-state")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The daemon's server.toml: the token and its PIN are opened as the daemon opens them.",
)
@click.option(
    "--seal-key-id",
    "seal_key_ids",
    multiple=True,
    metavar="HEX",
    help="A seal key the token holds, as the daemon's refusal to start names it; repeat for each.",
)
def retire_token_state(config_path: Path, seal_key_ids: tuple[str, ...]) -> None:
    """Retire the sealed state the HSM token holds (its seal keys and the audit log's anchor), on purpose.

    The daemon refuses to start on a database that the token contradicts: one restored to an older copy, or one
    that names no seal key while the token holds one. When that database really is the one to run (a backup
    restored on purpose, a database that was lost), stop every daemon on the token and run this on the daemon's
    host, naming every seal key the token holds; the next start records what was retired in the audit log.
    Seal keys are relabelled, not destroyed. Without --seal-key-id it only says what the token holds.
    """
    # Imported here so that client commands do not load the HSM machinery.
    from custody.bootstrap import retire_token_state_of

    retired = retire_token_state_of(config_path, seal_key_ids)
    click.echo(f"retired the HSM token's custody state: {retired.describe() or 'nothing'}")
    click.echo("the next start of the daemon records this in the audit log (event anchor.retired)")


@audit_group.command("export")
@client_options
@click.option("--out", "out_file", metavar="FILE", help="Write to this file instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite the --out file if it exists.")
@click.option("--request", "request_id", metavar="ID", help="Only events of this request.")
@click.option("--actor", help="Only events of this actor (a principal, or custody for the daemon).")
@click.option("--kind", help="Only events of this kind, e.g. request.signed.")
@click.option("--since", metavar="TIME", help="Only events from this ISO 8601 time on (UTC if no zone).")
@click.option("--until", metavar="TIME", help="Only events up to this ISO 8601 time (UTC if no zone).")
@click.pass_context
def export(
    context: click.Context,
    *,
    out_file: str | None,
    force: bool,
    request_id: str | None,
    actor: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """Write audit events as JSON lines; a full export verifies offline with `audit verify --file`."""
    query = list_events_query(request_id=request_id, actor=actor, kind=kind, since=since, until=until)
    if out_file is not None and not force and os.path.lexists(out_file):
        raise AlreadyExists(f"{out_file} already exists; pass --force to overwrite it")
    progress = sys.stderr.isatty()
    with connect(options_of(context)) as connection:
        events = with_progress(fetch_events(connection, query), "events exported", enabled=progress)
        if out_file is None:
            write_json_lines(events, sys.stdout)
        else:
            written = write_export_file(events, Path(out_file))
            # Said on stderr, so a script that reads stdout sees nothing new; a person sees it worked.
            click.echo(f"wrote {written} audit events to {out_file}", err=True)


def list_events_query(
    *,
    request_id: str | None = None,
    actor: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> custody_pb2.ListEventsRequest:
    """The ListEvents filter the export pages through, with times in the form the daemon stores them."""
    since_time = parse_time(since, "--since") if since is not None else None
    until_time = parse_time(until, "--until") if until is not None else None
    if since_time is not None and until_time is not None and since_time > until_time:
        raise InvalidInput(f"{since} is after --until {until}", field="--since")
    return custody_pb2.ListEventsRequest(
        request_id=request_id or "",
        actor=actor or "",
        kind=kind or "",
        since=format_time(since_time) if since_time is not None else "",
        until=format_time(until_time) if until_time is not None else "",
        limit=EXPORT_PAGE_SIZE,
    )


def parse_time(value: str, option: str) -> datetime:
    """An ISO 8601 time (date only, or with a time; "Z" or an offset, else UTC) as an aware datetime."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not an ISO 8601 time such as 2024-05-01 or 2024-05-01T12:00:00Z", field=option
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def fetch_events(
    connection: Connection, query: custody_pb2.ListEventsRequest
) -> Iterator[custody_pb2.AuditEvent]:
    """Every event the query matches, in sequence order, one page at a time."""
    page_query = custody_pb2.ListEventsRequest()
    page_query.CopyFrom(query)
    while True:
        try:
            response = connection.audit.ListEvents(page_query, timeout=UNARY_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise _export_stopped(page_query.after_sequence, error.details() or "") from None
            raise
        # Only an empty page ends the export: the daemon may cap the page below the limit asked for.
        if not response.events:
            return
        yield from response.events
        page_query.after_sequence = response.events[-1].sequence


# gRPC's own wording when a message passes the sender's or the receiver's size limit.
_MESSAGE_TOO_LARGE = "message larger than max"


def _export_stopped(after_sequence: int, details: str) -> ResourceExhausted:
    """One sentence for a RESOURCE_EXHAUSTED answer, which stops the export after ``after_sequence``."""
    where = f"the export stopped after event {after_sequence}"
    reason = details.strip().rstrip(".!") or "without details"
    if _MESSAGE_TOO_LARGE in details.lower():
        return ResourceExhausted(
            f"{where}: a page of audit events was larger than a gRPC message may be ({reason}); a current"
            " daemon keeps its pages under that limit, so upgrade the daemon or raise limits.max_message_bytes"
            " in its configuration, then export again"
        )
    return ResourceExhausted(f"{where}: the daemon refused the next page ({reason})")


def audit_event_from_proto(event: custody_pb2.AuditEvent) -> AuditEvent:
    """The audit event the daemon sent, exactly as it was hashed, so its hash can be recomputed."""
    try:
        time = datetime.strptime(event.time, _EVENT_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(
            f"audit event {event.sequence} from the daemon has time {event.time!r}, which is not"
            " YYYY-MM-DDTHH:MM:SS.ffffffZ",
            field="time",
        ) from None
    try:
        details: Any = json.loads(event.details_json)
    except ValueError:
        details = None
    if not isinstance(details, dict):
        raise InvalidInput(
            f"audit event {event.sequence} from the daemon has details that are not a JSON object",
            field="details_json",
        )
    return AuditEvent(
        sequence=event.sequence,
        time=time,
        actor=event.actor,
        kind=event.kind,
        request_id=event.request_id or None,
        details=details,
        previous_hash=bytes(event.previous_hash),
        hash=bytes(event.hash),
    )


def write_json_lines(events: Iterable[custody_pb2.AuditEvent], stream: IO[str]) -> int:
    """Write each event as one JSON line; return how many were written."""
    count = 0
    for event in events:
        stream.write(event_to_json_line(audit_event_from_proto(event)) + "\n")
        count += 1
    stream.flush()
    return count


def write_export_file(events: Iterable[custody_pb2.AuditEvent], path: Path) -> int:
    """Write the export next to ``path`` and move it into place only when complete.

    An export that fails half way (the daemon goes away, the disk fills) then leaves no truncated file that
    could later pass for the whole log.
    """
    try:
        descriptor, partial_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".partial", text=True
        )
    except OSError as error:
        raise _unwritable(path, error) from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as stream:
            count = write_json_lines(events, stream)
        os.replace(partial_name, path)
    except OSError as error:
        os.unlink(partial_name)
        raise _unwritable(path, error) from None
    except BaseException:
        os.unlink(partial_name)
        raise
    return count


def _unwritable(path: Path, error: OSError) -> InvalidInput:
    reason = (error.strerror or str(error)).lower()
    return InvalidInput(f"cannot write {path}: {reason}", field="--out")


def parse_recorded_event(value: str) -> tuple[int, bytes]:
    """SEQUENCE:HASH as an earlier verification prints them (the hash 64 hex characters, 0x optional)."""
    sequence_text, _, hash_text = value.partition(":")
    recorded_hash = _hex_key(hash_text.strip())
    if not sequence_text.strip().isdigit() or int(sequence_text) < 1 or recorded_hash is None:
        raise InvalidInput(
            f"{value!r} is not SEQUENCE:HASH, a positive event number and its hash of 64 hex characters",
            field="--anchor",
        )
    return int(sequence_text), recorded_hash


def parse_public_key(value: str) -> bytes:
    """The raw 32-byte Ed25519 key from 64 hex characters (0x optional), or from a file holding them."""
    key = _hex_key(value)
    if key is not None:
        return key
    try:
        text = Path(value).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise InvalidInput(
            f"{value!r} is neither 64 hex characters nor a file that exists", field="--public-key"
        ) from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InvalidInput(f"cannot read {value}: {reason}", field="--public-key") from None
    key = _hex_key(text)
    if key is None:
        raise InvalidInput(
            f"{value} does not hold an audit public key of 64 hex characters", field="--public-key"
        )
    return key


def _hex_key(text: str) -> bytes | None:
    digits = text.strip().removeprefix("0x").removeprefix("0X")
    if len(digits) != 2 * ED25519_PUBLIC_KEY_BYTES:
        return None
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return None


@contextmanager
def open_export(file_name: str) -> Iterator[Iterator[str]]:
    """The lines of an export file (stdin for "-"), read lazily so a huge file is never held in memory."""
    if file_name == "-":
        yield _read_lines(sys.stdin, "stdin")
        return
    try:
        stream = open(file_name, encoding="utf-8", newline="")  # noqa: SIM115 - closed below, after the reads
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InvalidInput(f"cannot read {file_name}: {reason}", field="--file") from None
    with stream:
        yield _read_lines(stream, file_name)


def _read_lines(stream: IO[str], name: str) -> Iterator[str]:
    try:
        yield from stream
    except UnicodeDecodeError:
        raise InvalidInput(f"{name} is not UTF-8 text", field="--file") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InvalidInput(f"cannot read {name}: {reason}", field="--file") from None


def with_progress(items: Iterable[Any], what: str, *, enabled: bool) -> Iterator[Any]:
    """Pass ``items`` through, writing "N <what>" to stderr every PROGRESS_EVERY items when ``enabled``."""
    for count, item in enumerate(items, start=1):
        yield item
        if enabled and count % PROGRESS_EVERY == 0:
            click.echo(f"{count:,} {what}...", err=True)


def online_verification_to_json(response: custody_pb2.VerifyChainResponse) -> dict[str, Any]:
    return {
        "ok": response.ok,
        "events_checked": response.events_checked,
        "checkpoints_checked": response.checkpoints_checked,
        # The proto uses zero for "nothing is bad"; events start at one, so null says it plainly.
        "first_bad_sequence": response.first_bad_sequence or None,
        "problem": response.problem or None,
        "audit_public_key": hex_bytes(response.audit_public_key),
        "last_sequence": response.last_sequence or None,
        "head_hash": hex_bytes(response.head_hash) if response.head_hash else None,
        "unsigned_tail": response.unsigned_tail,
    }


def offline_verification_to_json(verification: ChainVerification, public_key: bytes) -> dict[str, Any]:
    head = verification.last_event
    return {
        "ok": verification.ok,
        "events_checked": verification.events_checked,
        "checkpoints_checked": verification.checkpoints_checked,
        "first_bad_sequence": verification.first_bad_sequence or None,
        "problem": verification.problem or None,
        "audit_public_key": hex_bytes(public_key),
        "last_sequence": head.sequence if head is not None else None,
        "head_hash": hex_bytes(head.hash) if head is not None else None,
        "unsigned_tail": verification.unsigned_tail,
    }


def verification_text(report: dict[str, Any]) -> str:
    if report["ok"]:
        verdict = "ok"
    elif report["first_bad_sequence"] is None:
        verdict = f"NOT VERIFIED: {report['problem']}"
    else:
        verdict = f"TAMPERED at sequence {report['first_bad_sequence']}: {report['problem']}"
    fields = {
        "audit log": verdict,
        "events checked": str(report["events_checked"]),
        "checkpoints checked": str(report["checkpoints_checked"]),
    }
    # After a failure the head reached is only the last event before the bad one, which the verdict names.
    if report["first_bad_sequence"] is None and report["last_sequence"] is not None:
        fields["last sequence"] = str(report["last_sequence"])
        fields["head hash"] = report["head_hash"]
        fields["unsigned tail"] = _unsigned_tail_text(report)
    fields["audit public key"] = report["audit_public_key"]
    return mapping_text(fields)


def _unsigned_tail_text(report: dict[str, Any]) -> str:
    tail = report["unsigned_tail"]
    if tail == 0:
        return "none: a checkpoint covers the last event"
    if report["checkpoints_checked"] == 0:
        return f"{tail} events are chained but no checkpoint signs them"
    last_checkpoint = report["last_sequence"] - tail
    return (
        f"{tail} events after the last checkpoint are chained but not yet signed (the last checkpoint is"
        f" event {last_checkpoint})"
    )

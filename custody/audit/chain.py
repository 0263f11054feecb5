"""Verifying the audit chain and its signed checkpoints, and the JSON lines export format.

A verifier walks the events in sequence order keeping only the event before the current one, so it runs in
constant memory over logs of any length. For every event it checks, in this order, that the sequence is the
next one, that the previous hash is the hash of the event before it (or the genesis hash), and that the stored
hash is the hash of the event's contents. It stops at the first failure and names that sequence number.

A checkpoint is itself an event (kind ``audit.checkpoint``, actor ``custody``) whose details carry an Ed25519
signature over a statement of the sequence and hash of the event just before it. The daemon always writes a
checkpoint right after the event it covers, so a verifier requires ``covers_sequence == sequence - 1`` and
compares ``covers_hash`` with the previous hash it has already checked; this keeps verification streaming
without a map of earlier hashes. The hash chain alone proves that nothing was changed after a point only to
someone who knows a later hash; the checkpoints make that point the latest checkpoint, for anyone who holds
the audit public key. Events after the last checkpoint are chained but not yet signed: they verify, and the
result reports how many there are as ``unsigned_tail``. Cutting events off the end of the log is therefore
detectable only by comparing the head with a known one (``ChainVerification.last_event``).

Offline, an export is worth only what its checkpoints prove: anyone can compute a hash chain over events of
their own making, so ``verify_json_lines`` does not accept an export unless at least one checkpoint signed by
the given public key covers its events. An empty export proves nothing either and is not accepted.

The export is one JSON object per line with the keys sequence, time, actor, kind, request_id, details,
previous_hash and hash. Parsing is strict: a line must be exactly what ``event_to_json_line`` writes for the
event it describes, so that a change to any byte of an exported line either fails to parse or changes the
event and with it a hash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.audit.anchor import event_mismatch
from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, AuditKind, event_hash, format_time
from custody.domain.canonical_json import canonical_json
from custody.domain.errors import InvalidInput

CHECKPOINT_KIND = AuditKind.AUDIT_CHECKPOINT
CHECKPOINT_ACTOR = "custody"
CHECKPOINT_PREFIX = b"custody audit checkpoint v1\n"
CHECKPOINT_FIELDS = frozenset({"covers_sequence", "covers_hash", "public_key", "signature"})
EXPORT_KEYS = ("sequence", "time", "actor", "kind", "request_id", "details", "previous_hash", "hash")

_LOWER_HEX = re.compile(r"[0-9a-f]*")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# Built once: verifying an export parses and re-encodes every line, and the json module's convenience
# functions construct a new decoder or encoder for every call with non-default options.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def checkpoint_statement(sequence: int, event_hash: bytes) -> bytes:
    """The bytes the audit key signs: a version prefix, then compact JSON with sorted keys."""
    body = canonical_json({"hash": event_hash.hex(), "sequence": sequence}, ascii_only=True)
    return CHECKPOINT_PREFIX + body.encode("ascii")


def checkpoint_draft(head: AuditEvent, public_key: bytes, signature: bytes, time: datetime) -> AuditDraft:
    """The checkpoint event that follows ``head``, carrying the audit key's signature over its statement.

    The signature is verified here, before the checkpoint is stored: a checkpoint that does not verify would
    make every later verification of the chain fail, including the one the daemon runs at startup.
    """
    if len(head.hash) != 32:
        raise ValueError("a checkpoint must cover a 32-byte event hash")
    problem = _signature_problem(public_key, signature, checkpoint_statement(head.sequence, head.hash))
    if problem:
        raise ValueError(f"the checkpoint after event {head.sequence} {problem}")
    return AuditDraft(
        time=time,
        actor=CHECKPOINT_ACTOR,
        kind=CHECKPOINT_KIND,
        request_id=None,
        details={
            "covers_sequence": head.sequence,
            "covers_hash": head.hash.hex(),
            "public_key": public_key.hex(),
            "signature": signature.hex(),
        },
    )


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of walking a chain: either every event verified, or the first one that did not and why."""

    ok: bool
    events_checked: int  # events that verified, checkpoints included; the bad one is not counted
    checkpoints_checked: int
    first_bad_sequence: int | None  # the sequence at which the chain breaks; a missing event's own number
    problem: str  # one sentence naming what is wrong; empty when ok
    last_event: AuditEvent | None  # the last event that verified: the head reached
    unsigned_tail: int  # verified events after the last checkpoint seen in this run


def verify_events(
    events: Iterable[AuditEvent], *, public_key: bytes | None, start_after: AuditEvent | None = None
) -> ChainVerification:
    """Verify a chain of events in sequence order, stopping at the first bad one.

    ``start_after`` is an already trusted event (for instance the one the last verified checkpoint covers):
    the events must continue from it. With ``public_key`` every checkpoint must be signed by that key; without
    it, every checkpoint must be signed by the same key as the first one and verify under it, which proves the
    log is consistent but not who wrote it.
    """
    if public_key is not None and len(public_key) != 32:
        raise InvalidInput("the audit public key must be 32 bytes (a raw Ed25519 public key)")
    expected_key = public_key.hex() if public_key is not None else None
    previous = start_after
    checked = 0
    checkpoints = 0
    unsigned = 0

    def result(bad_sequence: int | None = None, problem: str = "") -> ChainVerification:
        return ChainVerification(
            ok=bad_sequence is None,
            events_checked=checked,
            checkpoints_checked=checkpoints,
            first_bad_sequence=bad_sequence,
            problem=problem,
            last_event=previous,
            unsigned_tail=unsigned,
        )

    for event in events:
        expected = previous.sequence + 1 if previous is not None else 1
        if event.sequence != expected:
            return result(
                expected,
                f"expected event {expected} but found event {event.sequence}: an event was deleted, inserted "
                "or reordered",
            )
        previous_hash = previous.hash if previous is not None else GENESIS_HASH
        if event.previous_hash != previous_hash:
            before = f"event {expected - 1}" if previous is not None else "the genesis hash"
            return result(expected, f"event {expected} does not link to {before}: its previous hash differs")
        try:
            recomputed = event_hash(event.sequence, event, event.previous_hash)
        except (TypeError, ValueError):
            return result(
                expected,
                f"event {expected} cannot be hashed: its time is not timezone-aware or its details are not "
                "JSON values",
            )
        if event.hash != recomputed:
            return result(expected, f"event {expected} was altered: its hash does not match its contents")
        if event.kind == CHECKPOINT_KIND:
            problem = _checkpoint_problem(event, expected_key, public_key is not None)
            if problem:
                return result(expected, problem)
            expected_key = str(event.details["public_key"])
            checkpoints += 1
            unsigned = 0
        else:
            unsigned += 1
        previous = event
        checked += 1
    return result()


def _checkpoint_problem(event: AuditEvent, expected_key: str | None, key_given: bool) -> str:
    """What is wrong with a checkpoint whose hash and link already verified, or an empty string."""
    sequence = event.sequence
    if event.actor != CHECKPOINT_ACTOR or event.request_id is not None:
        return f"checkpoint {sequence} was not written by custody: its actor or request id is wrong"
    details = event.details
    if set(details) != CHECKPOINT_FIELDS:
        return (
            f"checkpoint {sequence} must have exactly the fields covers_sequence, covers_hash, public_key "
            "and signature"
        )
    covers = details["covers_sequence"]
    if not isinstance(covers, int) or isinstance(covers, bool):
        return f"checkpoint {sequence} has a covers_sequence that is not an integer"
    if sequence == 1:
        return f"checkpoint {sequence} is the first event, so there is no event before it to cover"
    if covers != sequence - 1:
        return (
            f"checkpoint {sequence} covers sequence {covers}, but a checkpoint must cover the event just "
            f"before it ({sequence - 1})"
        )
    covers_hash = _hex_field(details, "covers_hash", 32)
    public_key = _hex_field(details, "public_key", 32)
    signature = _hex_field(details, "signature", 64)
    if covers_hash is None or public_key is None or signature is None:
        return (
            f"checkpoint {sequence} has a covers_hash, public_key or signature that is not lowercase hex of "
            "the right length"
        )
    if covers_hash != event.previous_hash:
        return f"checkpoint {sequence} covers a hash that is not the hash of event {covers}"
    if expected_key is not None and public_key.hex() != expected_key:
        source = "the audit public key" if key_given else "the earlier checkpoints"
        return f"checkpoint {sequence} is signed by another key than {source}"
    signature_problem = _signature_problem(public_key, signature, checkpoint_statement(covers, covers_hash))
    if signature_problem:
        return f"checkpoint {sequence} {signature_problem}"
    return ""


def _hex_field(details: Mapping[str, Any], name: str, size: int) -> bytes | None:
    value = details[name]
    if isinstance(value, str) and len(value) == 2 * size and _LOWER_HEX.fullmatch(value):
        return bytes.fromhex(value)
    return None


def _signature_problem(public_key: bytes, signature: bytes, statement: bytes) -> str:
    """Why an Ed25519 signature does not verify, as the end of a sentence, or an empty string."""
    if len(public_key) != 32:
        return "carries a public key that is not 32 bytes"
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, statement)
    except InvalidSignature:
        return "has a signature that does not verify under its public key"
    return ""


def event_to_json_line(event: AuditEvent) -> str:
    """One line of the export, without the newline: compact JSON, ASCII only, keys in the documented order."""
    return _ENCODER.encode(
        {
            "sequence": event.sequence,
            "time": format_time(event.time),
            "actor": event.actor,
            "kind": event.kind,
            "request_id": event.request_id,
            "details": dict(event.details),
            "previous_hash": event.previous_hash.hex(),
            "hash": event.hash.hex(),
        }
    )


def event_from_json_line(line: str, line_number: int) -> AuditEvent:
    """Parse one exported line (a trailing newline is allowed), refusing anything not written by the export."""
    text = line[:-1] if line.endswith("\n") else line
    where = f"line {line_number} of the audit export"
    try:
        body = _DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        reason = f" ({error.msg} at column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        raise InvalidInput(f"{where} is not valid JSON{reason}") from None
    if not isinstance(body, dict) or set(body) != set(EXPORT_KEYS):
        raise InvalidInput(f"{where} must be a JSON object with exactly the keys {', '.join(EXPORT_KEYS)}")
    sequence = body["sequence"]
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        raise InvalidInput(f"{where} has a sequence that is not a positive integer")
    time = _parse_time(body["time"])
    if time is None:
        raise InvalidInput(f"{where} has a time that is not of the form 2025-01-31T12:00:00.000000Z")
    for name in ("actor", "kind"):
        if not isinstance(body[name], str) or not body[name]:
            raise InvalidInput(f"{where} has a {name} that is not a non-empty string")
    if body["request_id"] is not None and not isinstance(body["request_id"], str):
        raise InvalidInput(f"{where} has a request_id that is neither a string nor null")
    if not isinstance(body["details"], dict):
        raise InvalidInput(f"{where} has details that are not a JSON object")
    previous_hash = _hex_field(body, "previous_hash", 32)
    own_hash = _hex_field(body, "hash", 32)
    if previous_hash is None or own_hash is None:
        raise InvalidInput(f"{where} has a previous_hash or hash that is not 64 lowercase hex digits")
    event = AuditEvent(
        sequence=sequence,
        time=time,
        actor=body["actor"],
        kind=body["kind"],
        request_id=body["request_id"],
        details=body["details"],
        previous_hash=previous_hash,
        hash=own_hash,
    )
    # The line must be exactly what event_to_json_line writes for this event. That refuses duplicate keys,
    # other key orders, whitespace and alternative escapes, none of which the hash would notice. The fields
    # were checked above to be in their one written form, so re-encoding the parsed object is the same test
    # as re-encoding the event, and cheaper because no time or hash has to be formatted again.
    if list(body) != list(EXPORT_KEYS) or _ENCODER.encode(body) != text:
        raise InvalidInput(f"{where} is not in the exact form the export writes")
    return event


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # fromisoformat accepts many ISO 8601 forms; only the fixed-width UTC form the export writes is allowed.
    return parsed if parsed.tzinfo is not None and format_time(parsed) == value else None


def verify_json_lines(
    lines: Iterable[str],
    public_key: bytes,
    *,
    accept_unsigned_tail: bool = False,
    recorded: tuple[int, bytes] | None = None,
) -> ChainVerification:
    """Verify an export offline with the audit public key alone; a malformed line fails it like a bad event,
    and an intact chain that no checkpoint signed by ``public_key`` covers is not verified (see
    ``require_signed_checkpoint``), nor are events after its last checkpoint unless ``accept_unsigned_tail``
    (see ``require_covered_tail``). ``recorded`` is the (sequence, hash) of an event recorded apart from the
    database earlier (an earlier export's head, or the token's anchor): the export must hold that very event,
    or events were removed or rewritten since."""
    refusals: list[InvalidInput] = []
    found: list[AuditEvent] = []

    def parsed() -> Iterator[AuditEvent]:
        for number, line in enumerate(lines, start=1):
            try:
                event = event_from_json_line(line, number)
            except InvalidInput as error:
                refusals.append(error)
                return
            if recorded is not None and event.sequence == recorded[0]:
                found.append(event)
            yield event

    outcome = verify_events(parsed(), public_key=public_key)
    if outcome.ok and refusals:
        head = outcome.last_event
        return replace(
            outcome,
            ok=False,
            first_bad_sequence=head.sequence + 1 if head is not None else 1,
            problem=refusals[0].message,
        )
    if outcome.ok and recorded is not None:
        head = outcome.last_event
        mismatch = event_mismatch(
            recorded[0],
            recorded[1],
            found[0] if found else None,
            head.sequence if head is not None else 0,
            holder="the export",
            voucher="the recorded event",
        )
        if mismatch is not None:
            return replace(outcome, ok=False, first_bad_sequence=mismatch.sequence, problem=mismatch.problem)
    outcome = require_signed_checkpoint(outcome)
    return outcome if accept_unsigned_tail else require_covered_tail(outcome)


def require_covered_tail(outcome: ChainVerification) -> ChainVerification:
    """A verified chain with events after its last checkpoint, turned into a failure naming that tail.

    Whoever can write the database can rewrite every event after the last checkpoint and recompute their
    hashes, so those events prove nothing offline; the events up to the checkpoint do, and a person who knows
    that may accept them alone. ``first_bad_sequence`` stays None: nothing is provably altered.
    """
    if not outcome.ok or outcome.unsigned_tail == 0:
        return outcome
    head = outcome.last_event
    last = head.sequence if head is not None else outcome.unsigned_tail
    first = last - outcome.unsigned_tail + 1
    problem = (
        f"events {first} to {last} follow the last checkpoint and no checkpoint signs them, so they are not"
        f" verified (the events up to {first - 1} are; --accept-unsigned-tail accepts the export without its tail)"
    )
    return replace(outcome, ok=False, problem=problem)


def require_signed_checkpoint(outcome: ChainVerification) -> ChainVerification:
    """An intact chain that no checkpoint covers, turned into a failure: ``ok`` false, no bad sequence (nothing
    in it is provably altered) and a problem sentence saying why it is not verified.

    Holding only the public key, a verifier learns nothing from a chain whose hashes check out, since a forger
    computes those as easily as the daemon; only a checkpoint signed by the key ties the events to the HSM.
    ``outcome`` must come from ``verify_events`` with the public key given, so that every checkpoint counted
    was signed by that key.
    """
    if not outcome.ok or outcome.checkpoints_checked > 0:
        return outcome
    if outcome.events_checked == 0:
        problem = "the export holds no events, so there is nothing to verify"
    else:
        problem = (
            f"no checkpoint signed by the audit public key covers these {outcome.events_checked} events, and"
            " anyone can compute a hash chain, so nothing in them is proven"
        )
    return replace(outcome, ok=False, problem=problem)

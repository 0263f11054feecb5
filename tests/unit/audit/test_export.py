"""The JSON lines export (custody.audit.chain): round trip, strict parsing, offline verification.

The export must be verifiable with the audit public key alone, so the parser is strict: a line is accepted only
if it is exactly what event_to_json_line writes. The property tests check the consequence that matters: no
single-byte change to an exported line survives, it either fails to parse or fails verification, and the
failure names the sequence of the changed line.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from custody.audit.chain import (
    event_from_json_line,
    event_to_json_line,
    verify_events,
    verify_json_lines,
)
from custody.domain.errors import InvalidInput
from tests.fuzzing import cases
from tests.unit.audit.logs import build_log, raw_public_key, rechain

AUDIT_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = raw_public_key(AUDIT_KEY)
LOG = build_log(14, AUDIT_KEY)  # checkpoints at 5 and 10, unsigned tail 11..14
LINES = [event_to_json_line(event) for event in LOG]


def body(sequence: int) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(LINES[sequence - 1])
    return decoded


def test_a_line_has_the_documented_keys_in_order_and_values() -> None:
    event = LOG[2]
    assert list(body(3)) == [
        "sequence",
        "time",
        "actor",
        "kind",
        "request_id",
        "details",
        "previous_hash",
        "hash",
    ]
    assert body(3) == {
        "sequence": 3,
        "time": "2025-03-01T09:30:03.000021Z",
        "actor": event.actor,
        "kind": event.kind,
        "request_id": event.request_id,
        "details": dict(event.details),
        "previous_hash": event.previous_hash.hex(),
        "hash": event.hash.hex(),
    }
    assert "\n" not in LINES[2] and LINES[2].isascii()
    assert "\\u00e9" in LINES[2]  # the "café" in the details, escaped so every line is ASCII


def test_a_null_request_id_is_exported_as_null() -> None:
    assert body(4)["request_id"] is None and LOG[3].request_id is None


def test_every_event_round_trips_exactly() -> None:
    for number, (event, line) in enumerate(zip(LOG, LINES, strict=True), start=1):
        assert event_from_json_line(line, number) == event
        assert event_from_json_line(line + "\n", number) == event


def test_an_exported_file_verifies_offline_with_the_public_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line + "\n" for line in LINES), encoding="ascii")
    with path.open(encoding="utf-8") as lines:
        result = verify_json_lines(lines, PUBLIC_KEY, accept_unsigned_tail=True)
    assert result == verify_events(iter(LOG), public_key=PUBLIC_KEY)
    assert result.ok and result.events_checked == 14 and result.checkpoints_checked == 2
    assert result.unsigned_tail == 4 and result.last_event == LOG[-1]


def test_events_after_the_last_checkpoint_are_not_verified_unless_accepted() -> None:
    result = verify_json_lines(LINES, PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence is None
    assert result.unsigned_tail == 4
    assert "events 11 to 14 follow the last checkpoint" in result.problem


def test_an_export_verified_with_another_public_key_fails_at_the_first_checkpoint() -> None:
    result = verify_json_lines(LINES, raw_public_key(Ed25519PrivateKey.generate()))
    assert not result.ok and result.first_bad_sequence == 5 and "audit public key" in result.problem


def test_an_empty_export_is_not_verified_as_there_is_nothing_to_verify() -> None:
    result = verify_json_lines([], PUBLIC_KEY)
    assert not result.ok and result.events_checked == 0 and result.first_bad_sequence is None
    assert result.problem == "the export holds no events, so there is nothing to verify"


def test_an_export_cut_before_the_first_checkpoint_is_not_verified() -> None:
    # The four events are the daemon's own and their chain is intact, but nothing signed proves that.
    result = verify_json_lines(LINES[:4], PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence is None
    assert result.events_checked == 4 and result.unsigned_tail == 4 and result.checkpoints_checked == 0
    assert result.last_event == LOG[3]
    assert "no checkpoint signed by the audit public key covers these 4 events" in result.problem


def test_a_forged_log_without_checkpoints_is_not_verified() -> None:
    # Anyone can chain events of their own making; without the audit key they cannot add a checkpoint.
    forged = rechain([replace(event, actor="mallory") for event in LOG[:4]], 0)
    assert verify_events(iter(forged), public_key=PUBLIC_KEY).ok
    result = verify_json_lines([event_to_json_line(event) for event in forged], PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence is None and result.checkpoints_checked == 0
    assert "no checkpoint signed by the audit public key" in result.problem


def test_a_tampered_export_without_checkpoints_names_the_bad_event_not_the_missing_checkpoint() -> None:
    result = verify_json_lines([*LINES[:2], LINES[3]], PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence == 3 and "expected event 3" in result.problem


def with_field(line_sequence: int, **changes: object) -> str:
    """The exported line of an event with some fields replaced, in the export's compact form."""
    return json.dumps({**body(line_sequence), **changes}, separators=(",", ":"))


MALFORMED = {
    "not JSON": ("{", "not valid JSON"),
    "truncated": (LINES[6][:-1], "not valid JSON"),
    "an array": ("[1, 2]", "exactly the keys"),
    "a missing key": (json.dumps({k: v for k, v in body(7).items() if k != "kind"}), "exactly the keys"),
    "an extra key": (with_field(7, extra=1), "exactly the keys"),
    "a boolean sequence": (with_field(7, sequence=True), "sequence"),
    "a zero sequence": (with_field(7, sequence=0), "sequence"),
    "a string sequence": (with_field(7, sequence="7"), "sequence"),
    "a time without microseconds": (with_field(7, time="2025-03-01T09:30:06Z"), "time"),
    "a time with an offset": (with_field(7, time="2025-03-01T09:30:06.000042+00:00"), "time"),
    "a time with a short field": (with_field(7, time="2025-3-01T09:30:06.000042Z"), "time"),
    "a numeric time": (with_field(7, time=1740821406), "time"),
    "an empty actor": (with_field(7, actor=""), "actor"),
    "a numeric kind": (with_field(7, kind=3), "kind"),
    "a numeric request id": (with_field(7, request_id=12), "request_id"),
    "details as a list": (with_field(7, details=[1]), "details"),
    "an uppercase hash": (with_field(7, hash=LOG[6].hash.hex().upper()), "hash"),
    "a short previous hash": (with_field(7, previous_hash="00" * 31), "previous_hash"),
    "NaN in the details": (LINES[6].replace('"chain_id":1', '"chain_id":NaN'), "not valid JSON"),
    "spaces after separators": (json.dumps(body(7)), "exact form"),
    "sorted keys": (json.dumps(body(7), sort_keys=True, separators=(",", ":")), "exact form"),
    "a duplicate key": (LINES[6][:-1] + ',"actor":"' + LOG[6].actor + '"}', "exact form"),
    "a raw non-ASCII character": (LINES[2].replace("\\u00e9", "é"), "exact form"),
    "an uppercase escape": (LINES[2].replace("\\u00e9", "\\u00E9"), "exact form"),
    "a trailing carriage return": (LINES[6] + "\r\n", "exact form"),
    "an empty line": ("", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_lines_are_refused_naming_the_line(name: str) -> None:
    line, words = MALFORMED[name]
    with pytest.raises(InvalidInput) as caught:
        event_from_json_line(line, 7)
    assert caught.value.message.startswith("line 7 of the audit export ")
    assert words in caught.value.message


def test_the_refusal_message_does_not_echo_the_line() -> None:
    secret_looking = with_field(7, actor="", details={"note": "pin 1234-5678"})
    with pytest.raises(InvalidInput) as caught:
        event_from_json_line(secret_looking, 7)
    assert "1234" not in caught.value.message


def test_a_malformed_line_in_a_file_fails_verification_at_that_sequence() -> None:
    lines = [*LINES[:6], "{not json", *LINES[7:]]
    result = verify_json_lines(lines, PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence == 7 and result.events_checked == 6
    assert result.problem.startswith("line 7 of the audit export is not valid JSON")


def test_a_bad_event_before_a_malformed_line_is_reported_first() -> None:
    lines = [*LINES[:2], LINES[3], LINES[2], "{not json"]
    result = verify_json_lines(lines, PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence == 3 and "expected event 3" in result.problem


def test_an_edited_and_reexported_event_fails_verification() -> None:
    edited = event_from_json_line(with_field(7, actor="mallory"), 7)
    result = verify_json_lines([*LINES[:6], event_to_json_line(edited), *LINES[7:]], PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence == 7 and "altered" in result.problem


def test_a_deleted_line_fails_verification() -> None:
    result = verify_json_lines([*LINES[:6], *LINES[7:]], PUBLIC_KEY)
    assert not result.ok and result.first_bad_sequence == 7


def changed_lines(index: int, position: int, new_byte: int) -> list[str]:
    """The export up to line ``index`` with one byte of that line replaced, read as a file reader would."""
    data = bytearray(LINES[index].encode("ascii"))
    data[position] = new_byte
    # Bytes that are not UTF-8 reach the parser as lone surrogates rather than stopping the test early.
    return [*LINES[:index], data.decode("utf-8", errors="surrogateescape")]


def assert_change_is_caught(index: int, position: int, new_byte: int) -> None:
    result = verify_json_lines(changed_lines(index, position, new_byte), PUBLIC_KEY)
    assert not result.ok, (index, position, new_byte)
    assert result.first_bad_sequence == index + 1, (index, position, new_byte, result.problem)


@settings(max_examples=cases(1500), deadline=None)
@given(data=st.data())
def test_any_single_byte_change_in_any_line_fails_to_parse_or_to_verify(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(LINES) - 1), label="line")
    position = data.draw(st.integers(0, len(LINES[index]) - 1), label="position")
    old = LINES[index].encode("ascii")[position]
    new_byte = data.draw(st.integers(0, 255).filter(lambda value: value != old), label="byte")
    assert_change_is_caught(index, position, new_byte)


@pytest.mark.parametrize("index", [0, 2, 4])  # the first event, one with an escaped character, a checkpoint
def test_every_position_of_a_line_under_the_likeliest_single_byte_changes(index: int) -> None:
    # Neighbouring digits and letters, flipped case, and the JSON structural characters at every position.
    line = LINES[index].encode("ascii")
    for position, old in enumerate(line):
        candidates = {old ^ 0x20, old + 1, old - 1, 0x20, 0x22, 0x2C, 0x30, 0x5C, 0x7D, 0x0A} - {old}
        for new_byte in candidates:
            if 0 <= new_byte <= 255:
                assert_change_is_caught(index, position, new_byte)


def test_a_time_exported_from_another_timezone_is_normalized_to_utc() -> None:
    local = datetime(2025, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    event = replace(LOG[0], time=local)
    parsed = event_from_json_line(event_to_json_line(event), 1)
    assert parsed.time == datetime(2025, 3, 1, 9, 30, tzinfo=UTC) and parsed.time.tzinfo is UTC

"""Verification of the audit hash chain and its signed checkpoints (custody.audit.chain.verify_events).

Every log here is real: events chained with chain_event, checkpoints signed with a cryptography Ed25519 key.
Each tampering test changes the log the way someone with write access to the database could, and asserts the
exact first bad sequence number and that the problem sentence names it.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.audit.chain import (
    CHECKPOINT_KIND,
    ChainVerification,
    checkpoint_draft,
    checkpoint_statement,
    verify_events,
)
from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, chain_event
from custody.domain.errors import InvalidInput
from tests.unit.audit.logs import (
    build_log,
    iter_log,
    ordinary_draft,
    raw_public_key,
    rechain,
    rehash,
    sign_checkpoint,
)

AUDIT_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = raw_public_key(AUDIT_KEY)
OTHER_KEY = Ed25519PrivateKey.generate()

# 18 events: checkpoints at 5, 10 and 15 (each covering the event before it), an unsigned tail of 16..18.
LOG = build_log(18, AUDIT_KEY)
CHECKPOINTS = [event.sequence for event in LOG if event.kind == CHECKPOINT_KIND]


def at(sequence: int) -> AuditEvent:
    return LOG[sequence - 1]


def assert_bad(result: ChainVerification, sequence: int, *words: str) -> None:
    assert not result.ok
    assert result.first_bad_sequence == sequence, result.problem
    assert str(sequence) in result.problem
    for word in words:
        assert word in result.problem, result.problem
    # The head reached is the last event before the bad one, and only the events before it were counted.
    assert result.events_checked == sequence - 1
    assert (result.last_event.sequence if result.last_event else 0) == sequence - 1


def verify(events: list[AuditEvent], public_key: bytes | None = PUBLIC_KEY) -> ChainVerification:
    return verify_events(iter(events), public_key=public_key)


def test_the_fixture_log_has_three_checkpoints_each_after_the_event_it_covers() -> None:
    assert CHECKPOINTS == [5, 10, 15]
    for sequence in CHECKPOINTS:
        assert at(sequence).details["covers_sequence"] == sequence - 1
        assert at(sequence).details["covers_hash"] == at(sequence - 1).hash.hex()


def test_an_untouched_log_verifies_with_and_without_the_public_key() -> None:
    for public_key in (PUBLIC_KEY, None):
        result = verify(LOG, public_key)
        assert result == ChainVerification(
            ok=True,
            events_checked=18,
            checkpoints_checked=3,
            first_bad_sequence=None,
            problem="",
            last_event=at(18),
            unsigned_tail=3,
        )


def test_every_checkpoint_signature_verifies_independently_with_cryptography() -> None:
    for sequence in CHECKPOINTS:
        details = at(sequence).details
        AUDIT_KEY.public_key().verify(
            bytes.fromhex(details["signature"]), checkpoint_statement(sequence - 1, at(sequence - 1).hash)
        )
        assert bytes.fromhex(details["public_key"]) == PUBLIC_KEY


def test_the_checkpoint_statement_is_the_prefix_and_compact_sorted_json() -> None:
    digest = bytes(range(32))
    assert checkpoint_statement(1000, digest) == (
        b'custody audit checkpoint v1\n{"hash":"' + digest.hex().encode() + b'","sequence":1000}'
    )


def test_an_empty_log_is_ok() -> None:
    result = verify([])
    assert result.ok and result.events_checked == 0 and result.last_event is None
    assert result.unsigned_tail == 0 and result.first_bad_sequence is None


def test_a_log_ending_in_a_checkpoint_has_no_unsigned_tail() -> None:
    result = verify(LOG[:15])
    assert result.ok and result.unsigned_tail == 0 and result.checkpoints_checked == 3


def test_a_log_without_checkpoints_is_an_intact_chain_that_is_all_unsigned_tail() -> None:
    # The chain is intact, which is all verify_events says; that nothing signs it is in the counts, and the
    # offline verification of an export refuses it on that ground (test_export.py).
    result = verify(LOG[:4])
    assert result.ok and result.unsigned_tail == 4 and result.checkpoints_checked == 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("actor", "mallory"),
        ("kind", "request.rejected"),
        ("request_id", "req_ffffffffffffffffffffffffffffffff"),
        ("request_id", None),
        ("details", {"nonce": 7, "chain_id": 1, "to": "0x" + "0" * 40, "note": "edited"}),
        ("time", "one microsecond later"),
    ],
)
def test_editing_a_field_names_the_edited_event(field: str, value: Any) -> None:
    if field == "time":
        value = at(7).time + timedelta(microseconds=1)
    events = list(LOG)
    events[6] = replace(at(7), **{field: value})
    assert events[6] != at(7)
    assert_bad(verify(events), 7, "altered")


def test_editing_a_checkpoint_detail_names_the_checkpoint() -> None:
    events = list(LOG)
    events[9] = replace(at(10), details={**at(10).details, "covers_sequence": 8})
    assert_bad(verify(events), 10, "altered")


def test_editing_and_rehashing_one_event_breaks_the_link_of_the_next() -> None:
    events = list(LOG)
    events[6] = rehash(replace(at(7), actor="mallory"))
    assert_bad(verify(events), 8, "does not link to event 7")


def test_rewriting_the_rest_of_the_chain_is_caught_by_the_next_checkpoint() -> None:
    edited = list(LOG)
    edited[6] = replace(at(7), actor="mallory")
    assert_bad(verify(rechain(edited, 6)), 10, "covers a hash that is not the hash of event 9")


def test_rewriting_the_chain_and_the_covered_hash_breaks_the_checkpoint_signature() -> None:
    edited = list(LOG)
    edited[6] = replace(at(7), actor="mallory")
    forged = rechain(edited, 6)[:9]
    forged.append(
        rehash(
            replace(at(10), details={**at(10).details, "covers_hash": forged[8].hash.hex()}), forged[8].hash
        )
    )
    assert_bad(verify(forged + rechain(LOG, 10)[10:]), 10, "signature that does not verify")


def test_rewriting_the_unsigned_tail_cannot_be_detected_without_a_known_head() -> None:
    # Documented limit: events after the last checkpoint are chained but not signed, so a consistent rewrite
    # of only those verifies; the head it reaches differs, which is what a caller holding the real head compares.
    edited = list(LOG)
    edited[16] = replace(at(17), actor="mallory")
    result = verify(rechain(edited, 16))
    assert result.ok and result.unsigned_tail == 3
    assert result.last_event is not None and result.last_event.hash != at(18).hash


def test_deleting_an_event_names_the_missing_sequence() -> None:
    assert_bad(verify(LOG[:6] + LOG[7:]), 7, "expected event 7 but found event 8")


def test_deleting_the_first_events_names_sequence_one() -> None:
    assert_bad(verify(LOG[3:]), 1, "expected event 1 but found event 4")


def test_deleting_a_checkpoint_names_its_sequence() -> None:
    assert_bad(verify(LOG[:9] + LOG[10:]), 10, "expected event 10 but found event 11")


def test_deleting_and_renumbering_breaks_the_link_at_the_gap() -> None:
    shifted = [replace(event, sequence=event.sequence - 1) for event in LOG[7:]]
    assert_bad(verify(LOG[:6] + shifted), 7, "does not link to event 6")


def test_truncating_the_end_of_the_log_verifies_to_a_shorter_head() -> None:
    # Documented limit, as for the unsigned tail: the result's head is what exposes it.
    result = verify(LOG[:12])
    assert result.ok and result.last_event == at(12) and result.unsigned_tail == 2


def test_inserting_a_correctly_hashed_event_breaks_the_sequence_after_it() -> None:
    forged = chain_event(replace(ordinary_draft(99), actor="mallory"), 7, at(6).hash)
    assert_bad(verify([*LOG[:6], forged, *LOG[6:]]), 8, "expected event 8 but found event 7")


def test_inserting_an_event_with_a_fresh_sequence_number_breaks_the_link_after_it() -> None:
    forged = chain_event(ordinary_draft(99), 7, at(6).hash)
    renumbered = [rehash(replace(event, sequence=event.sequence + 1)) for event in LOG[6:]]
    assert_bad(verify([*LOG[:6], forged, *renumbered]), 8, "does not link to event 7")


def test_inserting_and_rechaining_everything_is_caught_by_the_next_checkpoint() -> None:
    forged = chain_event(ordinary_draft(99), 7, at(6).hash)
    renumbered = [replace(event, sequence=event.sequence + 1) for event in LOG[6:]]
    # The old checkpoint 10 is now sequence 11 and still claims to cover sequence 9.
    assert_bad(verify(rechain([*LOG[:6], forged, *renumbered], 6)), 11, "covers sequence 9", "(10)")


def test_inserting_a_duplicate_of_an_event_names_the_repeat() -> None:
    assert_bad(verify([*LOG[:7], at(7), *LOG[7:]]), 8, "expected event 8 but found event 7")


def test_reordering_two_events_names_the_first_position() -> None:
    assert_bad(verify([*LOG[:6], at(8), at(7), *LOG[8:]]), 7, "expected event 7 but found event 8")


def test_reordering_contents_but_keeping_sequence_numbers_is_an_altered_event() -> None:
    swapped = [replace(at(8), sequence=7), replace(at(7), sequence=8)]
    assert_bad(verify(LOG[:6] + swapped + LOG[8:]), 7, "does not link to event 6")


def test_a_first_event_not_starting_from_genesis_is_refused() -> None:
    assert_bad(verify([rehash(at(1), bytes([1]) * 32)]), 1, "does not link to the genesis hash")


def test_a_checkpoint_covering_a_sequence_that_does_not_exist_is_refused() -> None:
    # A correctly signed and chained checkpoint whose statement is about event 5000 of some other log.
    claimed = bytes([7]) * 32
    signature = AUDIT_KEY.sign(checkpoint_statement(5000, claimed))
    draft = checkpoint_draft(replace(at(12), sequence=5000, hash=claimed), PUBLIC_KEY, signature, at(12).time)
    bad = chain_event(draft, 13, at(12).hash)
    assert_bad(verify([*LOG[:12], bad]), 13, "covers sequence 5000", "(12)")


def test_a_checkpoint_covering_an_older_event_is_refused() -> None:
    draft = sign_checkpoint(AUDIT_KEY, at(9))
    bad = chain_event(draft, 13, at(12).hash)
    assert_bad(verify([*LOG[:12], bad]), 13, "covers sequence 9")


def test_a_checkpoint_as_the_very_first_event_covers_nothing() -> None:
    head = AuditEvent(1, at(1).time, "custody", "x", None, {}, GENESIS_HASH, GENESIS_HASH)
    draft = sign_checkpoint(AUDIT_KEY, replace(head, sequence=0))
    assert_bad(verify([chain_event(draft, 1, GENESIS_HASH)]), 1, "no event before it")


def test_a_checkpoint_forged_with_another_key_is_refused_given_the_audit_public_key() -> None:
    forged = chain_event(sign_checkpoint(OTHER_KEY, at(9)), 10, at(9).hash)
    events = [*LOG[:9], forged, *LOG[10:]]
    assert_bad(verify(events), 10, "another key than the audit public key")


def test_without_a_public_key_every_checkpoint_must_use_the_first_checkpoints_key() -> None:
    forged = chain_event(sign_checkpoint(OTHER_KEY, at(9)), 10, at(9).hash)
    events = [*LOG[:9], forged, *LOG[10:]]
    assert_bad(verify(events, None), 10, "another key than the earlier checkpoints")


def test_a_log_signed_entirely_by_another_key_verifies_only_without_the_public_key() -> None:
    forged_log = build_log(18, OTHER_KEY)
    assert verify(forged_log, None).ok
    assert_bad(verify(forged_log), 5, "another key than the audit public key")


def test_the_wrong_public_key_offline_fails_at_the_first_checkpoint() -> None:
    assert_bad(verify(LOG, raw_public_key(OTHER_KEY)), 5, "another key than the audit public key")


def test_a_checkpoint_claiming_the_audit_key_but_signed_by_another_fails_its_signature() -> None:
    statement = checkpoint_statement(9, at(9).hash)
    details = {**at(10).details, "signature": OTHER_KEY.sign(statement).hex()}
    forged = rehash(replace(at(10), details=details))
    assert_bad(verify([*LOG[:9], forged, *LOG[10:]]), 10, "signature that does not verify")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"extra": 1}, ("exactly the fields",)),
        ({"covers_sequence": True}, ("not an integer",)),
        ({"covers_sequence": "9"}, ("not an integer",)),
        ({"covers_hash": "AB" * 32}, ("lowercase hex",)),
        ({"public_key": "ab" * 31}, ("lowercase hex",)),
        ({"signature": 5}, ("lowercase hex",)),
    ],
)
def test_malformed_checkpoint_details_are_refused(change: dict[str, object], words: tuple[str, ...]) -> None:
    forged = rehash(replace(at(10), details={**at(10).details, **change}))
    assert_bad(verify([*LOG[:9], forged, *LOG[10:]]), 10, *words)


def test_a_checkpoint_missing_a_field_is_refused() -> None:
    details = {name: value for name, value in at(10).details.items() if name != "signature"}
    forged = rehash(replace(at(10), details=details))
    assert_bad(verify([*LOG[:9], forged, *LOG[10:]]), 10, "exactly the fields")


@pytest.mark.parametrize("change", [{"actor": "alice-0"}, {"request_id": "req_" + "0" * 32}])
def test_a_checkpoint_must_be_written_by_custody_for_no_request(change: dict[str, Any]) -> None:
    forged = rehash(replace(at(10), **change))
    assert_bad(verify([*LOG[:9], forged, *LOG[10:]]), 10, "not written by custody")


def test_an_event_that_cannot_be_encoded_is_a_bad_event_not_a_crash() -> None:
    broken = replace(at(3), details={"value": object()})
    assert_bad(verify([*LOG[:2], broken, *LOG[3:]]), 3, "cannot be hashed")
    naive = replace(at(3), time=datetime(2025, 1, 1))
    assert_bad(verify([*LOG[:2], naive, *LOG[3:]]), 3, "cannot be hashed")


def test_verifying_from_a_trusted_event_continues_its_chain() -> None:
    result = verify_events(iter(LOG[10:]), public_key=PUBLIC_KEY, start_after=at(10))
    assert result.ok and result.events_checked == 8 and result.checkpoints_checked == 1
    assert result.last_event == at(18) and result.unsigned_tail == 3


def test_verifying_from_a_trusted_event_refuses_a_chain_that_does_not_continue_it() -> None:
    result = verify_events(iter(LOG[11:]), public_key=PUBLIC_KEY, start_after=at(10))
    assert not result.ok and result.first_bad_sequence == 11 and result.events_checked == 0
    other = replace(at(10), hash=bytes(32))
    result = verify_events(iter(LOG[10:]), public_key=PUBLIC_KEY, start_after=other)
    assert not result.ok and result.first_bad_sequence == 11 and "does not link to event 10" in result.problem


def test_a_checkpoint_right_after_the_trusted_event_covers_it() -> None:
    result = verify_events(iter(LOG[9:]), public_key=PUBLIC_KEY, start_after=at(9))
    assert result.ok and result.checkpoints_checked == 2


def test_a_public_key_of_the_wrong_length_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="32 bytes"):
        verify(LOG, PUBLIC_KEY[:31])


def test_checkpoint_draft_is_the_documented_event() -> None:
    head = at(12)
    signature = AUDIT_KEY.sign(checkpoint_statement(12, head.hash))
    draft = checkpoint_draft(head, PUBLIC_KEY, signature, head.time)
    assert draft == AuditDraft(
        time=head.time,
        actor="custody",
        kind="audit.checkpoint",
        request_id=None,
        details={
            "covers_sequence": 12,
            "covers_hash": head.hash.hex(),
            "public_key": PUBLIC_KEY.hex(),
            "signature": signature.hex(),
        },
    )
    assert verify([*LOG[:12], chain_event(draft, 13, head.hash)]).ok


def test_checkpoint_draft_refuses_a_signature_that_does_not_verify() -> None:
    # What an HSM signing with the wrong key (or a corrupted signature) would produce.
    signature = OTHER_KEY.sign(checkpoint_statement(12, at(12).hash))
    with pytest.raises(InvalidSignature):
        OTHER_KEY.public_key().verify(signature, checkpoint_statement(11, at(12).hash))
    with pytest.raises(ValueError, match="after event 12 has a signature that does not verify"):
        checkpoint_draft(at(12), PUBLIC_KEY, signature, at(12).time)
    with pytest.raises(ValueError, match="not 32 bytes"):
        checkpoint_draft(at(12), PUBLIC_KEY[:16], signature, at(12).time)


def test_verification_streams_a_long_log_in_constant_memory() -> None:
    count = 10_000
    tracemalloc.start()
    try:
        result = verify_events(iter_log(count, AUDIT_KEY, 100), public_key=PUBLIC_KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok and result.events_checked == count and result.checkpoints_checked == 99
    # Holding 10,000 of these events takes about 9 MB; a streaming verifier holds two at a time.
    assert peak < 1_000_000, peak

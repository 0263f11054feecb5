"""The sealed encodings: one record gives the same bytes every time, and every field that lets a request be
signed changes them, so a seal over one value never verifies another."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from custody.domain import seals
from custody.domain.keys import Key, KeyState
from custody.domain.requests import (
    Decision,
    DecisionAction,
    PayloadKind,
    QuorumTerm,
    RequestState,
    SigningRequest,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _request() -> SigningRequest:
    return SigningRequest(
        request_id="req_1",
        key_label="treasury",
        key_id="ab" * 16,
        requester="backend",
        kind=PayloadKind.TRANSACTION,
        chain_id=1,
        payload=b"{}",
        payload_hash=b"\x01" * 32,
        digest=b"\x02" * 32,
        decision=Decision(
            DecisionAction.APPROVE, "treasury-transactions", "needs 2", 3, (QuorumTerm("treasury", 2),), 60
        ),
        state=RequestState.PENDING_APPROVAL,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(days=1),
    )


def test_each_decision_field_changes_the_sealed_bytes() -> None:
    request = _request()
    sealed = seals.sealed_decision(request)
    edits = [
        replace(request, key_id="cd" * 16),
        replace(request, key_label="ops"),
        replace(request, payload_hash=b"\x03" * 32),
        replace(request, digest=b"\x03" * 32),
        replace(request, kind=PayloadKind.MESSAGE),
        replace(request, decision=replace(request.decision, action=DecisionAction.SIGN)),
        replace(request, decision=replace(request.decision, rule="ops-transactions")),
        replace(request, decision=replace(request.decision, quorum=())),
        replace(request, decision=replace(request.decision, policy_version=4)),
        replace(request, decision=replace(request.decision, timelock_seconds=0)),
        replace(request, expires_at=NOW + timedelta(days=2)),
        replace(request, request_id="req_2"),
    ]
    assert all(seals.sealed_decision(edited) != sealed for edited in edits)
    # What changes legitimately after submission is not sealed here.
    assert seals.sealed_decision(replace(request, state=RequestState.APPROVED, updated_at=NOW)) == sealed


def test_the_time_lock_and_the_request_are_bound_by_the_approval_seal() -> None:
    sealed = seals.sealed_approval("req_1", NOW)
    assert seals.sealed_approval("req_1", NOW - timedelta(microseconds=1)) != sealed
    assert seals.sealed_approval("req_1", None) != sealed
    assert seals.sealed_approval("req_2", NOW) != sealed
    # The same instant in another time zone is the same time-lock.
    assert seals.sealed_approval("req_1", NOW.astimezone(timezone(timedelta(hours=2)))) == sealed


def test_a_key_state_and_a_policy_text_are_bound() -> None:
    key = Key("treasury", "ab" * 16, "0x" + "00" * 20, b"\x04" + b"\x01" * 64, KeyState.FROZEN, NOW)
    assert seals.sealed_key(replace(key, state=KeyState.ACTIVE)) != seals.sealed_key(key)
    assert seals.sealed_policy(2, "version = 2\n") != seals.sealed_policy(3, "version = 2\n")
    assert seals.sealed_policy(2, "version = 2\n") != seals.sealed_policy(2, "version = 2\n\n")


def test_each_kind_of_record_has_its_own_prefix() -> None:
    encodings = [
        seals.sealed_policy(1, ""),
        seals.sealed_decision(_request()),
        seals.sealed_approval("req_1", None),
    ]
    assert len({encoding.split(b"\n", 1)[0] for encoding in encodings}) == 3

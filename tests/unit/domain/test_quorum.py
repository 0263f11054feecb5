"""Quorum arithmetic (custody/domain/quorum.py), table-driven.

A quorum is an AND of "k of group" terms and one approver fills at most one seat, so the expected outcomes below
are worked out by hand from that rule, not copied from the code's output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from custody.domain.errors import AlreadyExists, PermissionDenied, WrongState
from custody.domain.quorum import TallyOutcome, quorum_progress, tally_verdict
from custody.domain.requests import (
    Approval,
    Decision,
    PayloadKind,
    QuorumTerm,
    RequestState,
    SigningRequest,
    Verdict,
)

MEMBERS = {
    "treasury": frozenset({"alice", "bob", "carol"}),
    "security": frozenset({"dave"}),
    "admins": frozenset({"alice", "bob", "carol", "dave"}),
}
# alice sits in both groups: the case where one person must not fill two seats.
OVERLAPPING = {
    "treasury": frozenset({"alice", "bob"}),
    "security": frozenset({"alice", "dave"}),
}

T2 = QuorumTerm("treasury", 2)
S1 = QuorumTerm("security", 1)
T1 = QuorumTerm("treasury", 1)

PROGRESS_CASES = [
    # (quorum, members, approvers, met)
    pytest.param((T2,), MEMBERS, [], False, id="nobody"),
    pytest.param((T2,), MEMBERS, ["alice"], False, id="one-of-two"),
    pytest.param((T2,), MEMBERS, ["alice", "bob"], True, id="two-of-two"),
    pytest.param((T2,), MEMBERS, ["alice", "alice"], False, id="same-person-twice"),
    pytest.param((T2,), MEMBERS, ["alice", "dave"], False, id="non-member-does-not-count"),
    pytest.param((T2,), MEMBERS, ["alice", "bob", "carol"], True, id="more-than-enough"),
    pytest.param((T2, S1), MEMBERS, ["alice", "bob"], False, id="and-missing-security"),
    pytest.param((T2, S1), MEMBERS, ["alice", "dave"], False, id="and-missing-one-treasurer"),
    pytest.param((T2, S1), MEMBERS, ["alice", "bob", "dave"], True, id="and-met"),
    pytest.param((T1, S1), OVERLAPPING, ["alice"], False, id="one-person-cannot-fill-two-terms"),
    pytest.param((T1, S1), OVERLAPPING, ["alice", "bob"], True, id="overlap-resolved-alice-to-security"),
    pytest.param((T1, S1), OVERLAPPING, ["alice", "dave"], True, id="overlap-resolved-alice-to-treasury"),
    pytest.param((T1, S1), OVERLAPPING, ["bob", "alice"], True, id="order-does-not-matter"),
    pytest.param(
        (QuorumTerm("treasury", 2), S1), OVERLAPPING, ["alice", "bob"], False, id="three-seats-two-people"
    ),
    pytest.param(
        (QuorumTerm("treasury", 2), S1), OVERLAPPING, ["alice", "bob", "dave"], True, id="three-of-three"
    ),
    pytest.param((), MEMBERS, ["alice", "bob", "carol", "dave"], False, id="empty-quorum-never-met"),
    pytest.param((QuorumTerm("auditors", 1),), MEMBERS, ["alice"], False, id="unknown-group-never-met"),
    pytest.param(
        (QuorumTerm("treasury", 4),), MEMBERS, ["alice", "bob", "carol"], False, id="threshold-above-size"
    ),
    pytest.param(
        (QuorumTerm("admins", 4),), MEMBERS, ["dave", "carol", "bob", "alice"], True, id="whole-group"
    ),
]


@pytest.mark.parametrize(("quorum", "members", "approvers", "met"), PROGRESS_CASES)
def test_quorum_progress(
    quorum: tuple[QuorumTerm, ...], members: dict[str, frozenset[str]], approvers: list[str], met: bool
) -> None:
    progress = quorum_progress(quorum, members, approvers)
    assert progress.met is met
    assert [term.term for term in progress.terms] == list(quorum)
    seated = [approver for term in progress.terms for approver in term.counted]
    # One person fills one seat at most, only in a group they belong to, and never more seats than asked.
    assert len(seated) == len(set(seated))
    for term in progress.terms:
        assert set(term.counted) <= members.get(term.term.group, frozenset()) & set(approvers)
        assert len(term.counted) <= term.term.threshold


def test_progress_reports_who_counts_for_each_term() -> None:
    progress = quorum_progress((T1, S1), OVERLAPPING, ["bob", "alice"])
    assert [(term.term.group, term.counted, term.met) for term in progress.terms] == [
        ("treasury", ("bob",), True),
        ("security", ("alice",), True),
    ]
    assert progress.describe() == "1 of 1 from treasury; 1 of 1 from security"


def test_progress_describes_what_is_missing() -> None:
    progress = quorum_progress((T2, S1), MEMBERS, ["carol"])
    assert progress.describe() == "1 of 2 from treasury; 0 of 1 from security"
    assert [term.met for term in progress.terms] == [False, False]


def everyone_but(excluded: str, members: dict[str, frozenset[str]]) -> set[str]:
    return {person for group in members.values() for person in group} - {excluded}


@pytest.mark.parametrize(
    ("quorum", "members", "requester", "reachable"),
    [
        pytest.param((T2,), MEMBERS, "carol", True, id="two-treasurers-left"),
        pytest.param((T2,), {"treasury": frozenset({"alice", "bob"})}, "alice", False, id="only-one-left"),
        pytest.param((T2, S1), MEMBERS, "dave", False, id="requester-is-the-only-security-member"),
        pytest.param((T2, S1), MEMBERS, "backend", True, id="requester-is-no-approver"),
        pytest.param((T1, S1), OVERLAPPING, "dave", True, id="alice-takes-security-bob-treasury"),
        pytest.param((QuorumTerm("treasury", 2), S1), OVERLAPPING, "dave", False, id="three-seats-two-left"),
    ],
)
def test_quorum_with_the_requester_excluded_can_still_be_met_or_not(
    quorum: tuple[QuorumTerm, ...], members: dict[str, frozenset[str]], requester: str, reachable: bool
) -> None:
    assert quorum_progress(quorum, members, everyone_but(requester, members)).met is reachable


# ----------------------------------------------------------------------------------------------------
# tally_verdict: what one more verdict does to a pending request.

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def pending_request(quorum: tuple[QuorumTerm, ...], requester: str = "carol") -> SigningRequest:
    payload = b"governance payload"
    return SigningRequest(
        request_id="req_0123456789ab0123456789abcdef0123",
        key_label="treasury",
        key_id="01",
        requester=requester,
        kind=PayloadKind.MESSAGE,
        chain_id=None,
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        digest=bytes(32),
        decision=Decision("approve", "treasury", "needs approval", 1, quorum=quorum),
        state=RequestState.PENDING_APPROVAL,
        created_at=NOW,
        updated_at=NOW,
    )


def verdict(approver: str, decision: Verdict = Verdict.APPROVE) -> Approval:
    # tally_verdict trusts its caller to have verified the statement, so none is needed here.
    return Approval("req_0123456789ab0123456789abcdef0123", approver, decision, b"", b"", "", NOW)


def approvals(names: Iterable[str]) -> list[Approval]:
    return [verdict(name) for name in names]


TALLY_CASES = [
    # (quorum, earlier approvers, new verdict, outcome)
    pytest.param((T2,), [], verdict("alice"), TallyOutcome.COUNTED, id="first-of-two"),
    pytest.param((T2,), ["alice"], verdict("bob"), TallyOutcome.QUORUM_MET, id="second-of-two"),
    pytest.param(
        (T2, S1), ["alice", "bob"], verdict("dave"), TallyOutcome.QUORUM_MET, id="security-completes"
    ),
    pytest.param(
        (T2, S1), ["alice", "dave"], verdict("bob"), TallyOutcome.QUORUM_MET, id="treasurer-completes"
    ),
    pytest.param((T2, S1), ["alice"], verdict("bob"), TallyOutcome.COUNTED, id="security-still-missing"),
    pytest.param((T2,), ["alice"], verdict("bob", Verdict.REJECT), TallyOutcome.REJECTED, id="reject"),
    pytest.param(
        (T2, S1), ["alice", "bob"], verdict("dave", Verdict.REJECT), TallyOutcome.REJECTED, id="last-rejects"
    ),
]


@pytest.mark.parametrize(("quorum", "earlier", "new", "outcome"), TALLY_CASES)
def test_tally_verdict(
    quorum: tuple[QuorumTerm, ...], earlier: list[str], new: Approval, outcome: TallyOutcome
) -> None:
    assert tally_verdict(pending_request(quorum), approvals(earlier), new, MEMBERS) is outcome


REFUSED_TALLY_CASES = [
    pytest.param(
        (T2,),
        "carol",
        [],
        verdict("carol"),
        PermissionDenied,
        "carol submitted request .* and cannot approve it",
        id="requester",
    ),
    pytest.param(
        (T2,),
        "carol",
        [],
        verdict("carol", Verdict.REJECT),
        PermissionDenied,
        "carol submitted request .* and cannot reject it",
        id="requester-rejects",
    ),
    pytest.param((T2,), "carol", ["alice"], verdict("alice"), AlreadyExists, "already", id="duplicate"),
    pytest.param(
        (T2,),
        "carol",
        ["alice"],
        verdict("alice", Verdict.REJECT),
        AlreadyExists,
        "already",
        id="approve-then-reject",
    ),
    pytest.param((T2,), "carol", [], verdict("dave"), PermissionDenied, "not in a group", id="non-member"),
    pytest.param(
        (T2,),
        "carol",
        [],
        verdict("dave", Verdict.REJECT),
        PermissionDenied,
        "not in a group",
        id="non-member-rejects",
    ),
    pytest.param((), "carol", [], verdict("alice"), PermissionDenied, "not in a group", id="empty-quorum"),
]


@pytest.mark.parametrize(("quorum", "requester", "earlier", "new", "error", "words"), REFUSED_TALLY_CASES)
def test_tally_verdict_refusals(
    quorum: tuple[QuorumTerm, ...],
    requester: str,
    earlier: list[str],
    new: Approval,
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words):
        tally_verdict(pending_request(quorum, requester), approvals(earlier), new, MEMBERS)


@pytest.mark.parametrize(
    "state", [state for state in RequestState if state is not RequestState.PENDING_APPROVAL]
)
def test_tally_verdict_needs_a_pending_request(state: RequestState) -> None:
    request = pending_request((T2,))
    finished = replace(request, state=state)
    with pytest.raises(WrongState, match=state.value):
        tally_verdict(finished, approvals(["alice"]), verdict("bob"), MEMBERS)

"""Property: no sequence of verdicts below the quorum ever approves a request (custody.domain.quorum).

Hypothesis draws group memberships, a quorum (an AND of "k of group" terms) and a sequence of verdicts with
duplicates, the requester's own verdicts, outsiders and rejections. Each verdict goes through tally_verdict;
only the ones it counted are kept, and the run stops when the request is approved or rejected. Every outcome is
compared with a brute-force reference written here from the rules: distinct approvers, never the requester,
each filling one seat of a term whose group they belong to.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import event, given, settings
from hypothesis import strategies as st

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
from tests.fuzzing import cases

PEOPLE = ("p0", "p1", "p2", "p3", "p4", "p5")
GROUPS = ("g0", "g1", "g2")
OUTSIDER = "backend"  # a name no group lists, as a requester or as a stray verdict
REQUEST_ID = "req_0123456789ab0123456789abcdef0123"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def reference_met(
    quorum: tuple[QuorumTerm, ...], members: dict[str, frozenset[str]], approvers: set[str]
) -> bool:
    """Try every way of giving each approver one seat (or none) and see whether some way fills every term."""
    if not quorum:
        return False
    people = sorted(approvers)
    choices = [
        [None]
        + [index for index, term in enumerate(quorum) if person in members.get(term.group, frozenset())]
        for person in people
    ]
    for assignment in itertools.product(*choices):
        filled = [0] * len(quorum)
        for index in assignment:
            if index is not None:
                filled[index] += 1
        if all(filled[index] >= term.threshold for index, term in enumerate(quorum)):
            return True
    return False


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[dict[str, frozenset[str]], tuple[QuorumTerm, ...], str, list[tuple[str, Verdict]]]:
    membership = {person: draw(st.sets(st.sampled_from(GROUPS))) for person in PEOPLE}
    members = {
        group: frozenset(person for person, groups in membership.items() if group in groups)
        for group in GROUPS
    }
    quorum_groups = draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=3, unique=True))
    quorum = tuple(QuorumTerm(group, draw(st.integers(min_value=1, max_value=3))) for group in quorum_groups)
    requester = draw(st.sampled_from((*PEOPLE, OUTSIDER)))
    # Rejections are rarer than approvals so that many runs get far enough to reach the quorum.
    decisions = st.sampled_from((Verdict.APPROVE,) * 8 + (Verdict.REJECT,))
    verdicts = draw(st.lists(st.tuples(st.sampled_from((*PEOPLE, OUTSIDER)), decisions), max_size=20))
    # Often end with everyone approving in some order, so that runs reach the quorum whenever it is reachable.
    if draw(st.booleans()):
        verdicts += [(person, Verdict.APPROVE) for person in draw(st.permutations(PEOPLE))]
    return members, quorum, requester, verdicts


def pending_request(quorum: tuple[QuorumTerm, ...], requester: str) -> SigningRequest:
    payload = b"payload"
    return SigningRequest(
        request_id=REQUEST_ID,
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


def approval(approver: str, decision: Verdict) -> Approval:
    # tally_verdict is handed statements its caller already verified, so their bytes play no part here.
    return Approval(REQUEST_ID, approver, decision, b"", b"", "", NOW)


@settings(max_examples=cases(1500), deadline=None)
@given(scenarios())
def test_only_a_real_quorum_of_distinct_others_approves(
    scenario: tuple[dict[str, frozenset[str]], tuple[QuorumTerm, ...], str, list[tuple[str, Verdict]]],
) -> None:
    members, quorum, requester, verdicts = scenario
    request = pending_request(quorum, requester)
    quorum_members = frozenset().union(*(members.get(term.group, frozenset()) for term in quorum))
    counted: list[Approval] = []
    final: TallyOutcome | None = None
    for approver, decision in verdicts:
        new = approval(approver, decision)
        earlier_names = {a.approver for a in counted}
        try:
            outcome = tally_verdict(request, counted, new, members)
        except PermissionDenied:
            assert approver == requester or approver not in quorum_members
            continue
        except AlreadyExists:
            assert approver in earlier_names
            continue
        # A verdict that counts comes from a quorum member other than the requester, seen for the first time.
        assert approver != requester
        assert approver in quorum_members
        assert approver not in earlier_names
        counted.append(new)
        if decision is Verdict.REJECT:
            assert outcome is TallyOutcome.REJECTED
            final = outcome
            break
        approvers = {a.approver for a in counted}
        expected_met = reference_met(quorum, members, approvers)
        assert (outcome is TallyOutcome.QUORUM_MET) is expected_met, (approvers, quorum, members)
        # Never earlier: the approvals before this one did not meet the quorum, or the run would have stopped.
        assert not reference_met(quorum, members, approvers - {approver})
        if outcome is TallyOutcome.QUORUM_MET:
            assert len(approvers) >= sum(term.threshold for term in quorum)
            assert requester not in approvers
            assert quorum_progress(quorum, members, approvers).met
            final = outcome
            break

    event(f"ended {final.value if final else 'pending'}")
    if final is None:
        # The sequence ran out without an end: what was counted really is below the quorum.
        assert not reference_met(
            quorum, members, {a.approver for a in counted if a.verdict is Verdict.APPROVE}
        )
    else:
        # Once approved or rejected the request takes no more verdicts, whoever gives them.
        state = RequestState.APPROVED if final is TallyOutcome.QUORUM_MET else RequestState.REJECTED
        for person in PEOPLE:
            try:
                tally_verdict(
                    replace(request, state=state), counted, approval(person, Verdict.APPROVE), members
                )
            except WrongState:
                continue
            raise AssertionError(f"a {state.value} request took a verdict from {person}")


@settings(max_examples=cases(300), deadline=None)
@given(scenarios())
def test_the_reference_agrees_with_quorum_progress(
    scenario: tuple[dict[str, frozenset[str]], tuple[QuorumTerm, ...], str, list[tuple[str, Verdict]]],
) -> None:
    # quorum_progress on any set of people, counted or not, meets the quorum exactly when the reference does.
    members, quorum, _, verdicts = scenario
    people = {approver for approver, _ in verdicts}
    assert quorum_progress(quorum, members, people).met is reference_met(quorum, members, people)


def test_the_reference_refuses_one_person_in_two_seats() -> None:
    # The reference itself must be right for the property to mean anything.
    members = {"g0": frozenset({"p0", "p1"}), "g1": frozenset({"p0"})}
    quorum = (QuorumTerm("g0", 1), QuorumTerm("g1", 1))
    assert not reference_met(quorum, members, {"p0"})
    assert reference_met(quorum, members, {"p0", "p1"})
    assert not reference_met((QuorumTerm("g0", 2), QuorumTerm("g1", 1)), members, {"p0", "p1"})
    assert not reference_met((), members, {"p0", "p1"})

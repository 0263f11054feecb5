"""Quorum arithmetic: have the right people approved?

A quorum is an AND of terms "k of group". One approval counts toward one term only: an approver who sits in
two groups cannot satisfy "2 of treasury AND 1 of security" alone with another treasurer, because that would
let two people do what the policy asks three for. Whether the approvals met the quorum is therefore a matching
problem (assign distinct approvers to term seats), solved exactly here with augmenting paths; the sizes are
tiny (a few terms, a few dozen approvers).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from custody.domain.errors import AlreadyExists, PermissionDenied, WrongState
from custody.domain.requests import Approval, QuorumTerm, RequestState, SigningRequest, Verdict


@dataclass(frozen=True)
class TermProgress:
    term: QuorumTerm
    counted: tuple[str, ...]  # approvers assigned to this term's seats, sorted

    @property
    def met(self) -> bool:
        # A term asking for nobody is malformed, never satisfied: the policy refuses it, and a stored decision
        # that somehow carries one must not approve on the first verdict.
        return self.term.threshold >= 1 and len(self.counted) >= self.term.threshold

    def describe(self) -> str:
        return f"{len(self.counted)} of {self.term.threshold} from {self.term.group}"


@dataclass(frozen=True)
class QuorumProgress:
    terms: tuple[TermProgress, ...]

    @property
    def met(self) -> bool:
        return bool(self.terms) and all(term.met for term in self.terms)

    def describe(self) -> str:
        return "; ".join(term.describe() for term in self.terms)


def quorum_progress(
    quorum: Iterable[QuorumTerm],
    group_members: Mapping[str, frozenset[str]],
    approvers: Iterable[str],
) -> QuorumProgress:
    """Assign each approver to at most one seat of a term whose group they belong to, filling as many seats as
    possible, and report per term who counts.

    An empty quorum is never met: a rule without approvers must not sign by accident.
    """
    terms = tuple(quorum)
    seats = [(index, term) for index, term in enumerate(terms) for _ in range(term.threshold)]
    seat_holder: dict[int, str] = {}

    def eligible_seats(approver: str) -> list[int]:
        return [
            seat
            for seat, (_, term) in enumerate(seats)
            if approver in group_members.get(term.group, frozenset())
        ]

    def place(approver: str, visited: set[int]) -> bool:
        # Classic augmenting path: take a free seat, or move its holder to another seat they can take.
        for seat in eligible_seats(approver):
            if seat in visited:
                continue
            visited.add(seat)
            holder = seat_holder.get(seat)
            if holder is None or place(holder, visited):
                seat_holder[seat] = approver
                return True
        return False

    for approver in sorted(set(approvers)):
        place(approver, set())

    counted: dict[int, list[str]] = {index: [] for index in range(len(terms))}
    for seat, approver in seat_holder.items():
        counted[seats[seat][0]].append(approver)
    return QuorumProgress(
        terms=tuple(
            TermProgress(term=term, counted=tuple(sorted(counted[index]))) for index, term in enumerate(terms)
        )
    )


class TallyOutcome(enum.Enum):
    COUNTED = "counted"  # recorded; the quorum is not met yet
    QUORUM_MET = "quorum_met"  # this approval completed the quorum: the request is now approved
    REJECTED = "rejected"  # a member of a group in the quorum rejected: the request ends REJECTED


def tally_verdict(
    request: SigningRequest,
    earlier: Sequence[Approval],
    verdict: Approval,
    group_members: Mapping[str, frozenset[str]],
) -> TallyOutcome:
    """Decide what one more verdict does to a pending request, or raise why it cannot count.

    The rules: only a PENDING_APPROVAL request takes verdicts; an approver gives one verdict per request
    (AlreadyExists); the requester's own verdict never counts (PermissionDenied); only members of a group named
    in the quorum may give one (PermissionDenied); one rejection from such a member rejects the request.
    The caller has already checked the statement's signature and fields.
    """
    if request.state is not RequestState.PENDING_APPROVAL:
        raise WrongState(f"request {request.request_id} is {request.state.value}, not waiting for approvals")
    if verdict.approver == request.requester:
        raise PermissionDenied(
            f"{verdict.approver} submitted request {request.request_id} and cannot"
            f" {verdict.verdict.value} it; the requester's own verdict never counts"
        )
    if any(previous.approver == verdict.approver for previous in earlier):
        raise AlreadyExists(f"{verdict.approver} already gave a verdict on request {request.request_id}")
    quorum_groups = {term.group for term in request.decision.quorum}
    if not any(verdict.approver in group_members.get(group, frozenset()) for group in quorum_groups):
        raise PermissionDenied(
            f"{verdict.approver} is not in a group this request needs ({', '.join(sorted(quorum_groups))})"
        )
    if verdict.verdict is Verdict.REJECT:
        return TallyOutcome.REJECTED
    approvers = [a.approver for a in earlier if a.verdict is Verdict.APPROVE] + [verdict.approver]
    if quorum_progress(request.decision.quorum, group_members, approvers).met:
        return TallyOutcome.QUORUM_MET
    return TallyOutcome.COUNTED

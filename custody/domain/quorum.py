"""Quorum arithmetic: have the right people approved?

A quorum is an AND of terms "k of group". One approval counts toward one term only: an approver who sits in
two groups cannot satisfy "2 of treasury AND 1 of security" alone with another treasurer, because that would
let two people do what the policy asks three for. Whether the approvals met the quorum is therefore a matching
problem (assign distinct approvers to term seats), solved exactly here with augmenting paths; the sizes are
tiny (a few terms, a few dozen approvers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from custody.domain.requests import QuorumTerm


@dataclass(frozen=True)
class TermProgress:
    term: QuorumTerm
    counted: tuple[str, ...]  # approvers assigned to this term's seats, sorted

    @property
    def met(self) -> bool:
        return len(self.counted) >= self.term.threshold

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


def can_still_be_met(
    quorum: Iterable[QuorumTerm],
    group_members: Mapping[str, frozenset[str]],
    excluded: Iterable[str],
) -> bool:
    """Whether the quorum is reachable without the ``excluded`` people (the requester, those who rejected)."""
    excluded_set = set(excluded)
    everyone = {member for members in group_members.values() for member in members} - excluded_set
    return quorum_progress(quorum, group_members, everyone).met

"""Reading quorums ("k of group" terms, all of which must be met) and refusing ones nobody could meet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from custody.domain.policy.fields import FailFactory, is_int, quoted_list, type_name
from custody.domain.quorum import quorum_progress
from custody.domain.requests import QuorumTerm

_QUORUM_TERM_KEYS = frozenset({"group", "threshold"})


def parse_quorum(
    value: Any, group_members: Mapping[str, frozenset[str]], fail: FailFactory
) -> tuple[QuorumTerm, ...]:
    """``quorum = [{ group = "treasury", threshold = 2 }, ...]``: every term over a group approvers list."""
    if not isinstance(value, list):
        raise fail("quorum", f"must be a list of {{ group, threshold }} tables, got {type_name(value)}")
    # An empty quorum would be met by nobody or, read carelessly, by anybody; either way it is a mistake.
    if not value:
        raise fail("quorum", "must name at least one { group, threshold } term, got an empty list")
    if not group_members:
        raise fail("quorum", "the policy names no approvers; add [approvers.ID] tables with their groups")
    terms: list[QuorumTerm] = []
    for index, raw_term in enumerate(value):
        field = f"quorum[{index}]"
        if not isinstance(raw_term, Mapping):
            raise fail(field, f"must be a {{ group, threshold }} table, got {type_name(raw_term)}")
        unknown = sorted(set(raw_term) - _QUORUM_TERM_KEYS)
        missing = sorted(_QUORUM_TERM_KEYS - set(raw_term))
        if unknown or missing:
            raise fail(field, "must have exactly the keys 'group' and 'threshold'")
        group, threshold = raw_term["group"], raw_term["threshold"]
        if not isinstance(group, str):
            raise fail(field, f"group must be a group name, got {group!r}")
        if group not in group_members:
            raise fail(field, unknown_group_problem(group, group_members))
        if any(term.group == group for term in terms):
            raise fail(field, f"names group {group!r} twice; write one term with the combined threshold")
        size = len(group_members[group])
        if not is_int(threshold) or threshold < 1:
            raise fail(field, f"threshold must be a positive integer, got {threshold!r}")
        if threshold > size:
            raise fail(
                field,
                f"threshold {threshold} is larger than group {group!r}, which has {size} member"
                f"{'' if size == 1 else 's'}",
            )
        terms.append(QuorumTerm(group=group, threshold=int(threshold)))
    _check_quorum_can_be_met(terms, group_members, fail)
    return tuple(terms)


def unknown_group_problem(group: Any, group_members: Mapping[str, frozenset[str]]) -> str:
    known = quoted_list(sorted(group_members)) or "none"
    return f"unknown group {group!r}: no approver lists it (groups are {known})"


def _check_quorum_can_be_met(
    terms: Sequence[QuorumTerm], group_members: Mapping[str, frozenset[str]], fail: FailFactory
) -> None:
    """Refuse a quorum that no set of approvers could ever meet.

    Each term fits its own group, but one approver fills one seat only, so terms over overlapping groups can
    ask for more distinct people than there are: "2 of {alice, bob} AND 1 of {alice}" has three seats and two
    people to fill them. Every request under such a quorum would wait for approvals that cannot come. The
    check seats every member of the groups at once, with the same matching that counts real approvals.
    """
    everyone = {member for term in terms for member in group_members[term.group]}
    progress = quorum_progress(terms, group_members, everyone)
    if progress.met:
        return
    seats = sum(term.threshold for term in terms)
    filled = sum(len(term.counted) for term in progress.terms)
    described = " AND ".join(term.describe() for term in terms)
    raise fail(
        "quorum",
        f"{described} can never be met: one approver fills one seat only, and the members of these groups"
        f" can fill at most {filled} of its {seats} seats",
    )

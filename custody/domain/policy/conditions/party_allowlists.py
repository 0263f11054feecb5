"""What the ``recipients``, ``spenders`` and ``operators`` conditions share: an allowlist of the addresses that
may take one role in a request's intents.

This module is no condition and is not in the registry; the three condition modules use it.
"""

from __future__ import annotations

from custody.domain.intents import IntentKind, PartyRole
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    NOT_DECODED,
    denies,
    kinds_listed,
    listed,
    parse_address_set,
    placed_intents,
    same_address,
    some_listed,
)
from custody.domain.policy.conditions.intents import named_intent_kinds, require_intent_kinds
from custody.domain.policy.facts import RequestFacts
from custody.domain.policy.trace import ConditionTrace


def parse_party_allowlist(
    rule: RuleTable, field: str, role: PartyRole, required_for: frozenset[IntentKind]
) -> frozenset[str] | None:
    """The allowlist in ``field``, or None when the rule leaves it out.

    A rule whose ``intents`` names a kind in ``required_for`` must have the list: allowing approvals without
    saying to whom would let anyone be the spender.
    """
    if field not in rule.raw:
        named = named_intent_kinds(rule) or frozenset()
        needing = named & required_for
        if needing and not denies(rule):
            raise rule.fail(
                field,
                f"is required: intents names {kinds_listed(needing)}, which gives a {role.value} power over"
                f" the key's assets, so the rule must list the {role.value}s it allows",
            )
        return None
    addresses = parse_address_set(rule.raw[field], field, rule.fail)
    require_intent_kinds(rule, field, None)
    return addresses


def check_party_allowlist(
    facts: RequestFacts,
    condition: str,
    role: PartyRole,
    allowed: frozenset[str],
    must_name_one: frozenset[IntentKind],
    *,
    denying: bool,
) -> ConditionTrace:
    """Every party of ``role`` in the tree must be in ``allowed``; an intent of a kind in ``must_name_one``
    that names no such party does not match, since what it grants cannot be judged. A deny rule's list
    (``denying``) matches when some party of ``role`` is in it."""
    placed = placed_intents(facts.intents)
    if not placed:
        return ConditionTrace(condition, False, NOT_DECODED)
    if denying:
        return some_listed(condition, placed, lambda intent: intent.parties_in(role), allowed, role.value)
    seen: set[str] = set()
    for item in placed:
        parties = item.intent.parties_in(role)
        if item.intent.kind in must_name_one and not parties:
            return ConditionTrace(
                condition,
                False,
                f"{item.describe()} names no {role.value}; the rule allows {listed(allowed)}",
            )
        for address in parties:
            if not same_address(address, allowed):
                return ConditionTrace(
                    condition,
                    False,
                    f"{role.value} {address} of {item.describe()} is not in {listed(allowed)}",
                )
            seen.add(address)
    if not seen:
        return ConditionTrace(condition, True, f"no intent of the request has a {role.value}")
    return ConditionTrace(condition, True, f"every {role.value} ({listed(seen)}) is allowed")

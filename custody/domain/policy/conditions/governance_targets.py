"""``governance_targets``: an allowlist of the contracts Governor and Timelock actions may call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import Intent, PartyRole
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    GOVERNANCE_ACTION_KINDS,
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
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class GovernanceTargetCondition:
    """``governance_targets = ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"]``: every action of a Governor
    proposal (``propose``, ``queue``, ``execute``, ``cancel``) or of a Timelock operation (``schedule``,
    ``scheduleBatch``, ``execute``, ``executeBatch``) in the request must call one of these contracts.

    Each action is also an intent of its own, judged like any other: the rule's ``intents`` must allow what
    it does (an upgrade hidden in a proposal's batch needs ``upgrade`` named). A rule whose ``intents`` names
    a Governor or Timelock kind with actions must list its targets, and such an intent that names no target
    does not match.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("governance_targets",)

    targets: frozenset[str]  # EIP-55
    # A deny rule's: match when some action target is listed, not only when every one is.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> GovernanceTargetCondition | None:
        if "governance_targets" not in rule.raw:
            needing = (named_intent_kinds(rule) or frozenset()) & GOVERNANCE_ACTION_KINDS
            if needing and not denies(rule):
                raise rule.fail(
                    "governance_targets",
                    f"is required: intents names {kinds_listed(needing)}, so the rule must list the contracts"
                    " their actions may call",
                )
            return None
        targets = parse_address_set(rule.raw["governance_targets"], "governance_targets", rule.fail)
        require_intent_kinds(rule, "governance_targets", GOVERNANCE_ACTION_KINDS)
        return cls(targets, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        placed = placed_intents(facts.intents)
        if not placed:
            return ConditionTrace("governance_targets", False, NOT_DECODED)
        if self.denying:
            return some_listed("governance_targets", placed, _targets_of_action, self.targets, "target")
        seen: set[str] = set()
        for item in placed:
            if item.intent.kind not in GOVERNANCE_ACTION_KINDS:
                continue
            targets = action_targets(item.intent)
            if not targets:
                return ConditionTrace("governance_targets", False, f"{item.describe()} names no target")
            for target in targets:
                if not same_address(target, self.targets):
                    return ConditionTrace(
                        "governance_targets",
                        False,
                        f"target {target} of {item.describe()} is not in {listed(self.targets)}",
                    )
                seen.add(target)
        if not seen:
            return ConditionTrace(
                "governance_targets", True, "the request holds no Governor or Timelock actions"
            )
        return ConditionTrace("governance_targets", True, f"every action target ({listed(seen)}) is allowed")


def action_targets(intent: Intent) -> tuple[str, ...]:
    """The contracts a Governor or Timelock intent's actions call: its target parties, and each decoded
    action's contract (or, for an action that sends ether to an account, its recipient)."""
    targets = list(intent.parties_in(PartyRole.TARGET))
    for child in intent.children:
        targets.extend(
            [child.contract] if child.contract is not None else child.parties_in(PartyRole.RECIPIENT)
        )
    return tuple(dict.fromkeys(targets))


def _targets_of_action(intent: Intent) -> tuple[str, ...]:
    return action_targets(intent) if intent.kind in GOVERNANCE_ACTION_KINDS else ()

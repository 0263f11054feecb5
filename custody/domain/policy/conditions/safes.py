"""``safes``: an allowlist of the Safe accounts a rule's Safe transactions may be for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import Intent
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    NOT_DECODED,
    SAFE_KINDS,
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
class SafeCondition:
    """``safes = ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]``: every Safe transaction and Safe
    configuration change of the request must be for one of these Safe accounts.

    The Safe is the SafeTx typed data's verifying contract, or the contract an ``execTransaction`` call goes
    to; a Safe configuration change (owners, threshold, guard, modules, fallback handler, singleton) is judged
    by the Safe it changes. A rule whose ``intents`` names ``safe_transaction`` or ``safe_configuration``
    must list its Safes. How the Safe transaction may call is judged by ``safe_operations``, and a gas refund
    by ``allow_refund``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("safes",)

    safes: frozenset[str]  # EIP-55
    # A deny rule's: match when some Safe is listed, not only when every one is.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> SafeCondition | None:
        if "safes" not in rule.raw:
            needing = (named_intent_kinds(rule) or frozenset()) & SAFE_KINDS
            if needing and not denies(rule):
                raise rule.fail(
                    "safes",
                    f"is required: intents names {kinds_listed(needing)}, so the rule must list its Safes",
                )
            return None
        safes = parse_address_set(rule.raw["safes"], "safes", rule.fail)
        require_intent_kinds(rule, "safes", SAFE_KINDS)
        return cls(safes, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        placed = placed_intents(facts.intents)
        if not placed:
            return ConditionTrace("safes", False, NOT_DECODED)
        if self.denying:
            return some_listed("safes", placed, _safe_of, self.safes, "Safe")
        seen: set[str] = set()
        for item in placed:
            if item.intent.kind not in SAFE_KINDS:
                continue
            safe = item.intent.contract
            if safe is None:
                return ConditionTrace("safes", False, f"{item.describe()} names no Safe")
            if not same_address(safe, self.safes):
                return ConditionTrace(
                    "safes", False, f"Safe {safe} of {item.describe()} is not in {listed(self.safes)}"
                )
            seen.add(safe)
        if not seen:
            return ConditionTrace("safes", True, "the request holds no Safe transaction")
        return ConditionTrace("safes", True, f"every Safe of the request ({listed(seen)}) is allowed")


def _safe_of(intent: Intent) -> tuple[str, ...]:
    return (intent.contract,) if intent.kind in SAFE_KINDS and intent.contract is not None else ()

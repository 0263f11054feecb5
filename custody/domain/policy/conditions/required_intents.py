"""``requires_intents``: a rule meant for requests that do a certain thing matches only requests that do it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import IntentKind
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import NOT_DECODED, kinds_listed, placed_intents
from custody.domain.policy.conditions.intents import named_intent_kinds, require_intent_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class RequiredIntentCondition:
    """``requires_intents = ["ownership_transfer", "upgrade"]``: the request must hold at least one intent of
    these kinds, anywhere in its tree.

    ``intents`` says what a request may do; this says what it must do for the rule to apply. A rule for
    changes of control (needing the admin quorum) allows the transfers that often come in the same batch, and
    without this would also take plain transfers that the rules before it refused (over a velocity limit,
    say) to its own quorum. Every kind listed must also be allowed by the rule's ``intents``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("requires_intents",)

    kinds: frozenset[IntentKind]

    @classmethod
    def parse(cls, rule: RuleTable) -> RequiredIntentCondition | None:
        if "requires_intents" not in rule.raw:
            return None
        names = parse_string_set(rule.raw["requires_intents"], "requires_intents", "intent kinds", rule.fail)
        allowed = sorted(kind.value for kind in IntentKind)
        for name in sorted(names):
            if name not in allowed:
                raise rule.fail(
                    "requires_intents", f"unknown intent kind {name!r}; allowed are {quoted_list(allowed)}"
                )
        kinds = frozenset(IntentKind(name) for name in names)
        require_intent_kinds(rule, "requires_intents", None)
        not_allowed = kinds - (named_intent_kinds(rule) or frozenset())
        if not_allowed:
            raise rule.fail(
                "requires_intents",
                f"{kinds_listed(not_allowed)} must also be in intents, or no request could match the rule",
            )
        return cls(kinds)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        placed = placed_intents(facts.intents)
        if not placed:
            return ConditionTrace("requires_intents", False, NOT_DECODED)
        found = next((p for p in placed if p.intent.kind in self.kinds), None)
        if found is None:
            return ConditionTrace(
                "requires_intents",
                False,
                f"no intent of the request is of kind {kinds_listed(self.kinds)}, which the rule is for",
            )
        return ConditionTrace("requires_intents", True, f"{found.describe()} is of a kind the rule is for")

"""``allow_replacement``: whether a rule lets a request replace an earlier one for the same nonce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import denies, refuse_permission_in_deny_rule
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class ReplacementCondition:
    """``allow_replacement = true``: the rule may match a request that replaces an earlier one.

    A replacement is a second payload for a nonce already held by an earlier request (to speed up or cancel a
    stuck transaction). It is the one way custody could sign two different transactions for one nonce, so only
    rules that say so explicitly let replacements through: a rule without ``allow_replacement = true`` never
    matches one. For any other request the condition says nothing and stays out of the trace. A deny rule is
    not narrowed by it (it denies a replacement as it would the request) and may not set it.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("allow_replacement",)

    allow_replacement: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> ReplacementCondition | None:
        # Every rule that signs or asks for approval has this condition, because a rule that does not mention
        # replacements must refuse them. A deny rule is not narrowed by it: a replacement of a request it
        # denies is denied as well, not handed to the rules after it.
        if "allow_replacement" not in rule.raw and denies(rule):
            return None
        refuse_permission_in_deny_rule(
            rule, "allow_replacement", "a deny rule matches replacements as it matches any other request"
        )
        allow_replacement = rule.raw.get("allow_replacement", False)
        if not isinstance(allow_replacement, bool):
            raise rule.fail("allow_replacement", f"must be true or false, got {allow_replacement!r}")
        return cls(allow_replacement)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        if not facts.replacement:
            return None
        if self.allow_replacement:
            return ConditionTrace("replacement", True, "the request is a replacement, which this rule allows")
        return ConditionTrace(
            "replacement",
            False,
            "the request replaces an earlier one, and this rule has no allow_replacement",
        )

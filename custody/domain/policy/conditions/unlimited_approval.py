"""``allow_unlimited_approval``: whether a rule lets a request grant an unlimited allowance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import Intent, IntentFlag
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    OPERATOR_KINDS,
    SPENDING_KINDS,
    denies,
    placed_intents,
    refuse_permission_in_deny_rule,
)
from custody.domain.policy.conditions.intents import require_intent_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class UnlimitedApprovalCondition:
    """``allow_unlimited_approval = true``: the rule may match a request that grants an unlimited allowance.

    An approval or permit for 2**256-1 (or Permit2's 2**160-1) lets its spender take every token of that kind
    the key will ever hold; it is how most drained wallets were drained. So no rule matches one unless it says
    ``allow_unlimited_approval = true``, and such a rule must name the approval kinds it allows in
    ``intents``. With it, an unlimited amount is not counted against ``token_caps``. For any request without
    an unlimited approval the condition says nothing and stays out of the trace. A deny rule is not narrowed by
    it and may not set it (``= false`` would make it skip unlimited approvals).
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("allow_unlimited_approval",)

    allow_unlimited_approval: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> UnlimitedApprovalCondition | None:
        # Every rule that signs or asks for approval has this condition, because a rule that does not mention
        # unlimited approvals must refuse them.
        if "allow_unlimited_approval" not in rule.raw and denies(rule):
            return None
        refuse_permission_in_deny_rule(
            rule, "allow_unlimited_approval", "to deny approvals, name their kinds in intents"
        )
        allow = rule.raw.get("allow_unlimited_approval", False)
        if not isinstance(allow, bool):
            raise rule.fail("allow_unlimited_approval", f"must be true or false, got {allow!r}")
        if allow:
            require_intent_kinds(rule, "allow_unlimited_approval", SPENDING_KINDS | OPERATOR_KINDS)
        return cls(allow)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        unlimited = next((p for p in placed_intents(facts.intents) if is_unlimited_approval(p.intent)), None)
        if unlimited is None:
            return None
        if self.allow_unlimited_approval:
            return ConditionTrace(
                "unlimited_approval",
                True,
                f"{unlimited.describe()} is an unlimited approval, which this rule allows",
            )
        return ConditionTrace(
            "unlimited_approval",
            False,
            f"{unlimited.describe()} is an unlimited approval, and this rule has no allow_unlimited_approval",
        )


def is_unlimited_approval(intent: Intent) -> bool:
    """Whether the intent grants an allowance without limit: flagged so, or an approval or permit of the
    amount wallets use for "no limit"."""
    if IntentFlag.UNLIMITED_APPROVAL in intent.flags:
        return True
    return intent.kind in SPENDING_KINDS and any(amount.unlimited for amount in intent.amounts)

"""``allow_refund``: whether a rule lets a Safe transaction pay gas back to a refund receiver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import IntentFlag, IntentKind
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    denies,
    placed_intents,
    refuse_permission_in_deny_rule,
)
from custody.domain.policy.conditions.intents import require_intent_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class RefundCondition:
    """``allow_refund = true``: the rule may match a Safe transaction whose refund fields are not zero.

    A Safe transaction can pay its executor back for gas (``baseGas``, ``gasPrice``, ``gasToken``,
    ``refundReceiver``) out of the Safe's funds; set high, those fields drain the Safe to the refund receiver
    whatever the call itself does. So every rule refuses a refund unless it says ``allow_refund = true``, and
    such a rule must name ``safe_transaction`` in ``intents``. For a request without a refund the condition
    says nothing and stays out of the trace. A deny rule is not narrowed by it and may not set it.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("allow_refund",)

    allow_refund: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> RefundCondition | None:
        # Every rule that signs or asks for approval has this condition, because a rule that does not mention
        # refunds must refuse them.
        if "allow_refund" not in rule.raw and denies(rule):
            return None
        refuse_permission_in_deny_rule(
            rule, "allow_refund", "to deny Safe transactions, name safe_transaction in intents"
        )
        allow = rule.raw.get("allow_refund", False)
        if not isinstance(allow, bool):
            raise rule.fail("allow_refund", f"must be true or false, got {allow!r}")
        if allow:
            require_intent_kinds(rule, "allow_refund", frozenset({IntentKind.SAFE_TRANSACTION}))
        return cls(allow)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        refund = next((p for p in placed_intents(facts.intents) if IntentFlag.REFUND in p.intent.flags), None)
        if refund is None:
            return None
        if self.allow_refund:
            return ConditionTrace(
                "refunds", True, f"{refund.describe()} pays a gas refund, which this rule allows"
            )
        return ConditionTrace(
            "refunds", False, f"{refund.describe()} pays a gas refund, and this rule has no allow_refund"
        )

"""``max_fee_wei``: a cap on the fees one transaction can pay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import LIMIT_ON_ALLOWING_RULES, refuse_limit_in_deny_rule
from custody.domain.policy.conditions.kinds import TRANSACTIONS_EXCLUDED, excludes_transactions
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_wei, wei_text
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import PayloadKind


@dataclass(frozen=True)
class MaxFeeCondition:
    """``max_fee_wei = "10000000000000000"``: the transaction may pay at most this many wei in fees.

    The fee counted is the most the transaction can pay: gas * maxFeePerGas, or gas * gasPrice for legacy and
    EIP-2930 transactions. Fees are paid by the key as surely as value is, and a block builder keeps them, so a
    value cap alone would let a request with a small value and an enormous gas price empty the key. Only
    transactions pay fees: typed data and messages never match a rule that sets this condition. A limit, so
    refused in a deny rule: set it on the rules that sign or ask for approval.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("max_fee_wei",)

    max_fee_wei: int

    @classmethod
    def parse(cls, rule: RuleTable) -> MaxFeeCondition | None:
        if "max_fee_wei" not in rule.raw:
            return None
        refuse_limit_in_deny_rule(rule, "max_fee_wei", LIMIT_ON_ALLOWING_RULES)
        max_fee_wei = parse_wei(rule.raw["max_fee_wei"], "max_fee_wei", rule.fail)
        # Only transactions pay fees, so such a rule could never match anything else.
        if excludes_transactions(rule):
            raise rule.fail("max_fee_wei", TRANSACTIONS_EXCLUDED)
        return cls(max_fee_wei)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        cap = f"the cap of {wei_text(self.max_fee_wei)}"
        if facts.kind is not PayloadKind.TRANSACTION:
            return ConditionTrace(
                "max_fee_wei",
                False,
                f"the request is {facts.kind.value!r}, not a transaction; the rule needs a transaction whose"
                f" fee is within {cap}",
            )
        if facts.max_fee_wei is None:
            return ConditionTrace(
                "max_fee_wei",
                False,
                f"the transaction's maximum fee is unknown; the rule needs it within {cap}",
            )
        matched = facts.max_fee_wei <= self.max_fee_wei
        relation = "is at most" if matched else "exceeds"
        return ConditionTrace(
            "max_fee_wei", matched, f"maximum fee {wei_text(facts.max_fee_wei)} {relation} {cap}"
        )

"""``max_value_wei``: a cap on the ether one request moves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import LIMIT_ON_ALLOWING_RULES, refuse_limit_in_deny_rule
from custody.domain.policy.conditions.kinds import TRANSACTIONS_EXCLUDED, excludes_transactions
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_wei
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import PayloadKind


@dataclass(frozen=True)
class MaxValueCondition:
    """``max_value_wei = "5000000000000000000"``: the request may move at most this many wei (here 5 ether).

    The value is the ether a transaction sends: not token amounts in its calldata (see ``token_caps``), nor
    its fees (see ``max_fee_wei``). Only transactions send value: typed data and messages never match a rule
    that sets this condition, since a cap on a value they do not have would say nothing about them (a SafeTx
    signature moves the Safe's ether, not the key's). Write large amounts as a string of decimal digits: TOML
    integers stop at 2**63-1, about 9.2 ether.

    A limit, so refused in a deny rule (which would deny only what stays within it): to deny above an amount,
    set the cap on the rules that sign or ask for approval, and a request over it is denied by default.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("max_value_wei",)

    max_value_wei: int

    @classmethod
    def parse(cls, rule: RuleTable) -> MaxValueCondition | None:
        if "max_value_wei" not in rule.raw:
            return None
        refuse_limit_in_deny_rule(rule, "max_value_wei", LIMIT_ON_ALLOWING_RULES)
        max_value_wei = parse_wei(rule.raw["max_value_wei"], "max_value_wei", rule.fail)
        # Only transactions send value, so such a rule could never match anything else.
        if excludes_transactions(rule):
            raise rule.fail("max_value_wei", TRANSACTIONS_EXCLUDED)
        return cls(max_value_wei)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        if facts.kind is not PayloadKind.TRANSACTION:
            return ConditionTrace(
                "max_value_wei",
                False,
                f"the request is {facts.kind.value!r}, not a transaction; the rule caps the value a transaction"
                f" sends at {self.max_value_wei} wei",
            )
        matched = facts.value <= self.max_value_wei
        relation = "is at most" if matched else "exceeds"
        return ConditionTrace(
            "max_value_wei",
            matched,
            f"value {facts.value} wei {relation} the cap of {self.max_value_wei} wei",
        )

"""``max_value_wei``: a cap on the ether one request moves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_wei
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class MaxValueCondition:
    """``max_value_wei = "5000000000000000000"``: the request may move at most this many wei (here 5 ether).

    The value is the ether a transaction sends: not token amounts in its calldata, nor its fees (see
    ``max_fee_wei``). Typed data and messages move no value (0). Write large amounts as a string of decimal
    digits: TOML integers stop at 2**63-1, about 9.2 ether.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("max_value_wei",)

    max_value_wei: int

    @classmethod
    def parse(cls, rule: RuleTable) -> MaxValueCondition | None:
        if "max_value_wei" not in rule.raw:
            return None
        return cls(parse_wei(rule.raw["max_value_wei"], "max_value_wei", rule.fail))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        matched = facts.value <= self.max_value_wei
        relation = "is at most" if matched else "exceeds"
        return ConditionTrace(
            "max_value_wei",
            matched,
            f"value {facts.value} wei {relation} the cap of {self.max_value_wei} wei",
        )

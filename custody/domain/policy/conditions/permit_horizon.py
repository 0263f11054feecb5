"""``max_permit_horizon_seconds``: how far ahead a permit's deadline or expiration may lie."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    NOT_DECODED,
    PERMIT_KINDS,
    placed_intents,
    refuse_limit_in_deny_rule,
)
from custody.domain.policy.conditions.intents import require_intent_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import is_int
from custody.domain.policy.trace import ConditionTrace

# Longer than a year is almost surely a unit mistake, and no horizon needs more.
MAX_PERMIT_HORIZON_SECONDS = 366 * 86_400


@dataclass(frozen=True)
class PermitHorizonCondition:
    """``max_permit_horizon_seconds = 3600``: every permit of the request must stop being valid within this
    many seconds (1 s to 366 days) of the moment custody judges it.

    A permit is an EIP-2612 Permit or a Permit2 signature; its deadline (or, for Permit2 allowances, the
    expiration of the allowance) is when it stops being usable. A permit valid for ever, or one that states no
    deadline, never matches a rule with this condition, nor does a request judged without the current time.
    A deadline already past is within any horizon (such a permit can no longer be used). The rule must name a
    permit kind (``permit``, ``permit2_allowance``, ``permit2_transfer``) in ``intents``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("max_permit_horizon_seconds",)

    max_permit_horizon_seconds: int

    @classmethod
    def parse(cls, rule: RuleTable) -> PermitHorizonCondition | None:
        if "max_permit_horizon_seconds" not in rule.raw:
            return None
        refuse_limit_in_deny_rule(
            rule, "max_permit_horizon_seconds", "to deny permits, name their kinds in intents"
        )
        horizon = rule.raw["max_permit_horizon_seconds"]
        if not is_int(horizon) or not 1 <= horizon <= MAX_PERMIT_HORIZON_SECONDS:
            raise rule.fail(
                "max_permit_horizon_seconds",
                f"must be an integer from 1 to {MAX_PERMIT_HORIZON_SECONDS} (366 days), got {horizon!r}",
            )
        require_intent_kinds(rule, "max_permit_horizon_seconds", PERMIT_KINDS)
        return cls(int(horizon))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        name = "max_permit_horizon_seconds"
        horizon = f"{self.max_permit_horizon_seconds} s"
        placed = placed_intents(facts.intents)
        if not placed:
            return ConditionTrace(name, False, NOT_DECODED)
        permits = [p for p in placed if p.intent.kind in PERMIT_KINDS]
        if not permits:
            return ConditionTrace(name, True, "the request holds no permit")
        if facts.now is None:
            return ConditionTrace(
                name, False, f"the time of the request is unknown, so no permit can be held to {horizon}"
            )
        latest = facts.now + self.max_permit_horizon_seconds
        for permit in permits:
            deadline = permit.intent.deadline
            if deadline is None:
                return ConditionTrace(name, False, f"{permit.describe()} states no deadline")
            if deadline > latest:
                return ConditionTrace(
                    name,
                    False,
                    f"{permit.describe()} is valid until {deadline}, {deadline - facts.now} s after now"
                    f" ({facts.now}), beyond the horizon of {horizon}",
                )
        count = "the permit is" if len(permits) == 1 else f"all {len(permits)} permits are"
        return ConditionTrace(name, True, f"{count} valid for at most {horizon} from now ({facts.now})")

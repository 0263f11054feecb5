"""``kinds``: which kinds of payload a rule's requests may carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import SIGNING_KINDS, PayloadKind


@dataclass(frozen=True)
class KindCondition:
    """``kinds = ["transaction", "typed_data"]``: the request's payload must be one of these kinds.

    The kinds are the signing kinds: ``transaction``, ``typed_data`` (EIP-712) and ``message`` (EIP-191).
    Governance requests (policy changes, unfreezing a key) always need the admin quorum, so no rule can name
    them. Conditions that only a transaction can meet (``transaction_types``, ``max_fee_wei``) are refused in a
    rule whose ``kinds`` leaves transactions out, because such a rule could never match.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("kinds",)

    kinds: frozenset[PayloadKind]

    @classmethod
    def parse(cls, rule: RuleTable) -> KindCondition | None:
        if "kinds" not in rule.raw:
            return None
        kind_names = parse_string_set(rule.raw["kinds"], "kinds", "payload kinds", rule.fail)
        # Governance requests (policy changes, unfreezing) always need the admin quorum; no rule may decide
        # them, so their kinds are not offered here.
        allowed_kinds = sorted(kind.value for kind in SIGNING_KINDS)
        for kind_name in sorted(kind_names):
            if kind_name not in allowed_kinds:
                raise rule.fail(
                    "kinds", f"unknown kind {kind_name!r}; allowed are {quoted_list(allowed_kinds)}"
                )
        return cls(frozenset(PayloadKind(kind_name) for kind_name in kind_names))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        matched = facts.kind in self.kinds
        listed = quoted_list(sorted(kind.value for kind in self.kinds))
        verb = "is" if matched else "is not"
        return ConditionTrace("kinds", matched, f"kind {facts.kind.value!r} {verb} in {listed}")


def excludes_transactions(rule: RuleTable) -> bool:
    """Whether the rule's ``kinds``, parsed before, leaves transactions out: then a condition only a
    transaction can meet would make the rule unable to match anything."""
    kinds = rule.earlier(KindCondition)
    return kinds is not None and PayloadKind.TRANSACTION not in kinds.kinds


# The problem a transaction-only condition reports in a rule that excludes transactions.
TRANSACTIONS_EXCLUDED = "only transactions can match it, but kinds does not include 'transaction'"

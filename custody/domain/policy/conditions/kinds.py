"""``kinds``: which kinds of payload a rule's requests may carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import denies
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import SIGNING_KINDS, PayloadKind

# Kinds no rule matches unless its ``kinds`` names them: an EIP-7702 authorization hands the key's account to
# a contract, so a rule written for other kinds must not start matching it.
NAMED_ONLY_PAYLOAD_KINDS = frozenset({PayloadKind.AUTHORIZATION})


@dataclass(frozen=True)
class KindCondition:
    """``kinds = ["transaction", "typed_data"]``: the request's payload must be one of these kinds.

    The kinds are the signing kinds: ``transaction``, ``typed_data`` (EIP-712), ``message`` (EIP-191) and
    ``authorization`` (EIP-7702). An authorization matches only a rule whose ``kinds`` names it: a rule without
    ``kinds`` never matches one (a deny rule is not held back by this). Governance requests (policy changes,
    unfreezing a key) always need the admin quorum, so no rule can name them. Conditions that only a
    transaction can meet (``transaction_types``, ``max_fee_wei``) are refused in a rule whose ``kinds`` leaves
    transactions out, because such a rule could never match.

    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("kinds",)

    # None: the rule names no kinds, and only refuses the kinds a rule must name (NAMED_ONLY_PAYLOAD_KINDS).
    kinds: frozenset[PayloadKind] | None

    @classmethod
    def parse(cls, rule: RuleTable) -> KindCondition | None:
        if "kinds" not in rule.raw:
            # Every rule that signs or asks for approval has this condition, because a rule that does not name
            # kinds must still refuse the kinds only a rule naming them may allow.
            return None if denies(rule) else cls(None)
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

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        if self.kinds is None:
            if facts.kind not in NAMED_ONLY_PAYLOAD_KINDS:
                return None
            return ConditionTrace(
                "kinds",
                False,
                f"kind {facts.kind.value!r} is allowed only by a rule whose kinds names it, and this rule names"
                " no kinds",
            )
        matched = facts.kind in self.kinds
        listed = quoted_list(sorted(kind.value for kind in self.kinds))
        verb = "is" if matched else "is not"
        return ConditionTrace("kinds", matched, f"kind {facts.kind.value!r} {verb} in {listed}")


def named_kinds(rule: RuleTable) -> frozenset[PayloadKind] | None:
    """The kinds the rule's ``kinds``, parsed before, names; None when the rule has no ``kinds``."""
    condition = rule.earlier(KindCondition)
    return None if condition is None else condition.kinds


def excludes_transactions(rule: RuleTable) -> bool:
    """Whether the rule's ``kinds``, parsed before, leaves transactions out: then a condition only a
    transaction can meet would make the rule unable to match anything."""
    kinds = named_kinds(rule)
    return kinds is not None and PayloadKind.TRANSACTION not in kinds


# The problem a transaction-only condition reports in a rule that excludes transactions.
TRANSACTIONS_EXCLUDED = "only transactions can match it, but kinds does not include 'transaction'"

"""``transaction_types``: which Ethereum transaction envelopes a rule's requests may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import denies
from custody.domain.policy.conditions.kinds import TRANSACTIONS_EXCLUDED, excludes_transactions
from custody.domain.policy.facts import (
    NAMED_ONLY_TRANSACTION_TYPES,
    TRANSACTION_TYPES,
    RequestFacts,
    VelocityLookup,
)
from custody.domain.policy.fields import parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import PayloadKind


@dataclass(frozen=True)
class TransactionTypeCondition:
    """``transaction_types = ["eip1559"]``: the request must be a transaction of one of these types.

    The types are ``legacy`` (type 0), ``eip2930`` (type 1, with an access list), ``eip1559`` (type 2, with a
    fee cap and a priority fee), ``eip4844`` (type 3, blob) and ``eip7702`` (type 4, set-code, carrying
    authorizations). Typed data and messages never match a rule that sets this condition.

    Blob and set-code transactions match only a rule whose ``transaction_types`` names them: a rule without
    the field, written for ordinary transactions, never matches them (a deny rule is not held back by this).
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("transaction_types",)

    # None: the rule names no types, and only refuses the types a rule must name (NAMED_ONLY_TRANSACTION_TYPES).
    transaction_types: frozenset[str] | None

    @classmethod
    def parse(cls, rule: RuleTable) -> TransactionTypeCondition | None:
        if "transaction_types" not in rule.raw:
            # Every rule that signs or asks for approval has this condition, because a rule that does not name
            # transaction types must still refuse the types only a rule naming them may allow.
            return None if denies(rule) else cls(None)
        transaction_types = parse_string_set(
            rule.raw["transaction_types"], "transaction_types", "transaction types", rule.fail
        )
        for type_name in sorted(transaction_types):
            if type_name not in TRANSACTION_TYPES:
                raise rule.fail(
                    "transaction_types",
                    f"unknown transaction type {type_name!r}; allowed are {quoted_list(TRANSACTION_TYPES)}",
                )
        # Such a rule could never match anything, which is surely not what its author meant.
        if excludes_transactions(rule):
            raise rule.fail("transaction_types", TRANSACTIONS_EXCLUDED)
        return cls(transaction_types)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        if self.transaction_types is None:
            if facts.transaction_type not in NAMED_ONLY_TRANSACTION_TYPES:
                return None
            return ConditionTrace(
                "transaction_types",
                False,
                f"transaction type {facts.transaction_type!r} is allowed only by a rule whose transaction_types"
                " names it, and this rule names no transaction types",
            )
        listed = quoted_list(sorted(self.transaction_types))
        if facts.kind is not PayloadKind.TRANSACTION or facts.transaction_type is None:
            return ConditionTrace(
                "transaction_types",
                False,
                f"the request is {facts.kind.value!r}, not a transaction; the rule needs one of {listed}",
            )
        matched = facts.transaction_type in self.transaction_types
        verb = "is" if matched else "is not"
        return ConditionTrace(
            "transaction_types", matched, f"transaction type {facts.transaction_type!r} {verb} in {listed}"
        )

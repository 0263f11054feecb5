"""``chain_ids``: which chains a rule's requests may be for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.intents import IntentFlag
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import DENY_MATCHES_ANY_PART, denies, placed_intents
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import UINT256_MAX, FailFactory, is_int, type_name
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class ChainIdCondition:
    """``chain_ids = [1, 11155111]``: the request must be for one of these chains (EIP-155 chain ids).

    A transaction's chain id and a typed-data domain's ``chainId`` count; a payload without one (an EIP-191
    message, typed data whose domain names no chain) never matches a rule that sets this condition.

    An EIP-7702 authorization of chain id 0 is valid on every chain, the listed ones too: a deny rule matches
    a request that is, or carries, such an authorization whatever chains it lists, so ``chain_ids = [1]``
    with ``action = "deny"`` denies it. A rule that signs or asks for approval never matches one (0 is in no
    list); it needs a rule without ``chain_ids`` and with ``any_chain = true``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("chain_ids",)

    chain_ids: frozenset[int]
    # A deny rule's: an authorization valid on every chain matches whatever chains are listed.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> ChainIdCondition | None:
        if "chain_ids" not in rule.raw:
            return None
        return cls(_parse_chain_ids(rule.raw["chain_ids"], rule.fail), denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        listed = "[" + ", ".join(str(chain_id) for chain_id in sorted(self.chain_ids)) + "]"
        if facts.chain_id is None:
            return ConditionTrace(
                "chain_ids", False, f"the request has no chain id; the rule needs one of {listed}"
            )
        if self.denying:
            every_chain = next(
                (p for p in placed_intents(facts.intents) if IntentFlag.EVERY_CHAIN in p.intent.flags), None
            )
            if every_chain is not None:
                return ConditionTrace(
                    "chain_ids",
                    True,
                    f"{every_chain.describe()} has chain id 0, valid on every chain, {listed} included"
                    f" ({DENY_MATCHES_ANY_PART})",
                )
        matched = facts.chain_id in self.chain_ids
        verb = "is" if matched else "is not"
        return ConditionTrace("chain_ids", matched, f"chain id {facts.chain_id} {verb} in {listed}")


def _parse_chain_ids(value: Any, fail: FailFactory) -> frozenset[int]:
    if not isinstance(value, list):
        raise fail("chain_ids", f"must be a list of chain ids, got {type_name(value)}")
    if not value:
        raise fail("chain_ids", "must list at least one chain id, got an empty list")
    seen: set[int] = set()
    for item in value:
        if not is_int(item):
            raise fail("chain_ids", f"must be a list of integers, got {item!r}")
        if not 0 < item <= UINT256_MAX:
            raise fail("chain_ids", f"a chain id must be between 1 and 2**256-1, got {item}")
        if item in seen:
            raise fail("chain_ids", f"lists {item} twice")
        seen.add(item)
    return frozenset(seen)

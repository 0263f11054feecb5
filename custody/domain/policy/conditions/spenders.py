"""``spenders``: an allowlist of the addresses that may be allowed to spend the key's tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import PartyRole
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import SPENDING_KINDS, denies
from custody.domain.policy.conditions.party_allowlists import check_party_allowlist, parse_party_allowlist
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class SpenderCondition:
    """``spenders = ["0x000000000022D473030F116dDEE9F6B43aC78BA3"]``: every spender an intent of the request
    allows to move the key's tokens must be one of these addresses.

    Spenders are named by ERC-20 ``approve`` and ``increaseAllowance``, EIP-2612 Permits and Permit2
    allowances and transfers. A rule whose ``intents`` names one of those kinds must list its spenders (an
    approval to anyone is the drainer's favourite signature), and an approval intent that names no spender
    does not match.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("spenders",)

    spenders: frozenset[str]  # EIP-55
    # A deny rule's: match when some spender is listed, not only when every one is.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> SpenderCondition | None:
        spenders = parse_party_allowlist(rule, "spenders", PartyRole.SPENDER, SPENDING_KINDS)
        return None if spenders is None else cls(spenders, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        return check_party_allowlist(
            facts, "spenders", PartyRole.SPENDER, self.spenders, SPENDING_KINDS, denying=self.denying
        )

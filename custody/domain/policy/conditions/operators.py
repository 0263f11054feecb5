"""``operators``: an allowlist of the addresses that may be made operators of the key's NFTs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import PartyRole
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import OPERATOR_KINDS, denies
from custody.domain.policy.conditions.party_allowlists import check_party_allowlist, parse_party_allowlist
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class OperatorCondition:
    """``operators = ["0x1E0049783F008A0085193E00003D00cd54003c71"]``: every operator a
    ``setApprovalForAll`` of the request names must be one of these addresses.

    An operator may move every NFT of a collection the key holds. A rule whose ``intents`` names
    ``set_approval_for_all`` must list its operators, and such an intent that names no operator does not
    match.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("operators",)

    operators: frozenset[str]  # EIP-55
    # A deny rule's: match when some operator is listed, not only when every one is.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> OperatorCondition | None:
        operators = parse_party_allowlist(rule, "operators", PartyRole.OPERATOR, OPERATOR_KINDS)
        return None if operators is None else cls(operators, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        return check_party_allowlist(
            facts, "operators", PartyRole.OPERATOR, self.operators, OPERATOR_KINDS, denying=self.denying
        )

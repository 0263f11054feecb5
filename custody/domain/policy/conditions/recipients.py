"""``recipients``: an allowlist of the addresses that may receive ether, tokens or NFTs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import PartyRole
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import denies
from custody.domain.policy.conditions.party_allowlists import check_party_allowlist, parse_party_allowlist
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class RecipientCondition:
    """``recipients = ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]``: everyone who receives ether, tokens
    or NFTs in the request's intents must be one of these addresses.

    Recipients are judged wherever they appear: the recipient of a plain transfer, of an ERC-20 ``transfer``
    or ``transferFrom``, of a Permit2 transfer, and of every inner call of a Safe transaction or batch. The
    allowlist is for the recipient role only: an address listed here may still not be a spender or operator.
    The rule must name the intent kinds it allows in ``intents``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("recipients",)

    recipients: frozenset[str]  # EIP-55
    # A deny rule's: match when some recipient is listed, not only when every one is.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> RecipientCondition | None:
        recipients = parse_party_allowlist(rule, "recipients", PartyRole.RECIPIENT, frozenset())
        return None if recipients is None else cls(recipients, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        return check_party_allowlist(
            facts, "recipients", PartyRole.RECIPIENT, self.recipients, frozenset(), denying=self.denying
        )

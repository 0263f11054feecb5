"""``tokens``: an allowlist of the token contracts a rule's intents may move or allow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    NOT_DECODED,
    TOKEN_KINDS,
    denies,
    listed,
    parse_address_set,
    placed_intents,
    same_address,
    some_listed,
    tokens_of,
)
from custody.domain.policy.conditions.intents import require_intent_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class TokenCondition:
    """``tokens = ["0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"]``: every token an intent of the request moves
    or allows must be one of these contracts.

    It judges ERC-20 transfers and approvals, NFT transfers and ``setApprovalForAll``, EIP-2612 Permits
    (whose token is the verifying contract) and Permit2 signatures and calls (whose tokens are named inside),
    wherever they are in the tree: a token transfer inside a Safe transaction counts. An intent of those kinds
    that names no token does not match. The rule must name the token kinds it allows in ``intents``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("tokens",)

    tokens: frozenset[str]  # EIP-55
    # A deny rule's: match when some token is listed, not only when every one is.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> TokenCondition | None:
        if "tokens" not in rule.raw:
            return None
        tokens = parse_address_set(rule.raw["tokens"], "tokens", rule.fail)
        require_intent_kinds(rule, "tokens", TOKEN_KINDS)
        return cls(tokens, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        placed = placed_intents(facts.intents)
        if not placed:
            return ConditionTrace("tokens", False, NOT_DECODED)
        if self.denying:
            return some_listed(
                "tokens", placed, lambda intent: sorted(tokens_of(intent)), self.tokens, "token"
            )
        seen: set[str] = set()
        for item in placed:
            tokens = tokens_of(item.intent)
            if item.intent.kind in TOKEN_KINDS and not tokens:
                return ConditionTrace(
                    "tokens",
                    False,
                    f"{item.describe()} names no token; the rule allows {listed(self.tokens)}",
                )
            for token in sorted(tokens):
                if not same_address(token, self.tokens):
                    return ConditionTrace(
                        "tokens",
                        False,
                        f"token {token} of {item.describe()} is not in {listed(self.tokens)}",
                    )
                seen.add(token)
        if not seen:
            return ConditionTrace("tokens", True, "the request moves and allows no tokens")
        return ConditionTrace(
            "tokens", True, f"every token the request moves or allows ({listed(seen)}) is allowed"
        )

"""``token_caps``: per-token caps on the amounts a request moves or allows, in the token's base units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.intents import Intent
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    NOT_DECODED,
    TOKEN_KINDS,
    placed_intents,
    refuse_limit_in_deny_rule,
)
from custody.domain.policy.conditions.intents import require_intent_kinds
from custody.domain.policy.conditions.unlimited_approval import (
    UnlimitedApprovalCondition,
    is_unlimited_approval,
)
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory, parse_address, parse_wei, type_name
from custody.domain.policy.trace import ConditionTrace

_CAP_KEYS = frozenset({"token", "max"})


@dataclass(frozen=True)
class TokenCap:
    token: str  # EIP-55
    max: int  # base units


@dataclass(frozen=True)
class TokenCapCondition:
    """``token_caps = [{ token = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", max = "1000000000" }]``: the
    request may move or allow at most ``max`` base units of each listed token (here 1,000 USDC, which has 6
    decimals), and no amount of any token not listed.

    The amounts of every intent in the tree are added up per token: transfers, approvals, permits and the
    inner calls of a Safe transaction or batch alike, so ten transfers under the cap in one MultiSend count as
    ten. ``max`` is a decimal string like ``max_value_wei`` (base units, not whole tokens). Ether is capped by
    ``max_value_wei``, not here. An unlimited approval never fits a cap; it is allowed only by
    ``allow_unlimited_approval = true``, and then is not counted here. The rule must name the token kinds it
    allows in ``intents``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("token_caps",)

    caps: tuple[TokenCap, ...]
    # Whether the rule's allow_unlimited_approval lets unlimited approvals through; they are judged there.
    unlimited_allowed: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> TokenCapCondition | None:
        if "token_caps" not in rule.raw:
            return None
        refuse_limit_in_deny_rule(rule, "token_caps", "to deny a token, list it in tokens")
        caps = _parse_caps(rule.raw["token_caps"], rule.fail)
        require_intent_kinds(rule, "token_caps", TOKEN_KINDS)
        unlimited = rule.earlier(UnlimitedApprovalCondition)
        return cls(caps, unlimited is not None and unlimited.allow_unlimited_approval)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        placed = placed_intents(facts.intents)
        if not placed:
            return ConditionTrace("token_caps", False, NOT_DECODED)
        totals = token_totals([p.intent for p in placed], skip_unlimited_approvals=self.unlimited_allowed)
        cap_by_token = {cap.token.lower(): cap for cap in self.caps}
        findings: list[str] = []
        for token, total in sorted(totals.items()):
            cap = cap_by_token.get(token.lower())
            if cap is None:
                return ConditionTrace(
                    "token_caps",
                    False,
                    f"the request moves or allows {total} of token {token}, which has no cap",
                )
            if total > cap.max:
                return ConditionTrace(
                    "token_caps",
                    False,
                    f"the request moves or allows {total} of token {cap.token}, over its cap of {cap.max}",
                )
            findings.append(f"{total} of {cap.token} is within its cap of {cap.max}")
        if not findings:
            return ConditionTrace("token_caps", True, "the request moves and allows no token amounts")
        return ConditionTrace("token_caps", True, "; ".join(findings))


def token_totals(intents: list[Intent], *, skip_unlimited_approvals: bool = False) -> dict[str, int]:
    """Base units per token (EIP-55 address as the intents write it) that ``intents`` move or allow, added
    up; ether (token None) is left out."""
    # Keyed by the 20 bytes the address names, so two spellings of one token are one total.
    spelling: dict[str, str] = {}
    totals: dict[str, int] = {}
    for intent in intents:
        if skip_unlimited_approvals and is_unlimited_approval(intent):
            continue
        for amount in intent.amounts:
            if amount.token is not None:
                key = amount.token.lower()
                spelling.setdefault(key, amount.token)
                totals[key] = totals.get(key, 0) + amount.amount
    return {spelling[key]: total for key, total in totals.items()}


def _parse_caps(value: Any, fail: FailFactory) -> tuple[TokenCap, ...]:
    if not isinstance(value, list):
        raise fail("token_caps", f"must be a list of {{ token, max }} tables, got {type_name(value)}")
    if not value:
        raise fail("token_caps", "must list at least one { token, max } table, got an empty list")
    caps: list[TokenCap] = []
    for index, raw in enumerate(value):
        field = f"token_caps[{index}]"
        if not isinstance(raw, Mapping):
            raise fail(field, f"must be a {{ token, max }} table, got {type_name(raw)}")
        if set(raw) != _CAP_KEYS:
            raise fail(field, "must have exactly the keys 'token' and 'max'")
        token = parse_address(raw["token"], f"{field}.token", fail)
        if any(cap.token == token for cap in caps):
            raise fail(field, f"caps token {token} twice")
        caps.append(TokenCap(token, parse_wei(raw["max"], f"{field}.max", fail)))
    return tuple(caps)

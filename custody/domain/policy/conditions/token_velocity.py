"""``token_velocity``: per-token limits on the amounts one key may move or allow within a sliding window."""

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
from custody.domain.policy.conditions.token_caps import token_totals
from custody.domain.policy.conditions.velocity import MAX_VELOCITY_WINDOW_SECONDS
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory, is_int, parse_address, parse_wei, type_name
from custody.domain.policy.trace import ConditionTrace

_LIMIT_KEYS = frozenset({"token", "window_seconds", "max"})


@dataclass(frozen=True)
class TokenVelocityLimit:
    token: str  # EIP-55
    window_seconds: int
    max: int  # base units


@dataclass(frozen=True)
class TokenVelocityCondition:
    """``token_velocity = [{ token = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", window_seconds = 86400,
    max = "10000000000" }]``: per key, at most ``max`` base units of the token (here 10,000 USDC) moved or
    allowed within a sliding window of ``window_seconds`` (1 s to 366 days), this request included.

    It counts what ``token_caps`` counts (every transfer, approval and permit amount in the tree, added up per
    token) over the key's requests that were signed, approved or are still waiting for approval, as
    ``velocity`` counts ether. Tokens not listed are not limited here (``tokens`` and ``token_caps`` allow
    them or not). An unlimited approval exceeds any limit. The rule must name the token kinds it allows in
    ``intents``. Like ``velocity`` it needs the key's past usage, which the caller looks up; when the caller
    cannot count token amounts the condition does not match.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("token_velocity",)

    limits: tuple[TokenVelocityLimit, ...]

    @classmethod
    def parse(cls, rule: RuleTable) -> TokenVelocityCondition | None:
        if "token_velocity" not in rule.raw:
            return None
        refuse_limit_in_deny_rule(rule, "token_velocity", "to deny a token, list it in tokens")
        limits = _parse_limits(rule.raw["token_velocity"], rule.fail)
        require_intent_kinds(rule, "token_velocity", TOKEN_KINDS)
        return cls(limits)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        placed = placed_intents(facts.intents)
        if not placed:
            return ConditionTrace("token_velocity", False, NOT_DECODED)
        this_request = {token.lower(): total for token, total in request_token_amounts(facts.intents).items()}
        findings: list[str] = []
        for limit in self.limits:
            window = f"in the last {limit.window_seconds} s"
            used = usage(facts.key_label, limit.window_seconds).token_amounts
            if used is None:
                return ConditionTrace(
                    "token_velocity",
                    False,
                    f"{window}: the key's earlier amounts of token {limit.token} are not counted, so the limit"
                    " cannot be held",
                )
            earlier = sum(amount for token, amount in used.items() if token.lower() == limit.token.lower())
            total = earlier + this_request.get(limit.token.lower(), 0)
            if total > limit.max:
                return ConditionTrace(
                    "token_velocity",
                    False,
                    f"{window}, this request included: {total} of token {limit.token} would exceed the limit"
                    f" of {limit.max}",
                )
            findings.append(
                f"{window}, this request included: {total} of token {limit.token} is within {limit.max}"
            )
        return ConditionTrace("token_velocity", True, "; ".join(findings))


def request_token_amounts(intents: tuple[Intent, ...]) -> dict[str, int]:
    """Base units per token (EIP-55) that a request with these intents moves or allows, every intent of the
    tree counted: what token velocity limits add up, and what the store keeps with each request for that."""
    return token_totals([placed.intent for placed in placed_intents(intents)])


def _parse_limits(value: Any, fail: FailFactory) -> tuple[TokenVelocityLimit, ...]:
    what = "{ token, window_seconds, max }"
    if not isinstance(value, list):
        raise fail("token_velocity", f"must be a list of {what} tables, got {type_name(value)}")
    if not value:
        raise fail("token_velocity", f"must list at least one {what} table, got an empty list")
    limits: list[TokenVelocityLimit] = []
    for index, raw in enumerate(value):
        field = f"token_velocity[{index}]"
        if not isinstance(raw, Mapping):
            raise fail(field, f"must be a {what} table, got {type_name(raw)}")
        if set(raw) != _LIMIT_KEYS:
            raise fail(field, "must have exactly the keys 'token', 'window_seconds' and 'max'")
        token = parse_address(raw["token"], f"{field}.token", fail)
        window = raw["window_seconds"]
        if not is_int(window) or not 1 <= window <= MAX_VELOCITY_WINDOW_SECONDS:
            raise fail(
                f"{field}.window_seconds",
                f"must be an integer from 1 to {MAX_VELOCITY_WINDOW_SECONDS} (366 days), got {window!r}",
            )
        if any(limit.token == token and limit.window_seconds == window for limit in limits):
            raise fail(field, f"limits token {token} over {window} s twice")
        limits.append(TokenVelocityLimit(token, int(window), parse_wei(raw["max"], f"{field}.max", fail)))
    return tuple(limits)

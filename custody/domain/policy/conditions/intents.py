"""``intents``: which kinds of intent a rule allows, for every intent of the request's tree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import IntentKind
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    DENY_MATCHES_ANY_PART,
    NOT_DECODED,
    denies,
    kinds_listed,
    placed_intents,
)
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace

# Kinds no rule allows unless its ``intents`` names them, even a rule that does not judge intents at all:
# calldata custody cannot decode as what it claims to be, a change to a Safe's owners, threshold, guard,
# modules or code, a binary message (which may be a transaction hash in disguise), and an EIP-7702
# authorization (which makes an account run a contract's code).
NAMED_ONLY_KINDS = frozenset(
    {
        IntentKind.UNDECODABLE,
        IntentKind.SAFE_CONFIGURATION,
        IntentKind.BINARY_MESSAGE,
        IntentKind.AUTHORIZATION,
    }
)


@dataclass(frozen=True)
class IntentCondition:
    """``intents = ["native_transfer", "erc20_transfer"]``: every intent of the request must be of one of
    these kinds, the inner ones too.

    A payload's intents form a tree: a Safe transaction holds the call it makes, a MultiSend batch its calls,
    a Governor proposal its actions. The rule matches only if every intent of the tree is of a kind it names
    and passes its other intent conditions, so one forbidden inner call decides the whole request. The kinds
    are those of custody/domain/intents.py, e.g. ``native_transfer``, ``erc20_transfer``, ``erc20_approve``,
    ``permit``, ``permit2_allowance``, ``safe_transaction``, ``multisend``, ``safe_configuration``,
    ``governor_propose``, ``ownership_transfer``, ``upgrade``, ``typed_data``, ``text_message``,
    ``binary_message``, ``authorization``, ``unknown`` and ``undecodable``.

    ``unknown`` (a function or typed data custody does not know) and ``undecodable`` (something that claims to
    be a known function or type but does not decode as it) are allowed only where a rule names them. Even a
    rule without ``intents`` never matches an undecodable intent, a Safe configuration change, a binary
    message or an EIP-7702 authorization: those need a rule that names them (a deny rule is not held back by
    this). A request custody decoded no intents from matches no rule that names intents.

    A deny rule matches when SOME intent of the tree is of a kind it names: ``intents = ["authorization"]``
    with ``action = "deny"`` denies a set-code transaction, whose call is an intent beside its authorizations.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("intents",)

    kinds: frozenset[IntentKind] | None  # None: the rule does not judge intents, only guards NAMED_ONLY_KINDS
    # A deny rule's: match when some intent is of a named kind, not only when every one is.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> IntentCondition | None:
        # Every rule that signs or asks for approval has this condition, because a rule that does not name
        # intents must still refuse the kinds only a rule naming them may allow.
        if "intents" not in rule.raw:
            return None if denies(rule) else cls(None, False)
        names = parse_string_set(rule.raw["intents"], "intents", "intent kinds", rule.fail)
        allowed = sorted(kind.value for kind in IntentKind)
        for name in sorted(names):
            if name not in allowed:
                raise rule.fail(
                    "intents", f"unknown intent kind {name!r}; allowed are {quoted_list(allowed)}"
                )
        return cls(frozenset(IntentKind(name) for name in names), denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        placed = placed_intents(facts.intents)
        if self.kinds is None:
            guarded = next((p for p in placed if p.intent.kind in NAMED_ONLY_KINDS), None)
            if guarded is None:
                return None
            return ConditionTrace(
                "intents",
                False,
                f"{guarded.describe()} is allowed only by a rule whose intents names"
                f" {guarded.intent.kind.value!r}, and this rule names no intents",
            )
        if not placed:
            return ConditionTrace("intents", False, NOT_DECODED)
        allowed = kinds_listed(self.kinds)
        if self.denying:
            named = next((p for p in placed if p.intent.kind in self.kinds), None)
            if named is None:
                found = kinds_listed({p.intent.kind for p in placed})
                return ConditionTrace("intents", False, f"no intent ({found}) is of a kind in {allowed}")
            return ConditionTrace(
                "intents", True, f"{named.describe()} is of a kind in {allowed} ({DENY_MATCHES_ANY_PART})"
            )
        forbidden = next((p for p in placed if p.intent.kind not in self.kinds), None)
        if forbidden is not None:
            return ConditionTrace(
                "intents", False, f"{forbidden.describe()} is not of an allowed kind ({allowed})"
            )
        found = kinds_listed({p.intent.kind for p in placed})
        if len(placed) == 1:
            return ConditionTrace(
                "intents", True, f"the one intent ({found}) is of an allowed kind ({allowed})"
            )
        return ConditionTrace(
            "intents", True, f"all {len(placed)} intents ({found}) are of allowed kinds ({allowed})"
        )


def named_intent_kinds(rule: RuleTable) -> frozenset[IntentKind] | None:
    """The intent kinds the rule's ``intents`` names, or None when the rule has no ``intents``."""
    condition = rule.earlier(IntentCondition)
    return None if condition is None else condition.kinds


def require_intent_kinds(rule: RuleTable, field: str, applies_to: frozenset[IntentKind] | None) -> None:
    """Refuse ``field`` in a rule that does not say which intents it allows, or whose ``intents`` names none
    of the kinds the field applies to (``applies_to``; None when it applies to any kind).

    A condition on intents in a rule that names no intent kinds would let through every intent it has
    nothing to say about (an unknown call has no recipient to refuse), and one whose kinds the rule never
    allows could never apply: both are mistakes the author should hear about. A deny rule may leave
    ``intents`` out (``delegates = [...]`` alone denies every request that delegates to one of them).
    """
    named = named_intent_kinds(rule)
    if named is None:
        if denies(rule):
            # A deny rule matches any request holding such a party; it lets nothing through by being broad.
            return
        raise rule.fail(
            field,
            "judges intents, so the rule must also say which intent kinds it allows, e.g."
            ' intents = ["erc20_transfer"]',
        )
    if applies_to is not None and not named & applies_to:
        raise rule.fail(
            field,
            f"applies only to intents of kind {kinds_listed(applies_to)}, and intents names none of them,"
            " so it could never apply",
        )

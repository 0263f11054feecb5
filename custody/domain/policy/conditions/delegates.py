"""``delegates`` and ``any_chain``: which contracts an EIP-7702 authorization may make an account run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import IntentFlag, IntentKind, PartyRole
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    denies,
    listed,
    parse_address_set,
    placed_intents,
    same_address,
    some_listed,
)
from custody.domain.policy.conditions.intents import named_intent_kinds, require_intent_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.trace import ConditionTrace

_AUTHORIZATION_KINDS = frozenset({IntentKind.AUTHORIZATION})


@dataclass(frozen=True)
class DelegateCondition:
    """``delegates = ["0x63c0c19a282a1B52b07dD5a65b58948A07DAE32B"]``: every EIP-7702 authorization of the
    request must name one of these delegates; ``any_chain = true`` also lets one of chain id 0 through.

    An authorization makes its signer's account run the delegate's code until another replaces it, so the
    delegate controls everything the account holds: a rule whose ``intents`` names ``authorization`` must list
    the delegates it allows. Both an authorization custody signs (kind ``authorization``) and each tuple of a
    set-code transaction's ``authorizationList`` are judged. An authorization of chain id 0 is valid on every
    chain, where the delegate's address may hold other code or none; it matches only a rule that says
    ``any_chain = true``, and such a rule cannot also set ``chain_ids``: a tuple of chain id 0 is valid on
    chains the list leaves out, so the two together would promise a limit that does not hold (refused when
    the policy is loaded).

    A deny rule matches when SOME authorization of the request names a listed delegate, whatever its chain
    id: ``delegates = ["0x..."]`` with ``action = "deny"`` (``intents`` may be left out) denies a set-code
    transaction carrying a tuple for it beside other tuples and its call. ``any_chain`` means nothing there.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("delegates", "any_chain")

    delegates: frozenset[str]  # EIP-55
    any_chain: bool
    # A deny rule's: match when some authorization names a listed delegate, not only when every one does.
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> DelegateCondition | None:
        any_chain = rule.raw.get("any_chain", False)
        if not isinstance(any_chain, bool):
            raise rule.fail("any_chain", f"must be true or false, got {any_chain!r}")
        if "delegates" not in rule.raw:
            if any_chain:
                raise rule.fail(
                    "any_chain", "applies to the delegates a rule allows, so the rule must list delegates"
                )
            named = named_intent_kinds(rule) or frozenset()
            if IntentKind.AUTHORIZATION in named and not denies(rule):
                raise rule.fail(
                    "delegates",
                    "is required: intents names 'authorization', which makes the key's account run the delegate's"
                    " code, so the rule must list the delegates it allows",
                )
            return None
        delegates = parse_address_set(rule.raw["delegates"], "delegates", rule.fail)
        require_intent_kinds(rule, "delegates", _AUTHORIZATION_KINDS)
        if any_chain and "chain_ids" in rule.raw:
            raise rule.fail(
                "any_chain",
                "lets through authorizations of chain id 0, valid on every chain, so it cannot be limited by"
                " chain_ids; leave chain_ids out of this rule",
            )
        if any_chain and denies(rule):
            raise rule.fail(
                "any_chain",
                "lets authorizations of chain id 0 through a rule that allows; a deny rule denies its delegates"
                " on every chain, so leave it out",
            )
        return cls(delegates, any_chain, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        authorizations = [
            p for p in placed_intents(facts.intents) if p.intent.kind is IntentKind.AUTHORIZATION
        ]
        if not authorizations:
            if self.denying:
                return ConditionTrace("delegates", False, "the request carries no authorization")
            return None
        if self.denying:
            return some_listed(
                "delegates",
                authorizations,
                lambda intent: intent.parties_in(PartyRole.DELEGATE),
                self.delegates,
                "delegate",
            )
        for item in authorizations:
            delegates = item.intent.parties_in(PartyRole.DELEGATE)
            if not delegates:
                return ConditionTrace(
                    "delegates",
                    False,
                    f"{item.describe()} names no delegate; the rule allows {listed(self.delegates)}",
                )
            for delegate in delegates:
                if not same_address(delegate, self.delegates):
                    return ConditionTrace(
                        "delegates",
                        False,
                        f"delegate {delegate} of {item.describe()} is not in {listed(self.delegates)}",
                    )
            if IntentFlag.EVERY_CHAIN in item.intent.flags and not self.any_chain:
                return ConditionTrace(
                    "delegates",
                    False,
                    f"{item.describe()} has chain id 0, valid on every chain, and this rule has no any_chain = true",
                )
        seen = {d for item in authorizations for d in item.intent.parties_in(PartyRole.DELEGATE)}
        return ConditionTrace("delegates", True, f"every delegate ({listed(seen)}) is allowed")

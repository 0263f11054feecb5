"""What the conditions that judge intents share: each intent's place in the request's tree, the words a trace
uses for it, the groups of intent kinds the conditions speak about, and the checks a rule's fields must pass
to make sense together.

This module is no condition and is not in the registry; the condition modules import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from custody.domain.intents import Intent, IntentKind
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.fields import FailFactory, parse_address, quoted_list, type_name
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import DecisionAction

# The trace detail of a condition that judges intents when the request carries none: the daemon decodes every
# payload it parses, so an empty tree means the request was not decoded, and nothing can be said to be allowed.
NOT_DECODED = "custody decoded no intents from this request, so a rule that judges intents cannot match it"

# Kinds that move or allow tokens: the ``tokens``, ``token_caps`` and ``token_velocity`` conditions judge them.
TOKEN_KINDS = frozenset(
    {
        IntentKind.ERC20_TRANSFER,
        IntentKind.ERC20_TRANSFER_FROM,
        IntentKind.ERC20_APPROVE,
        IntentKind.ERC20_INCREASE_ALLOWANCE,
        IntentKind.NFT_TRANSFER,
        IntentKind.SET_APPROVAL_FOR_ALL,
        IntentKind.PERMIT,
        IntentKind.PERMIT2_ALLOWANCE,
        IntentKind.PERMIT2_TRANSFER,
    }
)
# Kinds whose acting contract is the token itself; Permit2's intents act through the Permit2 contract and name
# their tokens in their amounts.
_CONTRACT_IS_TOKEN_KINDS = TOKEN_KINDS - {IntentKind.PERMIT2_ALLOWANCE, IntentKind.PERMIT2_TRANSFER}
# Kinds that let a spender move the signer's tokens.
SPENDING_KINDS = frozenset(
    {
        IntentKind.ERC20_APPROVE,
        IntentKind.ERC20_INCREASE_ALLOWANCE,
        IntentKind.PERMIT,
        IntentKind.PERMIT2_ALLOWANCE,
        IntentKind.PERMIT2_TRANSFER,
    }
)
# Kinds that let an operator move every NFT of a collection.
OPERATOR_KINDS = frozenset({IntentKind.SET_APPROVAL_FOR_ALL})
# Signatures with a deadline or expiration.
PERMIT_KINDS = frozenset({IntentKind.PERMIT, IntentKind.PERMIT2_ALLOWANCE, IntentKind.PERMIT2_TRANSFER})
# Kinds whose acting contract is a Safe.
SAFE_KINDS = frozenset({IntentKind.SAFE_TRANSACTION, IntentKind.SAFE_CONFIGURATION})
# Governor and Timelock calls that carry actions (targets, values, calldata); a Timelock cancel names only an
# operation id.
GOVERNANCE_ACTION_KINDS = frozenset(
    {
        IntentKind.GOVERNOR_PROPOSE,
        IntentKind.GOVERNOR_QUEUE,
        IntentKind.GOVERNOR_EXECUTE,
        IntentKind.GOVERNOR_CANCEL,
        IntentKind.TIMELOCK_SCHEDULE,
        IntentKind.TIMELOCK_EXECUTE,
    }
)
MESSAGE_KINDS = frozenset({IntentKind.TEXT_MESSAGE, IntentKind.BINARY_MESSAGE})


@dataclass(frozen=True)
class PlacedIntent:
    """An intent and its place in the request's tree: "1" is the first top-level intent, "1.2" its second
    child, so a trace can say which inner call of a batch decided."""

    place: str
    intent: Intent

    def describe(self) -> str:
        intent = self.intent
        words = [f"intent {self.place}: {intent.kind.value}"]
        if intent.subject:
            words.append(f"{intent.subject!r}")
        if intent.contract is not None:
            words.append(f"on {intent.contract}")
        return " ".join(words)


def placed_intents(intents: tuple[Intent, ...]) -> list[PlacedIntent]:
    """Every intent of the tree with its place, depth first, parents before children (the order of
    ``walk_all``)."""
    placed: list[PlacedIntent] = []
    pending = [(str(index), intent) for index, intent in reversed(list(enumerate(intents, start=1)))]
    while pending:
        place, intent = pending.pop()
        placed.append(PlacedIntent(place, intent))
        pending.extend(
            (f"{place}.{index}", child)
            for index, child in reversed(list(enumerate(intent.children, start=1)))
        )
    return placed


def tokens_of(intent: Intent) -> frozenset[str]:
    """The token contracts an intent moves or allows: those its amounts name, and its acting contract when
    that is the token (an ERC-20 or NFT call, an EIP-2612 Permit)."""
    tokens = {amount.token for amount in intent.amounts if amount.token is not None}
    if intent.kind in _CONTRACT_IS_TOKEN_KINDS and intent.contract is not None:
        tokens.add(intent.contract)
    return frozenset(tokens)


def same_address(address: str, allowed: Iterable[str]) -> bool:
    """Whether ``address`` is one of ``allowed``, compared on the 20 bytes they name (any case)."""
    return address.lower() in {item.lower() for item in allowed}


def listed(addresses: Iterable[str]) -> str:
    return ", ".join(sorted(addresses))


def kinds_listed(kinds: Iterable[IntentKind]) -> str:
    return quoted_list(sorted(kind.value for kind in kinds))


def parse_address_set(value: object, field: str, fail: FailFactory) -> frozenset[str]:
    """A non-empty list of distinct addresses, each in EIP-55 form."""
    if not isinstance(value, list):
        raise fail(field, f"must be a list of addresses, got {type_name(value)}")
    if not value:
        raise fail(field, "must list at least one address, got an empty list")
    seen: set[str] = set()
    for item in value:
        address = parse_address(item, field, fail)
        if address in seen:
            raise fail(field, f"lists {address} twice")
        seen.add(address)
    return frozenset(seen)


# The trace words that say why a deny rule's condition on intents matched on one part of the request.
DENY_MATCHES_ANY_PART = "a deny rule matches when any part of the request does"


def denies(rule: RuleTable) -> bool:
    """Whether the rule's action is deny.

    What every rule refuses unless it says otherwise (undecodable calldata, unlimited approvals, DELEGATECALL,
    typed data it does not name, ...) narrows rules that sign or ask for approval; a deny rule is not narrowed
    by it, since a deny rule that matched less would hand its requests to the rules after it. Nor must a deny
    rule list the parties of what it denies.

    For the same reason a deny rule's conditions on intents match when SOME intent of the tree is of a kind
    it names, or names a party, token, Safe or target it lists, where a rule that signs or asks for approval
    matches only when EVERY intent passes: a request is denied if any part of it is what the rule denies, so
    a set-code transaction carrying one authorization for a denied delegate beside its call is denied.
    """
    return rule.raw.get("action") == DecisionAction.DENY.value


# Where a limit belongs: on the rules that allow, since a request over every allowing rule's limit is denied.
LIMIT_ON_ALLOWING_RULES = "to deny what exceeds it, set it on the rules that sign or ask for approval"


def refuse_limit_in_deny_rule(rule: RuleTable, field: str, instead: str) -> None:
    """Refuse ``field``, a limit on what a rule allows, in a deny rule.

    A limit is met by the requests within it, so a deny rule with one would deny what stays under the limit
    and hand what goes beyond it, or holds one more token, to the rules after it: the opposite of what its
    author meant ("deny above X"). ``instead`` says how to write what they likely meant. Every limit
    (``max_value_wei``, ``max_fee_wei``, ``velocity``, ``token_caps``, ``token_velocity``,
    ``max_permit_horizon_seconds``, ``max_message_bytes``) is refused so; the selectors (what a deny rule
    names: keys, chains, kinds, destinations, contracts, intents and the parties and tokens they list, typed
    data, message prefixes) match what they name and are kept.
    """
    if denies(rule):
        raise rule.fail(
            field,
            "is a limit on what a rule allows; in a deny rule it would deny only what stays within it and let"
            f" the rest through to the rules after it; {instead}",
        )


def refuse_permission_in_deny_rule(rule: RuleTable, field: str, instead: str) -> None:
    """Refuse ``field``, a permission to let through what every signing rule refuses, in a deny rule.

    A deny rule is not narrowed by those refusals (unlimited approvals, refunds, replacements, binary and
    hash-like messages), so the permission means nothing there when it allows, and when it does not (``=
    false``) it would make the rule skip the very requests most worth denying and hand them to the rules after
    it. ``instead`` says how to deny what its author likely meant.
    """
    if denies(rule):
        raise rule.fail(
            field,
            "is a permission for rules that sign or ask for approval; a deny rule already matches what it"
            f" governs, and set to false it would let those requests through to the rules after it; {instead}",
        )


def some_listed(
    condition: str,
    placed: list[PlacedIntent],
    addresses_of: Callable[[Intent], Iterable[str]],
    listed_addresses: frozenset[str],
    what: str,
) -> ConditionTrace:
    """A deny rule's check of an address list: it matches when SOME intent of ``placed`` names one of
    ``listed_addresses`` among ``addresses_of`` it (its ``what``: recipient, token, delegate...)."""
    for item in placed:
        for address in addresses_of(item.intent):
            if same_address(address, listed_addresses):
                return ConditionTrace(
                    condition,
                    True,
                    f"{what} {address} of {item.describe()} is in {listed(listed_addresses)}"
                    f" ({DENY_MATCHES_ANY_PART})",
                )
    return ConditionTrace(condition, False, f"no {what} of the request is in {listed(listed_addresses)}")

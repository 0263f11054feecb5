"""``destinations``: an allowlist of the addresses a rule's requests may go to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.kinds import named_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory, parse_address, type_name
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import PayloadKind


@dataclass(frozen=True)
class DestinationCondition:
    """``destinations = ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]``: the request must go to one of these
    addresses.

    For a transaction the destination is its recipient (``to``); a transaction without one (a contract
    creation) never matches. Messages never match, and typed data only in a rule that lists ``typed_data``,
    where the destination is the domain's ``verifyingContract``: a rule written for payments to an address
    must not match a signature that merely names that address (a SafeTx for a Safe moves the Safe's funds in
    ways no destination says). Addresses are compared on the 20 bytes they name; written in mixed case they
    must carry a correct EIP-55 checksum, which catches a mistyped character. What the payload does inside
    (the recipient of a token transfer, the call of a Safe transaction) is judged by ``recipients`` and the
    other intent conditions.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("destinations",)

    destinations: frozenset[str]  # EIP-55 checksummed
    # Whether the rule lists typed_data, so that typed data's verifyingContract counts as its destination.
    typed_data_rule: bool = False

    @classmethod
    def parse(cls, rule: RuleTable) -> DestinationCondition | None:
        if "destinations" not in rule.raw:
            return None
        destinations = _parse_destinations(rule.raw["destinations"], rule.fail)
        typed_data_rule = "typed_data" in rule.raw
        kinds = named_kinds(rule)
        if kinds is not None and PayloadKind.TRANSACTION not in kinds and not typed_data_rule:
            raise rule.fail(
                "destinations",
                "only transactions, and typed data in a rule that lists typed_data, can match it, but kinds does"
                " not include 'transaction'",
            )
        return cls(destinations, typed_data_rule)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        listed = ", ".join(sorted(self.destinations))
        if facts.kind is PayloadKind.MESSAGE or (
            facts.kind is PayloadKind.TYPED_DATA and not self.typed_data_rule
        ):
            where = (
                ""
                if facts.kind is PayloadKind.MESSAGE
                else " (a verifyingContract counts only in a rule that lists typed_data)"
            )
            return ConditionTrace(
                "destinations",
                False,
                f"the request is {facts.kind.value!r}, not a transaction{where}; the rule allows only {listed}",
            )
        if facts.to is None:
            return ConditionTrace(
                "destinations", False, f"the request has no destination; the rule allows only {listed}"
            )
        # Callers may hand the address in any case; the allowlist is compared on the 20 bytes it names.
        matched = facts.to.lower() in {address.lower() for address in self.destinations}
        verb = "is" if matched else "is not"
        return ConditionTrace("destinations", matched, f"destination {facts.to} {verb} in {listed}")


def _parse_destinations(value: Any, fail: FailFactory) -> frozenset[str]:
    if not isinstance(value, list):
        raise fail("destinations", f"must be a list of addresses, got {type_name(value)}")
    if not value:
        raise fail("destinations", "must list at least one address, got an empty list")
    seen: set[str] = set()
    for item in value:
        address = parse_address(item, "destinations", fail)
        if address in seen:
            raise fail("destinations", f"lists {address} twice")
        seen.add(address)
    return frozenset(seen)

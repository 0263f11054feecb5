"""``destinations``: an allowlist of the addresses a rule's requests may go to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory, parse_address, type_name
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class DestinationCondition:
    """``destinations = ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]``: the request must go to one of these
    addresses.

    For a transaction the destination is its recipient (``to``); for typed data it is the domain's
    ``verifyingContract``. A request without one (a contract creation, a message) never matches. Addresses are
    compared on the 20 bytes they name; written in mixed case they must carry a correct EIP-55 checksum, which
    catches a mistyped character.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("destinations",)

    destinations: frozenset[str]  # EIP-55 checksummed

    @classmethod
    def parse(cls, rule: RuleTable) -> DestinationCondition | None:
        if "destinations" not in rule.raw:
            return None
        return cls(_parse_destinations(rule.raw["destinations"], rule.fail))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        listed = ", ".join(sorted(self.destinations))
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

"""``contracts``: an allowlist of contracts and, for each, the functions a rule's requests may call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory, parse_address, parse_string_set, type_name
from custody.domain.policy.trace import ConditionTrace

_CONTRACT_KEYS = frozenset({"address", "selectors"})
_SELECTOR_PATTERN = re.compile(r"0x[0-9a-fA-F]{8}")


@dataclass(frozen=True)
class AllowedContract:
    address: str  # EIP-55 checksummed
    selectors: frozenset[bytes]  # 4 bytes each


@dataclass(frozen=True)
class ContractCondition:
    """``contracts = [{ address = "0x...", selectors = ["0xa9059cbb"] }]``: the request must call one of these
    contracts, and one of the functions listed for it.

    A function is named by its selector, the first 4 bytes of the calldata (``0xa9059cbb`` is ERC-20
    ``transfer``). A request to another address, or one whose calldata is shorter than a selector (a plain
    ether transfer), does not match. List each contract once, with all its selectors.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("contracts",)

    contracts: tuple[AllowedContract, ...]

    @classmethod
    def parse(cls, rule: RuleTable) -> ContractCondition | None:
        if "contracts" not in rule.raw:
            return None
        return cls(_parse_contracts(rule.raw["contracts"], rule.fail))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        if facts.to is None:
            return ConditionTrace("contracts", False, "the request calls no contract")
        contract = next((c for c in self.contracts if c.address.lower() == facts.to.lower()), None)
        if contract is None:
            listed = ", ".join(c.address for c in self.contracts)
            return ConditionTrace(
                "contracts", False, f"{facts.to} is not one of the allowed contracts {listed}"
            )
        selectors = ", ".join(sorted("0x" + selector.hex() for selector in contract.selectors))
        if facts.selector is None:
            return ConditionTrace(
                "contracts",
                False,
                f"the request calls {contract.address} without a function selector; the rule allows {selectors}",
            )
        matched = facts.selector in contract.selectors
        verb = "is" if matched else "is not"
        return ConditionTrace(
            "contracts",
            matched,
            f"selector 0x{facts.selector.hex()} on {contract.address} {verb} in {selectors}",
        )


def _parse_contracts(value: Any, fail: FailFactory) -> tuple[AllowedContract, ...]:
    if not isinstance(value, list):
        raise fail("contracts", f"must be a list of {{ address, selectors }} tables, got {type_name(value)}")
    if not value:
        raise fail("contracts", "must list at least one { address, selectors } table, got an empty list")
    contracts: list[AllowedContract] = []
    for index, raw in enumerate(value):
        field = f"contracts[{index}]"
        if not isinstance(raw, Mapping):
            raise fail(field, f"must be a {{ address, selectors }} table, got {type_name(raw)}")
        if set(raw) != _CONTRACT_KEYS:
            raise fail(field, "must have exactly the keys 'address' and 'selectors'")
        address = parse_address(raw["address"], f"{field}.address", fail)
        if any(contract.address == address for contract in contracts):
            raise fail(field, f"lists contract {address} twice; put all its selectors in one entry")
        selector_texts = parse_string_set(raw["selectors"], f"{field}.selectors", "function selectors", fail)
        selectors: set[bytes] = set()
        for text in sorted(selector_texts):
            if not _SELECTOR_PATTERN.fullmatch(text):
                raise fail(
                    f"{field}.selectors",
                    f"{text[:40]!r} is not a function selector (0x followed by 8 hex digits)",
                )
            selector = bytes.fromhex(text[2:])
            if selector in selectors:
                raise fail(f"{field}.selectors", f"lists 0x{selector.hex()} twice")
            selectors.add(selector)
        contracts.append(AllowedContract(address=address, selectors=frozenset(selectors)))
    return tuple(contracts)

"""``typed_data``: which EIP-712 typed data a rule allows, by primary type and domain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.intents import Intent, TypedDataDomain
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import NOT_DECODED, denies
from custody.domain.policy.conditions.kinds import named_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import (
    UINT256_MAX,
    FailFactory,
    is_int,
    parse_address,
    quoted_list,
    type_name,
)
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import PayloadKind

_ENTRY_KEYS = frozenset({"primary_type", "name", "version", "chain_id", "verifying_contract"})


@dataclass(frozen=True)
class AllowedTypedData:
    """One entry of ``typed_data``: a primary type, and the domain fields it must have (None: any)."""

    primary_type: str
    name: str | None = None
    version: str | None = None
    chain_id: int | None = None
    verifying_contract: str | None = None  # EIP-55

    def mismatch(self, primary_type: str, domain: TypedDataDomain) -> str | None:
        """What differs between this entry and the typed data, or None when it allows it."""
        if primary_type != self.primary_type:
            return f"primary type {primary_type!r} is not {self.primary_type!r}"
        wanted: list[tuple[str, object, object]] = [
            ("name", self.name, domain.name),
            ("version", self.version, domain.version),
            ("chainId", self.chain_id, domain.chain_id),
        ]
        for label, want, have in wanted:
            if want is not None and want != have:
                return f"domain {label} {have!r} is not {want!r}"
        if self.verifying_contract is not None and (
            domain.verifying_contract is None
            or domain.verifying_contract.lower() != self.verifying_contract.lower()
        ):
            return f"domain verifyingContract {domain.verifying_contract} is not {self.verifying_contract}"
        return None


@dataclass(frozen=True)
class TypedDataCondition:
    """``typed_data = [{ primary_type = "Mail", name = "Ether Mail", version = "1", chain_id = 1,
    verifying_contract = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC" }]``: typed data must have one of these
    primary types, with the domain fields its entry gives.

    ``primary_type`` is required in each entry; ``name``, ``version``, ``chain_id`` and ``verifying_contract``
    are optional, and each one given must equal the payload's EIP-712 domain field (a domain without it does
    not match). Typed data whose primary type no rule names is denied: a rule without ``typed_data`` never
    matches typed data (unless its action is deny), and a rule with it matches only typed data (refused in a
    rule whose ``kinds`` leaves typed data out). What the typed data does is judged by the rule's intent
    conditions as for any payload: a Permit needs ``permit`` in ``intents`` and its spender in ``spenders``, a
    SafeTx ``safe_transaction`` and its Safe in ``safes``. In such a rule ``destinations`` is matched against
    the verifying contract.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("typed_data",)

    allowed: tuple[AllowedTypedData, ...] | None  # None: the rule names no typed data and so matches none

    @classmethod
    def parse(cls, rule: RuleTable) -> TypedDataCondition | None:
        # Every rule that signs or asks for approval has this condition, because a rule that names no typed
        # data must refuse all of it.
        if "typed_data" not in rule.raw:
            return None if denies(rule) else cls(None)
        allowed = _parse_entries(rule.raw["typed_data"], rule.fail)
        kinds = named_kinds(rule)
        if kinds is not None and PayloadKind.TYPED_DATA not in kinds:
            raise rule.fail(
                "typed_data", "only typed data can match it, but kinds does not include 'typed_data'"
            )
        return cls(allowed)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        if facts.kind is not PayloadKind.TYPED_DATA:
            if self.allowed is None:
                return None
            return ConditionTrace(
                "typed_data",
                False,
                f"the request is {facts.kind.value!r}, not typed data; the rule allows only typed data of"
                f" primary type {self._primary_types()}",
            )
        roots = facts.intents
        if not roots:
            # Not decoded: a rule that names typed data cannot match it; one that does not judges the envelope.
            return None if self.allowed is None else ConditionTrace("typed_data", False, NOT_DECODED)
        for root in roots:
            problem = self._problem(root)
            if problem is not None:
                return ConditionTrace("typed_data", False, problem)
        described = ", ".join(_describe(root) for root in roots)
        return ConditionTrace("typed_data", True, f"{described} is allowed")

    def _problem(self, root: Intent) -> str | None:
        if root.domain is None:
            return f"the typed data {root.subject!r} was decoded without its domain"
        if self.allowed is None:
            return (
                f"typed data {_describe(root)} is allowed only by a rule that names its primary type in"
                " typed_data, and this rule names none"
            )
        mismatches = [entry.mismatch(root.subject, root.domain) for entry in self.allowed]
        if all(mismatch is not None for mismatch in mismatches):
            reasons = "; ".join(
                f"typed_data[{index}]: {mismatch}" for index, mismatch in enumerate(mismatches)
            )
            return f"typed data {_describe(root)} is not allowed ({reasons})"
        return None

    def _primary_types(self) -> str:
        return quoted_list(sorted({entry.primary_type for entry in self.allowed or ()}))


def _describe(root: Intent) -> str:
    domain = root.domain or TypedDataDomain()
    parts = [
        f"{label} {value!r}"
        if isinstance(value, str) and label != "verifyingContract"
        else f"{label} {value}"
        for label, value in (
            ("name", domain.name),
            ("version", domain.version),
            ("chainId", domain.chain_id),
            ("verifyingContract", domain.verifying_contract),
        )
        if value is not None
    ]
    return f"{root.subject!r} of domain {{{', '.join(parts)}}}"


def _parse_entries(value: Any, fail: FailFactory) -> tuple[AllowedTypedData, ...]:
    if not isinstance(value, list):
        raise fail("typed_data", f"must be a list of {{ primary_type, ... }} tables, got {type_name(value)}")
    if not value:
        raise fail("typed_data", "must list at least one { primary_type, ... } table, got an empty list")
    entries: list[AllowedTypedData] = []
    for index, raw in enumerate(value):
        field = f"typed_data[{index}]"
        if not isinstance(raw, Mapping):
            raise fail(field, f"must be a {{ primary_type, ... }} table, got {type_name(raw)}")
        unknown = sorted(set(raw) - _ENTRY_KEYS)
        if unknown:
            raise fail(
                field, f"unknown key {quoted_list(unknown)}; allowed are {quoted_list(sorted(_ENTRY_KEYS))}"
            )
        if "primary_type" not in raw:
            raise fail(f"{field}.primary_type", 'is required, e.g. primary_type = "Mail"')
        entry = AllowedTypedData(
            primary_type=_parse_text(raw["primary_type"], f"{field}.primary_type", fail),
            name=_parse_text(raw["name"], f"{field}.name", fail) if "name" in raw else None,
            version=_parse_text(raw["version"], f"{field}.version", fail) if "version" in raw else None,
            chain_id=_parse_chain_id(raw["chain_id"], f"{field}.chain_id", fail)
            if "chain_id" in raw
            else None,
            verifying_contract=(
                parse_address(raw["verifying_contract"], f"{field}.verifying_contract", fail)
                if "verifying_contract" in raw
                else None
            ),
        )
        if entry in entries:
            raise fail(field, f"repeats typed_data[{entries.index(entry)}]")
        entries.append(entry)
    return tuple(entries)


def _parse_text(value: Any, field: str, fail: FailFactory) -> str:
    # EIP-712 names are short identifiers and labels; a bound keeps error messages and traces readable.
    if not isinstance(value, str) or not value or len(value) > 256:
        raise fail(field, f"must be a non-empty string of at most 256 characters, got {value!r:.60}")
    return value


def _parse_chain_id(value: Any, field: str, fail: FailFactory) -> int:
    if not is_int(value) or not 0 < value <= UINT256_MAX:
        raise fail(field, f"must be a chain id, an integer from 1 to 2**256-1, got {value!r}")
    return int(value)

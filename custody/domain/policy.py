"""The signing policy: which requests a key may sign, and who must approve the others.

A policy is a versioned document read from TOML by ``custody/policy_file.py`` and handed here as a plain
mapping, so this module does no I/O. It names approvers (id, Ed25519 public key, groups), the admin quorum that
governs changes to custody itself, and rules. Evaluation denies by default: the first rule whose conditions all
match decides (sign, deny, or approve with a quorum), and when no rule matches the request is denied.

Every condition reports its outcome in a trace, so ``custody policy explain`` can show a person which rule
decided a request and why the rules before it did not match. Rules are built from small condition objects and
an action, so new conditions do not change how evaluation walks the rules.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from custody.chains.evm.address import checksum_address
from custody.chains.evm.values import format_ether
from custody.domain.errors import ConfigurationError, InternalError, InvalidInput
from custody.domain.keys import validate_key_label
from custody.domain.quorum import quorum_progress
from custody.domain.requests import SIGNING_KINDS, Decision, PayloadKind, QuorumTerm

# Transactions encode chain ids and values as 256-bit unsigned integers, so nothing outside that range can
# ever be a request's chain id or value.
UINT256_MAX = 2**256 - 1

TRANSACTION_TYPES = ("legacy", "eip2930", "eip1559")

NO_MATCH_REASON = "no rule allows this request (deny by default)"
# A denial names what stopped at most this many of the rules written for the key; the trace has all of them.
MAX_RULES_IN_REASON = 3
GOVERNANCE_REASON = "changes to custody need the admin quorum"
NO_ADMIN_QUORUM_REASON = (
    "the policy in force names no approvers, so custody cannot be changed by quorum; change the bootstrap"
    " policy file instead"
)

DEFAULT_LIFETIME_SECONDS = 86_400
MIN_LIFETIME_SECONDS = 60
MAX_LIFETIME_SECONDS = 30 * 86_400
# A window longer than a year is almost surely a unit mistake (milliseconds written as seconds), and bounding
# it keeps the store's "since" arithmetic far from overflow.
MAX_VELOCITY_WINDOW_SECONDS = 366 * 86_400
DEFAULT_SECURITY_GROUPS = frozenset({"security"})

_RULE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_GROUP_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# Approver ids are the common names of client certificates, which people often write as e-mail addresses.
_APPROVER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_PUBLIC_KEY_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
_SELECTOR_PATTERN = re.compile(r"0x[0-9a-fA-F]{8}")
_DECIMAL_PATTERN = re.compile(r"-?[0-9]+")
# A decimal string longer than this cannot be below 2**256 (78 digits), and refusing it early keeps int()
# from being handed arbitrarily long input.
_MAX_DECIMAL_DIGITS = 100

_TOP_LEVEL_KEYS = frozenset({"version", "approvers", "admin", "rules"})
_APPROVER_KEYS = frozenset({"public_key", "groups"})
_ADMIN_KEYS = frozenset({"quorum", "security_groups"})
_RULE_KEYS = frozenset(
    {
        "name",
        "keys",
        "chain_ids",
        "kinds",
        "transaction_types",
        "destinations",
        "contracts",
        "max_value_wei",
        "max_fee_wei",
        "velocity",
        "allow_replacement",
        "action",
        "quorum",
        "lifetime_seconds",
        "timelock_seconds",
    }
)
_APPROVE_ONLY_RULE_KEYS = ("quorum", "lifetime_seconds", "timelock_seconds")
_CONTRACT_KEYS = frozenset({"address", "selectors"})
_QUORUM_TERM_KEYS = frozenset({"group", "threshold"})
_VELOCITY_KEYS = frozenset({"window_seconds", "max_value_wei", "max_count", "freeze_on_breach"})


class RuleAction(enum.Enum):
    """What a matching rule does with a request."""

    SIGN = "sign"
    DENY = "deny"
    APPROVE = "approve"


@dataclass(frozen=True)
class RequestFacts:
    """What the policy may look at: facts the daemon derived from the parsed payload itself."""

    key_label: str
    kind: PayloadKind
    chain_id: int | None  # None for payloads that carry no chain id, such as EIP-191 messages
    transaction_type: str | None  # one of TRANSACTION_TYPES for transactions, else None
    to: str | None  # transactions: the recipient; typed data: the domain's verifyingContract
    value: int  # wei moved by the request; 0 for typed data and messages
    # The first 4 bytes of a transaction's calldata; None when it has fewer or the payload is no transaction.
    selector: bytes | None = None
    # The request explicitly replaces an earlier one holding the same nonce (a second payload for that nonce).
    replacement: bool = False
    # Transactions: the most wei they can pay in fees, as the parsed payload computed it; None for other kinds.
    # A transaction without it matches no rule that caps fees.
    max_fee_wei: int | None = None


@dataclass(frozen=True)
class VelocityUsage:
    """What a key has already used within a velocity window, as the store counts it."""

    count: int
    total_value: int  # wei


# Given a key label and a window length in seconds, the key's usage within the window that ends now.
VelocityLookup = Callable[[str, int], VelocityUsage]


@dataclass(frozen=True)
class Approver:
    id: str  # the common name of the approver's client certificate
    public_key: bytes  # raw 32-byte Ed25519 public key
    groups: frozenset[str]


@dataclass(frozen=True)
class ConditionTrace:
    condition: str
    matched: bool
    detail: str


@dataclass(frozen=True)
class RuleTrace:
    rule: str
    matched: bool
    conditions: tuple[ConditionTrace, ...]


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    trace: tuple[RuleTrace, ...]
    # Set when a rule that asks for it failed only because of its velocity limit: the circuit breaker should
    # freeze the key, whatever a later rule decided about this request.
    freeze_key: bool = False
    freeze_reason: str = ""
    lifetime_seconds: int | None = None  # the matched rule's request lifetime; None unless it is "approve"


class Condition(Protocol):
    """One test a rule applies to a request; it reports its outcome rather than raising."""

    def check(self, facts: RequestFacts) -> ConditionTrace: ...


@dataclass(frozen=True)
class KeyCondition:
    key_labels: frozenset[str]

    def check(self, facts: RequestFacts) -> ConditionTrace:
        matched = facts.key_label in self.key_labels
        listed = _quoted_list(sorted(self.key_labels))
        verb = "is" if matched else "is not"
        return ConditionTrace("keys", matched, f"key {facts.key_label!r} {verb} in {listed}")


@dataclass(frozen=True)
class ChainIdCondition:
    chain_ids: frozenset[int]

    def check(self, facts: RequestFacts) -> ConditionTrace:
        listed = "[" + ", ".join(str(chain_id) for chain_id in sorted(self.chain_ids)) + "]"
        if facts.chain_id is None:
            return ConditionTrace(
                "chain_ids", False, f"the request has no chain id; the rule needs one of {listed}"
            )
        matched = facts.chain_id in self.chain_ids
        verb = "is" if matched else "is not"
        return ConditionTrace("chain_ids", matched, f"chain id {facts.chain_id} {verb} in {listed}")


@dataclass(frozen=True)
class KindCondition:
    kinds: frozenset[PayloadKind]

    def check(self, facts: RequestFacts) -> ConditionTrace:
        matched = facts.kind in self.kinds
        listed = _quoted_list(sorted(kind.value for kind in self.kinds))
        verb = "is" if matched else "is not"
        return ConditionTrace("kinds", matched, f"kind {facts.kind.value!r} {verb} in {listed}")


@dataclass(frozen=True)
class TransactionTypeCondition:
    transaction_types: frozenset[str]

    def check(self, facts: RequestFacts) -> ConditionTrace:
        listed = _quoted_list(sorted(self.transaction_types))
        if facts.kind is not PayloadKind.TRANSACTION or facts.transaction_type is None:
            return ConditionTrace(
                "transaction_types",
                False,
                f"the request is {facts.kind.value!r}, not a transaction; the rule needs one of {listed}",
            )
        matched = facts.transaction_type in self.transaction_types
        verb = "is" if matched else "is not"
        return ConditionTrace(
            "transaction_types", matched, f"transaction type {facts.transaction_type!r} {verb} in {listed}"
        )


@dataclass(frozen=True)
class DestinationCondition:
    destinations: frozenset[str]  # EIP-55 checksummed

    def check(self, facts: RequestFacts) -> ConditionTrace:
        listed = ", ".join(sorted(self.destinations))
        if facts.to is None:
            return ConditionTrace(
                "destinations", False, f"the request has no destination; the rule allows only {listed}"
            )
        # Callers may hand the address in any case; the allowlist is compared on the 20 bytes it names.
        matched = facts.to.lower() in {address.lower() for address in self.destinations}
        verb = "is" if matched else "is not"
        return ConditionTrace("destinations", matched, f"destination {facts.to} {verb} in {listed}")


@dataclass(frozen=True)
class AllowedContract:
    address: str  # EIP-55 checksummed
    selectors: frozenset[bytes]  # 4 bytes each


@dataclass(frozen=True)
class ContractCondition:
    contracts: tuple[AllowedContract, ...]

    def check(self, facts: RequestFacts) -> ConditionTrace:
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


@dataclass(frozen=True)
class MaxValueCondition:
    max_value_wei: int

    def check(self, facts: RequestFacts) -> ConditionTrace:
        matched = facts.value <= self.max_value_wei
        relation = "is at most" if matched else "exceeds"
        return ConditionTrace(
            "max_value_wei",
            matched,
            f"value {facts.value} wei {relation} the cap of {self.max_value_wei} wei",
        )


@dataclass(frozen=True)
class MaxFeeCondition:
    """Fees are paid by the key as surely as value is, and a block builder keeps them, so a value cap alone
    would let a request with a small value and an enormous gas price empty the key."""

    max_fee_wei: int

    def check(self, facts: RequestFacts) -> ConditionTrace:
        cap = f"the cap of {_wei_text(self.max_fee_wei)}"
        if facts.kind is not PayloadKind.TRANSACTION:
            return ConditionTrace(
                "max_fee_wei",
                False,
                f"the request is {facts.kind.value!r}, not a transaction; the rule needs a transaction whose"
                f" fee is within {cap}",
            )
        if facts.max_fee_wei is None:
            return ConditionTrace(
                "max_fee_wei",
                False,
                f"the transaction's maximum fee is unknown; the rule needs it within {cap}",
            )
        matched = facts.max_fee_wei <= self.max_fee_wei
        relation = "is at most" if matched else "exceeds"
        return ConditionTrace(
            "max_fee_wei", matched, f"maximum fee {_wei_text(facts.max_fee_wei)} {relation} {cap}"
        )


@dataclass(frozen=True)
class ReplacementCondition:
    """A second payload for a nonce already used is the one way custody could sign two different transactions
    for one nonce, so only rules that say so explicitly let replacements through."""

    allow_replacement: bool

    def check(self, facts: RequestFacts) -> ConditionTrace:
        if self.allow_replacement:
            return ConditionTrace("replacement", True, "the request is a replacement, which this rule allows")
        return ConditionTrace(
            "replacement",
            False,
            "the request replaces an earlier one, and this rule has no allow_replacement",
        )


@dataclass(frozen=True)
class VelocityLimit:
    """At most ``max_count`` requests and ``max_value_wei`` wei per key within a sliding window, this one
    included. Unlike the other conditions it needs the key's past usage, which the caller looks up."""

    window_seconds: int
    max_value_wei: int | None
    max_count: int | None
    freeze_on_breach: bool

    def check(self, facts: RequestFacts, usage: VelocityUsage) -> ConditionTrace:
        problems: list[str] = []
        findings: list[str] = []
        if self.max_count is not None:
            count = usage.count + 1
            if count > self.max_count:
                problems.append(f"{count} requests would exceed the limit of {self.max_count}")
            else:
                findings.append(f"{count} requests are within the limit of {self.max_count}")
        if self.max_value_wei is not None:
            total = usage.total_value + facts.value
            if total > self.max_value_wei:
                problems.append(f"{total} wei would exceed the limit of {self.max_value_wei} wei")
            else:
                findings.append(f"{total} wei is within the limit of {self.max_value_wei} wei")
        window = f"in the last {self.window_seconds} s, this request included"
        if problems:
            return ConditionTrace("velocity", False, f"{window}: {'; '.join(problems)}")
        return ConditionTrace("velocity", True, f"{window}: {'; '.join(findings)}")


@dataclass(frozen=True)
class Rule:
    """A named rule: the fields as the policy file wrote them, and the action taken when all of them match.

    ``None`` for an optional field means the policy file did not set it, so the rule does not test it.
    ``quorum``, ``lifetime_seconds`` and ``timelock_seconds`` belong to approve rules only.
    """

    name: str
    keys: frozenset[str]
    action: RuleAction
    chain_ids: frozenset[int] | None = None
    kinds: frozenset[PayloadKind] | None = None
    transaction_types: frozenset[str] | None = None
    destinations: frozenset[str] | None = None
    contracts: tuple[AllowedContract, ...] | None = None
    max_value_wei: int | None = None
    max_fee_wei: int | None = None
    velocity: VelocityLimit | None = None
    allow_replacement: bool = False
    quorum: tuple[QuorumTerm, ...] = ()
    lifetime_seconds: int | None = None
    timelock_seconds: int = 0

    def conditions(self) -> tuple[Condition, ...]:
        """The rule's conditions that need nothing but the request, in the order a trace shows them."""
        conditions: list[Condition] = [KeyCondition(self.keys)]
        if self.chain_ids is not None:
            conditions.append(ChainIdCondition(self.chain_ids))
        if self.kinds is not None:
            conditions.append(KindCondition(self.kinds))
        if self.transaction_types is not None:
            conditions.append(TransactionTypeCondition(self.transaction_types))
        if self.destinations is not None:
            conditions.append(DestinationCondition(self.destinations))
        if self.contracts is not None:
            conditions.append(ContractCondition(self.contracts))
        if self.max_value_wei is not None:
            conditions.append(MaxValueCondition(self.max_value_wei))
        if self.max_fee_wei is not None:
            conditions.append(MaxFeeCondition(self.max_fee_wei))
        return tuple(conditions)

    def check(self, facts: RequestFacts, velocity: VelocityLookup | None = None) -> RuleTrace:
        # Every condition is checked, not only up to the first failure, so an explanation lists all the
        # reasons a rule did not match.
        outcomes = [condition.check(facts) for condition in self.conditions()]
        # Only a replacement is tested against allow_replacement; for every other request the condition would
        # say nothing, so it stays out of the trace.
        if facts.replacement:
            outcomes.append(ReplacementCondition(self.allow_replacement).check(facts))
        if self.velocity is not None:
            if velocity is None:
                raise InternalError(
                    f"rule {self.name!r} has a velocity limit but the key's usage was not supplied"
                )
            outcomes.append(
                self.velocity.check(facts, velocity(facts.key_label, self.velocity.window_seconds))
            )
        return RuleTrace(self.name, all(outcome.matched for outcome in outcomes), tuple(outcomes))

    def decide(self, policy_version: int) -> Decision:
        if self.action is RuleAction.SIGN:
            return Decision("sign", self.name, f"rule {self.name!r} allows this request", policy_version)
        if self.action is RuleAction.APPROVE:
            quorum = " AND ".join(term.describe() for term in self.quorum)
            return Decision(
                "approve",
                self.name,
                f"rule {self.name!r} needs approval by {quorum}",
                policy_version,
                quorum=self.quorum,
                timelock_seconds=self.timelock_seconds,
            )
        return Decision("deny", self.name, f"rule {self.name!r} denies this request", policy_version)


@dataclass(frozen=True)
class Policy:
    version: int
    rules: tuple[Rule, ...]
    approvers: Mapping[str, Approver]
    admin_quorum: tuple[QuorumTerm, ...] = ()
    security_groups: frozenset[str] = DEFAULT_SECURITY_GROUPS

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str) -> Policy:
        """Build a policy from a parsed document, refusing anything it does not understand.

        Raises ConfigurationError whose message names ``source``, the rule (or approver) and the field at fault.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{source}: a policy must be a table, got {_type_name(data)}")
        unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
        if unknown:
            allowed = _quoted_list(sorted(_TOP_LEVEL_KEYS))
            raise ConfigurationError(
                f"{source}: unknown top-level key {_quoted_list(unknown)}; allowed are {allowed}"
            )
        version = _parse_version(data, source)
        approvers = _parse_approvers(data, source)
        group_members = _group_members(approvers)
        admin_quorum, security_groups = _parse_admin(data, source, group_members)
        rules = _parse_rules(data, source, group_members)
        return cls(
            version=version,
            rules=rules,
            approvers=approvers,
            admin_quorum=admin_quorum,
            security_groups=security_groups,
        )

    def evaluate(self, facts: RequestFacts, velocity: VelocityLookup | None = None) -> Evaluation:
        """Decide a request: the first matching rule's action, or deny when no rule matches.

        ``velocity`` looks up a key's usage in a window; it is called once per window length, and only when a
        rule with a velocity limit is tried (evaluation raises InternalError if such a rule is reached without
        it, rather than guessing the usage).
        """
        cached_velocity = _cached_per_window(velocity) if velocity is not None else None
        traces: list[RuleTrace] = []
        freeze_reason = ""
        for rule in self.rules:
            trace = rule.check(facts, cached_velocity)
            traces.append(trace)
            if not freeze_reason and _failed_only_on_velocity(rule, trace):
                freeze_reason = f"rule {rule.name!r}: velocity limit hit on key {facts.key_label!r}"
            if trace.matched:
                lifetime = rule.lifetime_seconds if rule.action is RuleAction.APPROVE else None
                return Evaluation(
                    rule.decide(self.version),
                    tuple(traces),
                    freeze_key=bool(freeze_reason),
                    freeze_reason=freeze_reason,
                    lifetime_seconds=lifetime,
                )
        return Evaluation(
            Decision("deny", None, _no_match_reason(facts, self.rules, traces), self.version),
            tuple(traces),
            freeze_key=bool(freeze_reason),
            freeze_reason=freeze_reason,
        )

    def governance_decision(self) -> Decision:
        """The decision for a policy change or an unfreeze: the admin quorum of this policy.

        A policy without approvers has no admin quorum; such a change is denied outright rather than left
        pending forever for approvals nobody can give.
        """
        if not self.admin_quorum:
            return Decision("deny", "admin", NO_ADMIN_QUORUM_REASON, self.version)
        return Decision("approve", "admin", GOVERNANCE_REASON, self.version, quorum=self.admin_quorum)

    def key_labels(self) -> frozenset[str]:
        """Every key label some rule names."""
        return frozenset(label for rule in self.rules for label in rule.keys)

    def unknown_key_labels(self, known: frozenset[str]) -> frozenset[str]:
        """The key labels rules name that are not in ``known`` (the keys custody holds)."""
        return self.key_labels() - known

    def group_members(self) -> dict[str, frozenset[str]]:
        """Each group the approvers list, with its members' ids."""
        return _group_members(self.approvers)

    def approver(self, approver_id: str) -> Approver | None:
        return self.approvers.get(approver_id)

    def is_security(self, approver_id: str) -> bool:
        """Whether the approver may freeze keys alone: a member of one of the security groups."""
        approver = self.approvers.get(approver_id)
        return approver is not None and bool(approver.groups & self.security_groups)


def _no_match_reason(facts: RequestFacts, rules: Sequence[Rule], traces: Sequence[RuleTrace]) -> str:
    """The deny-by-default reason, naming what stopped the rules written for the request's key.

    The requester sees the reason with the denial, so a cap that was hit (value, fee, velocity) is plain
    without a second look at ``policy explain``. Rules for other keys are left out: that they name another key
    says nothing useful.
    """
    misses = [
        f"rule {trace.rule!r} did not match: "
        + "; ".join(outcome.detail for outcome in trace.conditions if not outcome.matched)
        for rule, trace in zip(rules, traces, strict=True)
        if facts.key_label in rule.keys
    ]
    if not misses:
        return NO_MATCH_REASON
    shown = misses[:MAX_RULES_IN_REASON]
    if len(misses) > len(shown):
        shown.append(f"and {len(misses) - len(shown)} more rules (see policy explain)")
    return f"{NO_MATCH_REASON}; " + "; ".join(shown)


def _wei_text(wei: int) -> str:
    return f"{wei} wei ({format_ether(wei)} ether)"


def _cached_per_window(velocity: VelocityLookup) -> VelocityLookup:
    # Several rules may limit the same window; one evaluation asks the store about each window once.
    usage_by_window: dict[tuple[str, int], VelocityUsage] = {}

    def lookup(key_label: str, window_seconds: int) -> VelocityUsage:
        if (key_label, window_seconds) not in usage_by_window:
            usage_by_window[key_label, window_seconds] = velocity(key_label, window_seconds)
        return usage_by_window[key_label, window_seconds]

    return lookup


def _failed_only_on_velocity(rule: Rule, trace: RuleTrace) -> bool:
    if rule.velocity is None or not rule.velocity.freeze_on_breach or trace.matched:
        return False
    return all(outcome.matched for outcome in trace.conditions if outcome.condition != "velocity")


def _group_members(approvers: Mapping[str, Approver]) -> dict[str, frozenset[str]]:
    members: dict[str, set[str]] = {}
    for approver in approvers.values():
        for group in approver.groups:
            members.setdefault(group, set()).add(approver.id)
    return {group: frozenset(ids) for group, ids in members.items()}


# ------------------------------------------------------------------------------------------------------------
# Trace serialization, for requests that keep their evaluation for ``policy explain``.


def trace_to_json(trace: tuple[RuleTrace, ...]) -> str:
    """Compact JSON with sorted keys: ``{"rules": [{"rule", "matched", "conditions": [...]}]}``."""
    document = {
        "rules": [
            {
                "rule": rule.rule,
                "matched": rule.matched,
                "conditions": [
                    {"condition": c.condition, "matched": c.matched, "detail": c.detail}
                    for c in rule.conditions
                ],
            }
            for rule in trace
        ]
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def trace_from_json(text: str) -> tuple[RuleTrace, ...]:
    """Read back what ``trace_to_json`` wrote; anything else raises InvalidInput."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"a policy trace must be JSON: {error}") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"rules"}
        or not isinstance(document["rules"], list)
    ):
        raise InvalidInput('a policy trace must be an object with one key "rules" holding a list')
    return tuple(_rule_trace_from_json(item) for item in document["rules"])


def _rule_trace_from_json(item: Any) -> RuleTrace:
    if (
        not isinstance(item, dict)
        or set(item) != {"rule", "matched", "conditions"}
        or not isinstance(item["rule"], str)
        or not isinstance(item["matched"], bool)
        or not isinstance(item["conditions"], list)
    ):
        raise InvalidInput(f"a policy trace rule must have rule, matched and conditions; got {item!r:.200}")
    return RuleTrace(
        item["rule"], item["matched"], tuple(_condition_from_json(c) for c in item["conditions"])
    )


def _condition_from_json(item: Any) -> ConditionTrace:
    if (
        not isinstance(item, dict)
        or set(item) != {"condition", "matched", "detail"}
        or not isinstance(item["condition"], str)
        or not isinstance(item["matched"], bool)
        or not isinstance(item["detail"], str)
    ):
        raise InvalidInput(
            f"a policy trace condition must have condition, matched and detail; got {item!r:.200}"
        )
    return ConditionTrace(item["condition"], item["matched"], item["detail"])


# ------------------------------------------------------------------------------------------------------------
# Parsing and validation.


class _FailFactory(Protocol):
    def __call__(self, field: str, problem: str) -> ConfigurationError: ...


def _parse_version(data: Mapping[str, Any], source: str) -> int:
    if "version" not in data:
        raise ConfigurationError(f"{source}: version: is required (a positive integer)")
    version = data["version"]
    if not _is_int(version) or version <= 0:
        raise ConfigurationError(f"{source}: version: must be a positive integer, got {version!r}")
    return int(version)


def _parse_approvers(data: Mapping[str, Any], source: str) -> dict[str, Approver]:
    raw_approvers = data.get("approvers", {})
    if not isinstance(raw_approvers, Mapping):
        raise ConfigurationError(
            f"{source}: approvers: must be a table of [approvers.ID] tables, got {_type_name(raw_approvers)}"
        )
    approvers: dict[str, Approver] = {}
    owner_by_public_key: dict[bytes, str] = {}
    for approver_id, raw in raw_approvers.items():
        if not _APPROVER_ID_PATTERN.fullmatch(approver_id):
            raise ConfigurationError(
                f"{source}: approvers: {approver_id!r} is not a valid approver id (1 to 64 letters, digits,"
                " '.', '_', '@' or '-', starting with a letter or digit; it must equal the approver's"
                " certificate common name)"
            )
        where = f"{source}: approver {approver_id!r}"

        def fail(field: str, problem: str, where: str = where) -> ConfigurationError:
            return ConfigurationError(f"{where}: {field}: {problem}")

        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"{where}: must be a table, got {_type_name(raw)}")
        unknown = sorted(set(raw) - _APPROVER_KEYS)
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown key {_quoted_list(unknown)}; allowed are {_quoted_list(sorted(_APPROVER_KEYS))}"
            )
        if "public_key" not in raw:
            raise fail("public_key", "is required (the raw Ed25519 public key as 64 hex digits)")
        public_key = _parse_public_key(raw["public_key"], fail)
        if public_key in owner_by_public_key:
            raise fail("public_key", f"is the same key as approver {owner_by_public_key[public_key]!r}'s")
        owner_by_public_key[public_key] = approver_id
        if "groups" not in raw:
            raise fail("groups", "is required (a non-empty list of group names)")
        groups = _parse_string_set(raw["groups"], "groups", "group names", fail)
        for group in sorted(groups):
            if not _GROUP_NAME_PATTERN.fullmatch(group):
                raise fail(
                    "groups",
                    f"{group!r} is not a valid group name (1 to 63 lowercase letters, digits, '.', '_' or '-')",
                )
        approvers[approver_id] = Approver(id=approver_id, public_key=public_key, groups=groups)
    return approvers


def _parse_public_key(value: Any, fail: _FailFactory) -> bytes:
    if not isinstance(value, str) or not _PUBLIC_KEY_PATTERN.fullmatch(value):
        shown = value[:80] if isinstance(value, str) else value
        raise fail("public_key", f"must be 64 hex digits (a raw 32-byte Ed25519 public key), got {shown!r}")
    raw = bytes.fromhex(value)
    problem = ed25519_public_key_problem(raw)
    if problem is not None:
        raise fail("public_key", problem)
    return raw


def _parse_admin(
    data: Mapping[str, Any], source: str, group_members: Mapping[str, frozenset[str]]
) -> tuple[tuple[QuorumTerm, ...], frozenset[str]]:
    def fail(field: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{source}: admin: {field}: {problem}")

    raw = data.get("admin")
    if raw is None:
        # Without approvers nobody could approve a change anyway; with them, a missing admin quorum would
        # leave the policy with no way to change it, which is almost surely an oversight.
        if group_members:
            raise ConfigurationError(
                f"{source}: admin: is required when the policy names approvers, e.g."
                ' [admin] quorum = [{ group = "admins", threshold = 2 }]'
            )
        return (), DEFAULT_SECURITY_GROUPS
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{source}: admin: must be a table, got {_type_name(raw)}")
    unknown = sorted(set(raw) - _ADMIN_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{source}: admin: unknown key {_quoted_list(unknown)}; allowed are {_quoted_list(sorted(_ADMIN_KEYS))}"
        )
    if "quorum" not in raw:
        raise fail("quorum", 'is required, e.g. quorum = [{ group = "admins", threshold = 2 }]')
    quorum = _parse_quorum(raw["quorum"], group_members, fail)
    security_groups = DEFAULT_SECURITY_GROUPS
    if "security_groups" in raw:
        security_groups = _parse_string_set(raw["security_groups"], "security_groups", "group names", fail)
        for group in sorted(security_groups):
            if group not in group_members:
                raise fail("security_groups", _unknown_group_problem(group, group_members))
    return quorum, security_groups


def _parse_quorum(
    value: Any, group_members: Mapping[str, frozenset[str]], fail: _FailFactory
) -> tuple[QuorumTerm, ...]:
    if not isinstance(value, list):
        raise fail("quorum", f"must be a list of {{ group, threshold }} tables, got {_type_name(value)}")
    # An empty quorum would be met by nobody or, read carelessly, by anybody; either way it is a mistake.
    if not value:
        raise fail("quorum", "must name at least one { group, threshold } term, got an empty list")
    if not group_members:
        raise fail("quorum", "the policy names no approvers; add [approvers.ID] tables with their groups")
    terms: list[QuorumTerm] = []
    for index, raw_term in enumerate(value):
        field = f"quorum[{index}]"
        if not isinstance(raw_term, Mapping):
            raise fail(field, f"must be a {{ group, threshold }} table, got {_type_name(raw_term)}")
        unknown = sorted(set(raw_term) - _QUORUM_TERM_KEYS)
        missing = sorted(_QUORUM_TERM_KEYS - set(raw_term))
        if unknown or missing:
            raise fail(field, "must have exactly the keys 'group' and 'threshold'")
        group, threshold = raw_term["group"], raw_term["threshold"]
        if not isinstance(group, str):
            raise fail(field, f"group must be a group name, got {group!r}")
        if group not in group_members:
            raise fail(field, _unknown_group_problem(group, group_members))
        if any(term.group == group for term in terms):
            raise fail(field, f"names group {group!r} twice; write one term with the combined threshold")
        size = len(group_members[group])
        if not _is_int(threshold) or threshold < 1:
            raise fail(field, f"threshold must be a positive integer, got {threshold!r}")
        if threshold > size:
            raise fail(
                field,
                f"threshold {threshold} is larger than group {group!r}, which has {size} member"
                f"{'' if size == 1 else 's'}",
            )
        terms.append(QuorumTerm(group=group, threshold=int(threshold)))
    _check_quorum_can_be_met(terms, group_members, fail)
    return tuple(terms)


def _check_quorum_can_be_met(
    terms: Sequence[QuorumTerm], group_members: Mapping[str, frozenset[str]], fail: _FailFactory
) -> None:
    """Refuse a quorum that no set of approvers could ever meet.

    Each term fits its own group, but one approver fills one seat only, so terms over overlapping groups can
    ask for more distinct people than there are: "2 of {alice, bob} AND 1 of {alice}" has three seats and two
    people to fill them. Every request under such a quorum would wait for approvals that cannot come. The
    check seats every member of the groups at once, with the same matching that counts real approvals.
    """
    everyone = {member for term in terms for member in group_members[term.group]}
    progress = quorum_progress(terms, group_members, everyone)
    if progress.met:
        return
    seats = sum(term.threshold for term in terms)
    filled = sum(len(term.counted) for term in progress.terms)
    described = " AND ".join(term.describe() for term in terms)
    raise fail(
        "quorum",
        f"{described} can never be met: one approver fills one seat only, and the members of these groups"
        f" can fill at most {filled} of its {seats} seats",
    )


def _unknown_group_problem(group: Any, group_members: Mapping[str, frozenset[str]]) -> str:
    known = _quoted_list(sorted(group_members)) or "none"
    return f"unknown group {group!r}: no approver lists it (groups are {known})"


def _parse_rules(
    data: Mapping[str, Any], source: str, group_members: Mapping[str, frozenset[str]]
) -> tuple[Rule, ...]:
    raw_rules = data.get("rules")
    # An empty policy is refused rather than read as "deny everything": it is far more often a mistake (a
    # misspelt table name, a truncated file) than an intent, and a deny rule says the intent plainly.
    if raw_rules is None:
        raise ConfigurationError(f"{source}: rules: a policy needs at least one [[rules]] entry")
    if not isinstance(raw_rules, list):
        raise ConfigurationError(f"{source}: rules: must be an array of tables, got {_type_name(raw_rules)}")
    if not raw_rules:
        raise ConfigurationError(f"{source}: rules: a policy needs at least one [[rules]] entry")
    rules: list[Rule] = []
    first_index_by_name: dict[str, int] = {}
    for index, raw_rule in enumerate(raw_rules):
        rule = _parse_rule(raw_rule, index, source, group_members)
        if rule.name in first_index_by_name:
            raise ConfigurationError(
                f"{source}: rule {rule.name!r} (rules[{index}]): name: duplicates the name of"
                f" rules[{first_index_by_name[rule.name]}]; rule names must be unique"
            )
        first_index_by_name[rule.name] = index
        rules.append(rule)
    return tuple(rules)


def _parse_rule(raw_rule: Any, index: int, source: str, group_members: Mapping[str, frozenset[str]]) -> Rule:
    if not isinstance(raw_rule, Mapping):
        raise ConfigurationError(f"{source}: rules[{index}]: must be a table, got {_type_name(raw_rule)}")
    name = _parse_rule_name(raw_rule, index, source)
    where = f"{source}: rule {name!r} (rules[{index}])"

    def fail(field: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{where}: {field}: {problem}")

    unknown = sorted(set(raw_rule) - _RULE_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key {_quoted_list(unknown)}; allowed are {_quoted_list(sorted(_RULE_KEYS))}"
        )

    if "keys" not in raw_rule:
        raise fail("keys", "is required (a non-empty list of key labels)")
    keys = _parse_string_set(raw_rule["keys"], "keys", "key labels", fail)
    for label in keys:
        try:
            validate_key_label(label)
        except InvalidInput as error:
            raise fail("keys", f"{label!r} is not a valid key label") from error

    allowed_actions = [action.value for action in RuleAction]
    if "action" not in raw_rule:
        raise fail("action", f"is required ({_quoted_list(allowed_actions)})")
    action_text = raw_rule["action"]
    if not isinstance(action_text, str) or action_text not in allowed_actions:
        raise fail("action", f"must be one of {_quoted_list(allowed_actions)}, got {action_text!r}")
    action = RuleAction(action_text)

    chain_ids = None
    if "chain_ids" in raw_rule:
        chain_ids = _parse_chain_ids(raw_rule["chain_ids"], fail)

    kinds = None
    if "kinds" in raw_rule:
        kind_names = _parse_string_set(raw_rule["kinds"], "kinds", "payload kinds", fail)
        # Governance requests (policy changes, unfreezing) always need the admin quorum; no rule may decide
        # them, so their kinds are not offered here.
        allowed_kinds = sorted(kind.value for kind in SIGNING_KINDS)
        for kind_name in sorted(kind_names):
            if kind_name not in allowed_kinds:
                raise fail("kinds", f"unknown kind {kind_name!r}; allowed are {_quoted_list(allowed_kinds)}")
        kinds = frozenset(PayloadKind(kind_name) for kind_name in kind_names)

    transaction_types = None
    if "transaction_types" in raw_rule:
        transaction_types = _parse_string_set(
            raw_rule["transaction_types"], "transaction_types", "transaction types", fail
        )
        for type_name in sorted(transaction_types):
            if type_name not in TRANSACTION_TYPES:
                raise fail(
                    "transaction_types",
                    f"unknown transaction type {type_name!r}; allowed are {_quoted_list(TRANSACTION_TYPES)}",
                )
        # Such a rule could never match anything, which is surely not what its author meant.
        if kinds is not None and PayloadKind.TRANSACTION not in kinds:
            raise fail(
                "transaction_types",
                "only transactions can match it, but kinds does not include 'transaction'",
            )

    destinations = None
    if "destinations" in raw_rule:
        destinations = _parse_destinations(raw_rule["destinations"], fail)

    contracts = None
    if "contracts" in raw_rule:
        contracts = _parse_contracts(raw_rule["contracts"], fail)

    max_value_wei = None
    if "max_value_wei" in raw_rule:
        max_value_wei = _parse_wei(raw_rule["max_value_wei"], "max_value_wei", fail)

    max_fee_wei = None
    if "max_fee_wei" in raw_rule:
        max_fee_wei = _parse_wei(raw_rule["max_fee_wei"], "max_fee_wei", fail)
        # Only transactions pay fees, so such a rule could never match anything else.
        if kinds is not None and PayloadKind.TRANSACTION not in kinds:
            raise fail(
                "max_fee_wei", "only transactions can match it, but kinds does not include 'transaction'"
            )

    velocity = None
    if "velocity" in raw_rule:
        velocity = _parse_velocity(raw_rule["velocity"], fail)

    allow_replacement = raw_rule.get("allow_replacement", False)
    if not isinstance(allow_replacement, bool):
        raise fail("allow_replacement", f"must be true or false, got {allow_replacement!r}")

    matching: dict[str, Any] = {
        "allow_replacement": allow_replacement,
        "name": name,
        "keys": keys,
        "action": action,
        "chain_ids": chain_ids,
        "kinds": kinds,
        "transaction_types": transaction_types,
        "destinations": destinations,
        "contracts": contracts,
        "max_value_wei": max_value_wei,
        "max_fee_wei": max_fee_wei,
        "velocity": velocity,
    }
    if action is not RuleAction.APPROVE:
        for field in _APPROVE_ONLY_RULE_KEYS:
            if field in raw_rule:
                raise fail(
                    field, f'belongs to approve rules only, but this rule\'s action is "{action.value}"'
                )
        return Rule(**matching)

    if "quorum" not in raw_rule:
        raise fail(
            "quorum", 'is required for an approve rule, e.g. quorum = [{ group = "treasury", threshold = 2 }]'
        )
    quorum = _parse_quorum(raw_rule["quorum"], group_members, fail)
    lifetime = DEFAULT_LIFETIME_SECONDS
    if "lifetime_seconds" in raw_rule:
        lifetime = raw_rule["lifetime_seconds"]
        if not _is_int(lifetime) or not MIN_LIFETIME_SECONDS <= lifetime <= MAX_LIFETIME_SECONDS:
            raise fail(
                "lifetime_seconds",
                f"must be an integer from {MIN_LIFETIME_SECONDS} to {MAX_LIFETIME_SECONDS} (30 days),"
                f" got {lifetime!r}",
            )
    timelock = 0
    if "timelock_seconds" in raw_rule:
        timelock = raw_rule["timelock_seconds"]
        if not _is_int(timelock) or timelock < 0:
            raise fail("timelock_seconds", f"must be a non-negative integer, got {timelock!r}")
    # The lifetime runs from submission and the time-lock from the last approval, so a request whose time-lock
    # is as long as its lifetime would expire before it could ever be signed.
    if timelock >= lifetime:
        raise fail(
            "lifetime_seconds",
            f"{lifetime} s is not longer than the time-lock of {timelock} s, so no request could be signed"
            " before it expires",
        )
    return Rule(
        **matching,
        quorum=quorum,
        lifetime_seconds=int(lifetime),
        timelock_seconds=int(timelock),
    )


def _parse_rule_name(raw_rule: Mapping[str, Any], index: int, source: str) -> str:
    if "name" not in raw_rule:
        raise ConfigurationError(f"{source}: rules[{index}]: name: is required")
    name = raw_rule["name"]
    if not isinstance(name, str) or not _RULE_NAME_PATTERN.fullmatch(name):
        raise ConfigurationError(
            f"{source}: rules[{index}]: name: must be lowercase letters, digits, '.', '_' or '-', starting"
            f" with a letter or digit; got {name!r}"
        )
    return name


def _parse_string_set(value: Any, field: str, what: str, fail: _FailFactory) -> frozenset[str]:
    """A non-empty list of distinct strings, read from the field ``field``."""
    if not isinstance(value, list):
        raise fail(field, f"must be a list of {what}, got {_type_name(value)}")
    if not value:
        raise fail(field, f"must list at least one of the {what}, got an empty list")
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise fail(field, f"must be a list of {what} (strings), got {item!r}")
        if item in seen:
            raise fail(field, f"lists {item!r} twice")
        seen.add(item)
    return frozenset(seen)


def _parse_chain_ids(value: Any, fail: _FailFactory) -> frozenset[int]:
    if not isinstance(value, list):
        raise fail("chain_ids", f"must be a list of chain ids, got {_type_name(value)}")
    if not value:
        raise fail("chain_ids", "must list at least one chain id, got an empty list")
    seen: set[int] = set()
    for item in value:
        if not _is_int(item):
            raise fail("chain_ids", f"must be a list of integers, got {item!r}")
        if not 0 < item <= UINT256_MAX:
            raise fail("chain_ids", f"a chain id must be between 1 and 2**256-1, got {item}")
        if item in seen:
            raise fail("chain_ids", f"lists {item} twice")
        seen.add(item)
    return frozenset(seen)


def _parse_address(value: Any, field: str, fail: _FailFactory) -> str:
    try:
        return checksum_address(value, field)
    except InvalidInput as error:
        # checksum_address names the field itself; the policy's message names the rule before it.
        raise fail(field, error.message.removeprefix(f"{field}: ")) from None


def _parse_destinations(value: Any, fail: _FailFactory) -> frozenset[str]:
    if not isinstance(value, list):
        raise fail("destinations", f"must be a list of addresses, got {_type_name(value)}")
    if not value:
        raise fail("destinations", "must list at least one address, got an empty list")
    seen: set[str] = set()
    for item in value:
        address = _parse_address(item, "destinations", fail)
        if address in seen:
            raise fail("destinations", f"lists {address} twice")
        seen.add(address)
    return frozenset(seen)


def _parse_contracts(value: Any, fail: _FailFactory) -> tuple[AllowedContract, ...]:
    if not isinstance(value, list):
        raise fail("contracts", f"must be a list of {{ address, selectors }} tables, got {_type_name(value)}")
    if not value:
        raise fail("contracts", "must list at least one { address, selectors } table, got an empty list")
    contracts: list[AllowedContract] = []
    for index, raw in enumerate(value):
        field = f"contracts[{index}]"
        if not isinstance(raw, Mapping):
            raise fail(field, f"must be a {{ address, selectors }} table, got {_type_name(raw)}")
        if set(raw) != _CONTRACT_KEYS:
            raise fail(field, "must have exactly the keys 'address' and 'selectors'")
        address = _parse_address(raw["address"], f"{field}.address", fail)
        if any(contract.address == address for contract in contracts):
            raise fail(field, f"lists contract {address} twice; put all its selectors in one entry")
        selector_texts = _parse_string_set(raw["selectors"], f"{field}.selectors", "function selectors", fail)
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


def _parse_velocity(value: Any, fail: _FailFactory) -> VelocityLimit:
    if not isinstance(value, Mapping):
        raise fail("velocity", f"must be a table, got {_type_name(value)}")
    unknown = sorted(set(value) - _VELOCITY_KEYS)
    if unknown:
        raise fail(
            "velocity",
            f"unknown key {_quoted_list(unknown)}; allowed are {_quoted_list(sorted(_VELOCITY_KEYS))}",
        )
    window: Any = value.get("window_seconds")
    if not _is_int(window) or not 1 <= window <= MAX_VELOCITY_WINDOW_SECONDS:
        raise fail(
            "velocity.window_seconds",
            f"is required: an integer from 1 to {MAX_VELOCITY_WINDOW_SECONDS} (366 days), got {window!r}",
        )
    if "max_value_wei" not in value and "max_count" not in value:
        raise fail("velocity", "must set max_value_wei, max_count or both; a window alone limits nothing")
    max_value = None
    if "max_value_wei" in value:
        max_value = _parse_wei(value["max_value_wei"], "velocity.max_value_wei", fail)
    max_count = None
    if "max_count" in value:
        max_count = value["max_count"]
        if not _is_int(max_count) or max_count < 1:
            raise fail("velocity.max_count", f"must be a positive integer, got {max_count!r}")
    freeze = value.get("freeze_on_breach", False)
    if not isinstance(freeze, bool):
        raise fail("velocity.freeze_on_breach", f"must be true or false, got {freeze!r}")
    return VelocityLimit(
        window_seconds=int(window),
        max_value_wei=max_value,
        max_count=None if max_count is None else int(max_count),
        freeze_on_breach=freeze,
    )


def _parse_wei(value: Any, field: str, fail: _FailFactory) -> int:
    # Accepting decimal strings matters because TOML integers stop at 2**63-1 (about 9.2 ether), which is
    # below many sensible caps.
    if _is_int(value):
        amount = int(value)
    elif isinstance(value, str):
        if len(value) > _MAX_DECIMAL_DIGITS or not _DECIMAL_PATTERN.fullmatch(value):
            raise fail(field, f"must be an integer or a string of decimal digits, got {value[:40]!r}")
        amount = int(value)
    else:
        raise fail(field, f"must be an integer or a string of decimal digits, got {value!r}")
    if not 0 <= amount <= UINT256_MAX:
        raise fail(field, f"must be between 0 and 2**256-1, got {amount}")
    return amount


def _is_int(value: Any) -> bool:
    # TOML booleans arrive as Python bools, which are ints; a policy that says `version = true` is a mistake.
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _quoted_list(items: Sequence[str]) -> str:
    return ", ".join(repr(item) for item in items)


# ------------------------------------------------------------------------------------------------------------
# Ed25519 public keys (RFC 8032). cryptography's Ed25519PublicKey.from_public_bytes accepts any 32 bytes, so the
# policy decodes the point itself: a key that is not a curve point can verify nothing, and a low-order key such
# as the identity lets anyone forge "signatures" that verify, which would let anyone approve as that approver.

_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = (0, 1)


def ed25519_public_key_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a usable Ed25519 public key, or None when it is one.

    Usable means a canonical encoding of a point on the curve that lies in the prime-order subgroup and is not
    the identity, which is what every honestly generated key is.
    """
    if len(raw) != 32:
        return f"an Ed25519 public key is 32 bytes, got {len(raw)}"
    point = _decode_point(raw)
    if point is None:
        return "is not the encoding of a point on the Ed25519 curve"
    if point == _IDENTITY or _multiply(_GROUP_ORDER, point) != _IDENTITY:
        return "is a weak Ed25519 key (of low order or outside the curve's prime-order group)"
    return None


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x_is_odd = raw[31] >> 7
    if y >= _P:
        return None
    x_squared = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    if x_squared == 0:
        return None if x_is_odd else (0, y)
    x = pow(x_squared, (_P + 3) // 8, _P)
    if (x * x - x_squared) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - x_squared) % _P:
        return None
    if x & 1 != x_is_odd:
        x = _P - x
    return x, y


def _add(first: tuple[int, int], second: tuple[int, int]) -> tuple[int, int]:
    # The affine twisted Edwards addition law is complete on Ed25519 (d is not a square), so no special cases.
    (x1, y1), (x2, y2) = first, second
    cross = _D * x1 * x2 * y1 * y2 % _P
    x = (x1 * y2 + x2 * y1) * pow(1 + cross, -1, _P) % _P
    y = (y1 * y2 + x1 * x2) * pow(1 - cross, -1, _P) % _P
    return x, y


def _multiply(scalar: int, point: tuple[int, int]) -> tuple[int, int]:
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result

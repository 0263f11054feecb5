"""The signing policy: which requests a key may sign.

A policy is a versioned list of rules, read from a TOML document by ``custody/policy_file.py`` and handed here
as a plain mapping, so this module does no I/O. Evaluation denies by default: the first rule whose conditions
all match decides, and when no rule matches the request is denied.

Every condition reports its outcome in a trace, so ``custody policy explain`` can show a person which rule
decided a request and why the rules before it did not match. Rules are built from small condition objects and
an action, so that later work (approver quorums, destination allowlists, velocity limits) adds conditions and
actions without changing how evaluation walks the rules.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from custody.domain.errors import ConfigurationError, InvalidInput
from custody.domain.keys import validate_key_label
from custody.domain.requests import Decision, PayloadKind

# Transactions encode chain ids and values as 256-bit unsigned integers, so nothing outside that range can
# ever be a request's chain id or value.
UINT256_MAX = 2**256 - 1

TRANSACTION_TYPES = ("legacy", "eip2930", "eip1559")

NO_MATCH_REASON = "no rule allows this request (deny by default)"

_RULE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_DECIMAL_PATTERN = re.compile(r"-?[0-9]+")
# A decimal string longer than this cannot be below 2**256 (78 digits), and refusing it early keeps int()
# from being handed arbitrarily long input.
_MAX_DECIMAL_DIGITS = 100

_TOP_LEVEL_KEYS = frozenset({"version", "rules"})
_RULE_KEYS = frozenset({"name", "keys", "chain_ids", "kinds", "transaction_types", "max_value_wei", "action"})


class RuleAction(enum.Enum):
    """What a matching rule does with a request."""

    SIGN = "sign"
    DENY = "deny"


@dataclass(frozen=True)
class RequestFacts:
    """What the policy may look at: facts the daemon derived from the parsed payload itself."""

    key_label: str
    kind: PayloadKind
    chain_id: int | None  # None for payloads that carry no chain id, such as EIP-191 messages
    transaction_type: str | None  # one of TRANSACTION_TYPES for transactions, else None
    to: str | None
    value: int  # wei moved by the request; 0 for typed data and messages


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
class Rule:
    """A named rule: the fields as the policy file wrote them, and the action taken when all of them match.

    ``None`` for an optional field means the policy file did not set it, so the rule does not test it.
    """

    name: str
    keys: frozenset[str]
    action: RuleAction
    chain_ids: frozenset[int] | None = None
    kinds: frozenset[PayloadKind] | None = None
    transaction_types: frozenset[str] | None = None
    max_value_wei: int | None = None

    def conditions(self) -> tuple[Condition, ...]:
        """The rule's conditions in the order a trace shows them."""
        conditions: list[Condition] = [KeyCondition(self.keys)]
        if self.chain_ids is not None:
            conditions.append(ChainIdCondition(self.chain_ids))
        if self.kinds is not None:
            conditions.append(KindCondition(self.kinds))
        if self.transaction_types is not None:
            conditions.append(TransactionTypeCondition(self.transaction_types))
        if self.max_value_wei is not None:
            conditions.append(MaxValueCondition(self.max_value_wei))
        return tuple(conditions)

    def check(self, facts: RequestFacts) -> RuleTrace:
        # Every condition is checked, not only up to the first failure, so an explanation lists all the
        # reasons a rule did not match.
        outcomes = tuple(condition.check(facts) for condition in self.conditions())
        return RuleTrace(self.name, all(outcome.matched for outcome in outcomes), outcomes)

    def decide(self, policy_version: int) -> Decision:
        if self.action is RuleAction.SIGN:
            return Decision("sign", self.name, f"rule {self.name!r} allows this request", policy_version)
        return Decision("deny", self.name, f"rule {self.name!r} denies this request", policy_version)


@dataclass(frozen=True)
class Policy:
    version: int
    rules: tuple[Rule, ...]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str) -> Policy:
        """Build a policy from a parsed document, refusing anything it does not understand.

        Raises ConfigurationError whose message names ``source``, the rule and the field at fault.
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
        rules = _parse_rules(data, source)
        return cls(version=version, rules=rules)

    def evaluate(self, facts: RequestFacts) -> Evaluation:
        """Decide a request: the first matching rule's action, or deny when no rule matches."""
        traces: list[RuleTrace] = []
        for rule in self.rules:
            trace = rule.check(facts)
            traces.append(trace)
            if trace.matched:
                return Evaluation(rule.decide(self.version), tuple(traces))
        return Evaluation(Decision("deny", None, NO_MATCH_REASON, self.version), tuple(traces))

    def key_labels(self) -> frozenset[str]:
        """Every key label some rule names."""
        return frozenset(label for rule in self.rules for label in rule.keys)


def _parse_version(data: Mapping[str, Any], source: str) -> int:
    if "version" not in data:
        raise ConfigurationError(f"{source}: version: is required (a positive integer)")
    version = data["version"]
    if not _is_int(version) or version <= 0:
        raise ConfigurationError(f"{source}: version: must be a positive integer, got {version!r}")
    return int(version)


def _parse_rules(data: Mapping[str, Any], source: str) -> tuple[Rule, ...]:
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
        rule = _parse_rule(raw_rule, index, source)
        if rule.name in first_index_by_name:
            raise ConfigurationError(
                f"{source}: rule {rule.name!r} (rules[{index}]): name: duplicates the name of"
                f" rules[{first_index_by_name[rule.name]}]; rule names must be unique"
            )
        first_index_by_name[rule.name] = index
        rules.append(rule)
    return tuple(rules)


def _parse_rule(raw_rule: Any, index: int, source: str) -> Rule:
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

    if "action" not in raw_rule:
        raise fail("action", 'is required ("sign" or "deny")')
    action_text = raw_rule["action"]
    allowed_actions = [action.value for action in RuleAction]
    if not isinstance(action_text, str) or action_text not in allowed_actions:
        raise fail("action", f"must be one of {_quoted_list(allowed_actions)}, got {action_text!r}")

    chain_ids = None
    if "chain_ids" in raw_rule:
        chain_ids = _parse_chain_ids(raw_rule["chain_ids"], fail)

    kinds = None
    if "kinds" in raw_rule:
        kind_names = _parse_string_set(raw_rule["kinds"], "kinds", "payload kinds", fail)
        allowed_kinds = [kind.value for kind in PayloadKind]
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

    max_value_wei = None
    if "max_value_wei" in raw_rule:
        max_value_wei = _parse_wei(raw_rule["max_value_wei"], fail)

    return Rule(
        name=name,
        keys=keys,
        action=RuleAction(action_text),
        chain_ids=chain_ids,
        kinds=kinds,
        transaction_types=transaction_types,
        max_value_wei=max_value_wei,
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


class _FailFactory(Protocol):
    def __call__(self, field: str, problem: str) -> ConfigurationError: ...


def _parse_string_set(value: Any, field: str, what: str, fail: _FailFactory) -> frozenset[str]:
    """A non-empty list of distinct strings, read from the rule field ``field``."""
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


def _parse_wei(value: Any, fail: _FailFactory) -> int:
    # Accepting decimal strings matters because TOML integers stop at 2**63-1 (about 9.2 ether), which is
    # below many sensible caps.
    if _is_int(value):
        amount = int(value)
    elif isinstance(value, str):
        if len(value) > _MAX_DECIMAL_DIGITS or not _DECIMAL_PATTERN.fullmatch(value):
            raise fail("max_value_wei", f"must be an integer or a string of decimal digits, got {value!r}")
        amount = int(value)
    else:
        raise fail("max_value_wei", f"must be an integer or a string of decimal digits, got {value!r}")
    if not 0 <= amount <= UINT256_MAX:
        raise fail("max_value_wei", f"must be between 0 and 2**256-1, got {amount}")
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

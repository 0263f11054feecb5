"""Reading a policy document: its version, the admin section and the rules.

The document arrives as a plain mapping (``custody/policy_file.py`` reads the TOML), so nothing here does I/O.
Every problem is a ConfigurationError whose message names the source, the rule (or approver) and the field.
Approvers are read in ``approvers.py``, quorums in ``quorums.py``, and each condition of a rule by its own
module, found through ``conditions.CONDITION_TYPES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from custody.domain.errors import ConfigurationError
from custody.domain.policy.conditions import CONDITION_TYPES, Condition, RuleTable
from custody.domain.policy.fields import FailFactory, is_int, parse_string_set, quoted_list, type_name
from custody.domain.policy.quorums import parse_quorum, unknown_group_problem
from custody.domain.policy.rules import Rule
from custody.domain.requests import DecisionAction, QuorumTerm

DEFAULT_LIFETIME_SECONDS = 86_400
MIN_LIFETIME_SECONDS = 60
MAX_LIFETIME_SECONDS = 30 * 86_400
DEFAULT_SECURITY_GROUPS = frozenset({"security"})

TOP_LEVEL_KEYS = frozenset({"version", "approvers", "admin", "rules"})
_ADMIN_KEYS = frozenset({"quorum", "security_groups"})
_APPROVE_ONLY_RULE_KEYS = ("quorum", "lifetime_seconds", "timelock_seconds")
_RULE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def parse_version(data: Mapping[str, Any], source: str) -> int:
    if "version" not in data:
        raise ConfigurationError(f"{source}: version: is required (a positive integer)")
    version = data["version"]
    if not is_int(version) or version <= 0:
        raise ConfigurationError(f"{source}: version: must be a positive integer, got {version!r}")
    return int(version)


def parse_admin(
    data: Mapping[str, Any], source: str, group_members: Mapping[str, frozenset[str]]
) -> tuple[tuple[QuorumTerm, ...], frozenset[str]]:
    """The ``[admin]`` table: the quorum that governs changes to custody, and the security groups."""

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
        raise ConfigurationError(f"{source}: admin: must be a table, got {type_name(raw)}")
    unknown = sorted(set(raw) - _ADMIN_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{source}: admin: unknown key {quoted_list(unknown)}; allowed are {quoted_list(sorted(_ADMIN_KEYS))}"
        )
    if "quorum" not in raw:
        raise fail("quorum", 'is required, e.g. quorum = [{ group = "admins", threshold = 2 }]')
    quorum = parse_quorum(raw["quorum"], group_members, fail)
    security_groups = DEFAULT_SECURITY_GROUPS
    if "security_groups" in raw:
        security_groups = parse_string_set(raw["security_groups"], "security_groups", "group names", fail)
        for group in sorted(security_groups):
            if group not in group_members:
                raise fail("security_groups", unknown_group_problem(group, group_members))
    return quorum, security_groups


def parse_rules(
    data: Mapping[str, Any], source: str, group_members: Mapping[str, frozenset[str]]
) -> tuple[Rule, ...]:
    raw_rules = data.get("rules")
    # An empty policy is refused rather than read as "deny everything": it is far more often a mistake (a
    # misspelt table name, a truncated file) than an intent, and a deny rule says the intent plainly.
    if raw_rules is None:
        raise ConfigurationError(f"{source}: rules: a policy needs at least one [[rules]] entry")
    if not isinstance(raw_rules, list):
        raise ConfigurationError(f"{source}: rules: must be an array of tables, got {type_name(raw_rules)}")
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
        raise ConfigurationError(f"{source}: rules[{index}]: must be a table, got {type_name(raw_rule)}")
    name = _parse_rule_name(raw_rule, index, source)
    where = f"{source}: rule {name!r} (rules[{index}])"

    def fail(field: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{where}: {field}: {problem}")

    # A rule's own keys and every key a registered condition reads; anything else is refused.
    allowed = {"name", "action", *_APPROVE_ONLY_RULE_KEYS}
    allowed.update(field for condition_type in CONDITION_TYPES for field in condition_type.TOML_FIELDS)
    unknown = sorted(set(raw_rule) - allowed)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key {quoted_list(unknown)}; allowed are {quoted_list(sorted(allowed))}"
        )
    action = _parse_action(raw_rule, fail)
    conditions: list[Condition] = []
    for condition_type in CONDITION_TYPES:
        condition = condition_type.parse(RuleTable(raw_rule, fail, tuple(conditions)))
        if condition is not None:
            conditions.append(condition)

    if action is not DecisionAction.APPROVE:
        for field in _APPROVE_ONLY_RULE_KEYS:
            if field in raw_rule:
                raise fail(
                    field, f'belongs to approve rules only, but this rule\'s action is "{action.value}"'
                )
        return Rule(name, action, tuple(conditions))

    if "quorum" not in raw_rule:
        raise fail(
            "quorum", 'is required for an approve rule, e.g. quorum = [{ group = "treasury", threshold = 2 }]'
        )
    quorum = parse_quorum(raw_rule["quorum"], group_members, fail)
    lifetime = DEFAULT_LIFETIME_SECONDS
    if "lifetime_seconds" in raw_rule:
        lifetime = raw_rule["lifetime_seconds"]
        if not is_int(lifetime) or not MIN_LIFETIME_SECONDS <= lifetime <= MAX_LIFETIME_SECONDS:
            raise fail(
                "lifetime_seconds",
                f"must be an integer from {MIN_LIFETIME_SECONDS} to {MAX_LIFETIME_SECONDS} (30 days),"
                f" got {lifetime!r}",
            )
    timelock = 0
    if "timelock_seconds" in raw_rule:
        timelock = raw_rule["timelock_seconds"]
        if not is_int(timelock) or timelock < 0:
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
        name,
        action,
        tuple(conditions),
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


def _parse_action(raw_rule: Mapping[str, Any], fail: FailFactory) -> DecisionAction:
    allowed_actions = [action.value for action in DecisionAction]
    if "action" not in raw_rule:
        raise fail("action", f"is required ({quoted_list(allowed_actions)})")
    action_text = raw_rule["action"]
    if not isinstance(action_text, str) or action_text not in allowed_actions:
        raise fail("action", f"must be one of {quoted_list(allowed_actions)}, got {action_text!r}")
    return DecisionAction(action_text)

"""The Policy: one versioned policy document, read from its parsed TOML and asked about requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from custody.domain.errors import ConfigurationError
from custody.domain.policy.approvers import Approver, members_by_group, parse_approvers
from custody.domain.policy.evaluation import Evaluation, evaluate_rules
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import quoted_list, type_name
from custody.domain.policy.parsing import (
    DEFAULT_SECURITY_GROUPS,
    TOP_LEVEL_KEYS,
    parse_admin,
    parse_rules,
    parse_version,
)
from custody.domain.policy.rules import Rule
from custody.domain.requests import Decision, DecisionAction, QuorumTerm

GOVERNANCE_REASON = "changes to custody need the admin quorum"
NO_ADMIN_QUORUM_REASON = (
    "the policy in force names no approvers, so custody cannot be changed by quorum; change the bootstrap"
    " policy file instead"
)


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
            raise ConfigurationError(f"{source}: a policy must be a table, got {type_name(data)}")
        unknown = sorted(set(data) - TOP_LEVEL_KEYS)
        if unknown:
            allowed = quoted_list(sorted(TOP_LEVEL_KEYS))
            raise ConfigurationError(
                f"{source}: unknown top-level key {quoted_list(unknown)}; allowed are {allowed}"
            )
        version = parse_version(data, source)
        approvers = parse_approvers(data, source)
        members = members_by_group(approvers)
        admin_quorum, security_groups = parse_admin(data, source, members)
        rules = parse_rules(data, source, members)
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
        return evaluate_rules(self.rules, self.version, facts, velocity)

    def governance_decision(self) -> Decision:
        """The decision for a policy change or an unfreeze: the admin quorum of this policy.

        A policy without approvers has no admin quorum; such a change is denied outright rather than left
        pending forever for approvals nobody can give.
        """
        if not self.admin_quorum:
            return Decision(DecisionAction.DENY, "admin", NO_ADMIN_QUORUM_REASON, self.version)
        return Decision(
            DecisionAction.APPROVE, "admin", GOVERNANCE_REASON, self.version, quorum=self.admin_quorum
        )

    def key_labels(self) -> frozenset[str]:
        """Every key label some rule names."""
        return frozenset(label for rule in self.rules for label in rule.keys)

    def unknown_key_labels(self, known: frozenset[str]) -> frozenset[str]:
        """The key labels rules name that are not in ``known`` (the keys custody holds)."""
        return self.key_labels() - known

    def group_members(self) -> dict[str, frozenset[str]]:
        """Each group the approvers list, with its members' ids."""
        return members_by_group(self.approvers)

    def approver(self, approver_id: str) -> Approver | None:
        return self.approvers.get(approver_id)

    def is_security(self, approver_id: str) -> bool:
        """Whether the approver may freeze keys alone: a member of one of the security groups."""
        approver = self.approvers.get(approver_id)
        return approver is not None and bool(approver.groups & self.security_groups)

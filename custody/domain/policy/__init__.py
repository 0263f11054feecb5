"""The signing policy: which requests a key may sign, and who must approve the others.

A policy is a versioned document read from TOML by ``custody/policy_file.py`` and handed here as a plain
mapping, so this package does no I/O. It names approvers (id, Ed25519 public key, groups), the admin quorum
that governs changes to custody itself, and rules. Evaluation denies by default: the first rule whose
conditions all match decides (sign, deny, or approve with a quorum), and when no rule matches the request is
denied. Every condition reports its outcome in a trace, so ``custody policy explain`` can show a person which
rule decided a request and why the rules before it did not match.

The modules:

- ``document``: ``Policy``, built by ``Policy.from_mapping`` and asked with ``Policy.evaluate``;
- ``facts``: ``RequestFacts`` (what a rule may look at) and ``VelocityUsage`` (a key's recent usage);
- ``rules``: ``Rule``; ``evaluation``: walking the rules, ``Evaluation``;
- ``conditions/``: one module per condition and the registry rules find them through (its docstring says how
  to add one);
- ``trace``: ``ConditionTrace``, ``RuleTrace`` and their stored JSON form;
- ``parsing``, ``approvers``, ``quorums``, ``fields``: reading and validating the document.

Other modules import from this package, not from its modules, so the layout can change behind these names.
"""

from __future__ import annotations

from custody.domain.ed25519_points import ed25519_public_key_problem
from custody.domain.policy.approvers import Approver
from custody.domain.policy.conditions import (
    MAX_VELOCITY_WINDOW_SECONDS,
    NAMED_ONLY_KINDS,
    AllowedContract,
    AllowedTypedData,
    ChainIdCondition,
    Condition,
    ContractCondition,
    DestinationCondition,
    GovernanceTargetCondition,
    IntentCondition,
    KeyCondition,
    KindCondition,
    MaxFeeCondition,
    MaxValueCondition,
    MessageCondition,
    OperatorCondition,
    PermitHorizonCondition,
    RecipientCondition,
    RefundCondition,
    ReplacementCondition,
    RequiredIntentCondition,
    SafeCondition,
    SafeOperationCondition,
    SpenderCondition,
    TokenCap,
    TokenCapCondition,
    TokenCondition,
    TokenVelocityCondition,
    TokenVelocityLimit,
    TransactionTypeCondition,
    TypedDataCondition,
    UnlimitedApprovalCondition,
    VelocityLimit,
)
from custody.domain.policy.document import GOVERNANCE_REASON, NO_ADMIN_QUORUM_REASON, Policy
from custody.domain.policy.evaluation import MAX_RULES_IN_REASON, NO_MATCH_REASON, Evaluation
from custody.domain.policy.facts import TRANSACTION_TYPES, RequestFacts, VelocityLookup, VelocityUsage
from custody.domain.policy.fields import UINT256_MAX
from custody.domain.policy.parsing import (
    DEFAULT_LIFETIME_SECONDS,
    DEFAULT_SECURITY_GROUPS,
    MAX_LIFETIME_SECONDS,
    MIN_LIFETIME_SECONDS,
)
from custody.domain.policy.rules import Rule
from custody.domain.policy.trace import ConditionTrace, RuleTrace, trace_from_json, trace_to_json
from custody.domain.requests import DecisionAction

__all__ = [
    "DEFAULT_LIFETIME_SECONDS",
    "DEFAULT_SECURITY_GROUPS",
    "GOVERNANCE_REASON",
    "MAX_LIFETIME_SECONDS",
    "MAX_RULES_IN_REASON",
    "MAX_VELOCITY_WINDOW_SECONDS",
    "MIN_LIFETIME_SECONDS",
    "NAMED_ONLY_KINDS",
    "NO_ADMIN_QUORUM_REASON",
    "NO_MATCH_REASON",
    "TRANSACTION_TYPES",
    "UINT256_MAX",
    "AllowedContract",
    "AllowedTypedData",
    "Approver",
    "ChainIdCondition",
    "Condition",
    "ConditionTrace",
    "ContractCondition",
    "DecisionAction",
    "DestinationCondition",
    "Evaluation",
    "GovernanceTargetCondition",
    "IntentCondition",
    "KeyCondition",
    "KindCondition",
    "MaxFeeCondition",
    "MaxValueCondition",
    "MessageCondition",
    "OperatorCondition",
    "PermitHorizonCondition",
    "Policy",
    "RecipientCondition",
    "RefundCondition",
    "ReplacementCondition",
    "RequestFacts",
    "RequiredIntentCondition",
    "Rule",
    "RuleTrace",
    "SafeCondition",
    "SafeOperationCondition",
    "SpenderCondition",
    "TokenCap",
    "TokenCapCondition",
    "TokenCondition",
    "TokenVelocityCondition",
    "TokenVelocityLimit",
    "TransactionTypeCondition",
    "TypedDataCondition",
    "UnlimitedApprovalCondition",
    "VelocityLimit",
    "VelocityLookup",
    "VelocityUsage",
    "ed25519_public_key_problem",
    "trace_from_json",
    "trace_to_json",
]

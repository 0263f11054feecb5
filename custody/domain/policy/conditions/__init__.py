"""The conditions a policy rule can set, and the registry the rule parser finds them through.

Each module here holds one condition: a frozen dataclass with

- ``TOML_FIELDS``, the keys of a ``[[rules]]`` table it reads (the rule parser refuses keys no condition or
  the rule itself claims, and lists them all when it does);
- ``parse(rule)``, a classmethod that reads those keys from ``rule.raw`` and returns the condition, or None
  when the rule leaves the condition out (a condition left out is not tested); problems are raised with
  ``rule.fail(field, problem)``, which names the file and the rule;
- ``check(facts, usage)``, which returns a ``ConditionTrace`` (its name in traces, whether it matched, and a
  sentence saying why) and never raises for a request that merely does not match; it returns None to stay
  out of the trace when it has nothing to say about the request;
- a docstring for policy authors: the TOML it reads, with an example, and what it matches.

To add a condition:

1. Write ``custody/domain/policy/conditions/<name>.py`` after the pattern of the others (``max_value.py`` is
   the smallest). It looks only at ``RequestFacts``; a fact the request does not carry yet is added to
   ``RequestFacts`` and filled where the application builds the facts from the parsed payload.
2. Add the class to ``CONDITION_TYPES`` below. Its place in the tuple is its place in every trace and the
   order in which rules' fields are validated; append new conditions before ``VelocityLimit``, which needs
   the store's usage and so stays last.
3. Test it in ``tests/unit/domain/test_policy_conditions.py`` (conditions on intents in
   ``tests/unit/domain/test_policy_intents*.py``): a rule with the condition, a request that meets it, one
   that does not, and the parser's messages for malformed fields.

A condition on intents judges every intent of the request's tree (``intent_tree.placed_intents``) and asks
``intents.require_intent_kinds`` at parse time that the rule names the intent kinds it applies to; a request
custody decoded no intents from never matches it. A condition that guards every rule (it refuses something
unless the rule allows it, as ``allow_unlimited_approval`` does) is parsed for every rule and returns None for
requests it has nothing to say about, so traces of other requests do not change.

A deny rule may use only selectors, fields that name what it denies. A limit (matched by what stays within
it) would make it deny only that, and a permission (to let through what every signing rule refuses) would make
it deny less, so their parsers call ``refuse_limit_in_deny_rule`` or ``refuse_permission_in_deny_rule``
(``intent_tree``) first; ``tests/unit/domain/test_policy_intents.py`` lists which each field is, and fails
for a field it does not list.

Traces are stored with requests and read back by ``custody policy explain``, so a condition's trace name and
the wording of its details do not change once released; a new wording is a new condition.
"""

from __future__ import annotations

from custody.domain.policy.conditions.base import Condition, ConditionType, RuleTable
from custody.domain.policy.conditions.chain_ids import ChainIdCondition
from custody.domain.policy.conditions.contracts import AllowedContract, ContractCondition
from custody.domain.policy.conditions.delegates import DelegateCondition
from custody.domain.policy.conditions.destinations import DestinationCondition
from custody.domain.policy.conditions.governance_targets import GovernanceTargetCondition
from custody.domain.policy.conditions.intents import NAMED_ONLY_KINDS, IntentCondition
from custody.domain.policy.conditions.keys import KeyCondition
from custody.domain.policy.conditions.kinds import KindCondition
from custody.domain.policy.conditions.max_fee import MaxFeeCondition
from custody.domain.policy.conditions.max_value import MaxValueCondition
from custody.domain.policy.conditions.messages import MessageCondition
from custody.domain.policy.conditions.operators import OperatorCondition
from custody.domain.policy.conditions.permit_horizon import PermitHorizonCondition
from custody.domain.policy.conditions.recipients import RecipientCondition
from custody.domain.policy.conditions.refunds import RefundCondition
from custody.domain.policy.conditions.replacement import ReplacementCondition
from custody.domain.policy.conditions.required_intents import RequiredIntentCondition
from custody.domain.policy.conditions.safe_operations import SafeOperationCondition
from custody.domain.policy.conditions.safes import SafeCondition
from custody.domain.policy.conditions.spenders import SpenderCondition
from custody.domain.policy.conditions.token_caps import TokenCap, TokenCapCondition
from custody.domain.policy.conditions.token_velocity import TokenVelocityCondition, TokenVelocityLimit
from custody.domain.policy.conditions.tokens import TokenCondition
from custody.domain.policy.conditions.transaction_types import TransactionTypeCondition
from custody.domain.policy.conditions.typed_data import AllowedTypedData, TypedDataCondition
from custody.domain.policy.conditions.unlimited_approval import UnlimitedApprovalCondition
from custody.domain.policy.conditions.velocity import MAX_VELOCITY_WINDOW_SECONDS, VelocityLimit

CONDITION_TYPES: tuple[ConditionType, ...] = (
    KeyCondition,
    ChainIdCondition,
    KindCondition,
    TransactionTypeCondition,
    DestinationCondition,
    ContractCondition,
    MaxValueCondition,
    MaxFeeCondition,
    ReplacementCondition,
    # The conditions on intents. IntentCondition comes first: the others ask it which kinds the rule names.
    IntentCondition,
    RequiredIntentCondition,
    TokenCondition,
    RecipientCondition,
    SpenderCondition,
    OperatorCondition,
    DelegateCondition,
    UnlimitedApprovalCondition,
    TokenCapCondition,
    PermitHorizonCondition,
    SafeCondition,
    SafeOperationCondition,
    RefundCondition,
    GovernanceTargetCondition,
    TypedDataCondition,
    MessageCondition,
    TokenVelocityCondition,
    VelocityLimit,
)

__all__ = [
    "CONDITION_TYPES",
    "MAX_VELOCITY_WINDOW_SECONDS",
    "NAMED_ONLY_KINDS",
    "AllowedContract",
    "AllowedTypedData",
    "ChainIdCondition",
    "Condition",
    "ConditionType",
    "ContractCondition",
    "DelegateCondition",
    "DestinationCondition",
    "GovernanceTargetCondition",
    "IntentCondition",
    "KeyCondition",
    "KindCondition",
    "MaxFeeCondition",
    "MaxValueCondition",
    "MessageCondition",
    "OperatorCondition",
    "PermitHorizonCondition",
    "RecipientCondition",
    "RefundCondition",
    "ReplacementCondition",
    "RequiredIntentCondition",
    "RuleTable",
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
]

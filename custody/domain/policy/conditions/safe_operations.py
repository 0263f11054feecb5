"""``safe_operations`` and ``delegatecall_targets``: how a Safe transaction may call, and what code may be run
by DELEGATECALL in the signer's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.intents import IntentFlag, IntentKind, PartyRole
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    DENY_MATCHES_ANY_PART,
    PlacedIntent,
    denies,
    listed,
    parse_address_set,
    placed_intents,
    same_address,
)
from custody.domain.policy.conditions.intents import require_intent_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace

_OPERATIONS = ("CALL", "DELEGATECALL")
_APPLIES_TO = frozenset({IntentKind.SAFE_TRANSACTION, IntentKind.MULTISEND})


@dataclass(frozen=True)
class SafeOperationCondition:
    """``safe_operations = ["CALL", "DELEGATECALL"]`` with
    ``delegatecall_targets = ["0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"]``: a Safe transaction may use
    these operations, and a DELEGATECALL may run only the code of these contracts.

    A Safe transaction with operation DELEGATECALL runs another contract's code with the Safe's own storage
    and funds: whoever wrote that code owns the Safe (the Bybit theft of 2025 was one). So every rule allows
    only CALL unless it says otherwise, and one that allows DELEGATECALL must list the contracts it may run,
    typically Safe's MultiSendCallOnly (version 1.3.0 above; 1.4.1 is
    ``0x9641d764fc13c8B624c04430C7356C1C7C8102e2``), whose inner calls are then judged one by one. Every
    DELEGATECALL in the tree counts, an inner call of a MultiSend batch too. A rule that sets either field
    must name ``safe_transaction`` or ``multisend`` in ``intents``. For a request without a Safe transaction
    or DELEGATECALL the condition says nothing and stays out of the trace.

    In a deny rule the fields say what to deny, and the rule matches when SOME part of the request is it: a
    DELEGATECALL (to one of ``delegatecall_targets``, or to any contract when the rule lists none) when
    ``safe_operations`` names ``"DELEGATECALL"``, a Safe transaction that CALLs when it names ``"CALL"``.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("safe_operations", "delegatecall_targets")

    operations: frozenset[str]
    delegatecall_targets: frozenset[str]  # EIP-55
    # A deny rule's: match when some part of the request uses a named operation (to a listed target).
    denying: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> SafeOperationCondition | None:
        # Every rule that signs or asks for approval has this condition, because a rule that does not mention
        # operations must allow CALL only.
        if not any(field in rule.raw for field in cls.TOML_FIELDS) and denies(rule):
            return None
        operations = frozenset({"CALL"})
        if "safe_operations" in rule.raw:
            operations = parse_string_set(
                rule.raw["safe_operations"], "safe_operations", "operations", rule.fail
            )
            for operation in sorted(operations):
                if operation not in _OPERATIONS:
                    raise rule.fail(
                        "safe_operations",
                        f"unknown operation {operation!r}; allowed are {quoted_list(_OPERATIONS)}",
                    )
            require_intent_kinds(rule, "safe_operations", _APPLIES_TO)
        targets: frozenset[str] = frozenset()
        if "delegatecall_targets" in rule.raw:
            targets = parse_address_set(rule.raw["delegatecall_targets"], "delegatecall_targets", rule.fail)
            if "DELEGATECALL" not in operations:
                raise rule.fail(
                    "delegatecall_targets",
                    'lists contracts, but safe_operations does not allow "DELEGATECALL", so none could be run',
                )
        elif "DELEGATECALL" in operations and not denies(rule):
            raise rule.fail(
                "delegatecall_targets",
                'is required when safe_operations allows "DELEGATECALL": list the contracts that may be run'
                " (e.g. Safe's MultiSendCallOnly); DELEGATECALL to any contract hands it the Safe",
            )
        return cls(operations, targets, denies(rule))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        if self.denying:
            return self._check_some(placed_intents(facts.intents))
        findings: list[str] = []
        for item in placed_intents(facts.intents):
            if IntentFlag.DELEGATECALL in item.intent.flags:
                if "DELEGATECALL" not in self.operations:
                    return ConditionTrace(
                        "safe_operations",
                        False,
                        f"{item.describe()} runs code by DELEGATECALL; this rule allows only"
                        f" {quoted_list(sorted(self.operations))}",
                    )
                delegates = item.intent.parties_in(PartyRole.DELEGATE)
                if not delegates:
                    return ConditionTrace(
                        "safe_operations",
                        False,
                        f"{item.describe()} runs code by DELEGATECALL but names no delegate",
                    )
                for delegate in delegates:
                    if not same_address(delegate, self.delegatecall_targets):
                        return ConditionTrace(
                            "safe_operations",
                            False,
                            f"{item.describe()} runs {delegate} by DELEGATECALL, which is not in"
                            f" {listed(self.delegatecall_targets)}",
                        )
                findings.append(
                    f"{item.describe()} runs {', '.join(delegates)} by DELEGATECALL, which is allowed"
                )
            elif item.intent.kind is IntentKind.SAFE_TRANSACTION:
                if "CALL" not in self.operations:
                    return ConditionTrace(
                        "safe_operations",
                        False,
                        f"{item.describe()} is a CALL; this rule allows only {quoted_list(sorted(self.operations))}",
                    )
                findings.append(f"{item.describe()} is a CALL")
        if not findings:
            return None
        return ConditionTrace("safe_operations", True, "; ".join(findings))

    def _check_some(self, placed: list[PlacedIntent]) -> ConditionTrace:
        for item in placed:
            if IntentFlag.DELEGATECALL in item.intent.flags:
                if "DELEGATECALL" not in self.operations:
                    continue
                delegates = item.intent.parties_in(PartyRole.DELEGATE)
                named = [d for d in delegates if same_address(d, self.delegatecall_targets)]
                if not self.delegatecall_targets or named or not delegates:
                    run = ", ".join(named or delegates) or "code it does not name"
                    return ConditionTrace(
                        "safe_operations",
                        True,
                        f"{item.describe()} runs {run} by DELEGATECALL ({DENY_MATCHES_ANY_PART})",
                    )
            elif item.intent.kind is IntentKind.SAFE_TRANSACTION and "CALL" in self.operations:
                return ConditionTrace(
                    "safe_operations", True, f"{item.describe()} is a CALL ({DENY_MATCHES_ANY_PART})"
                )
        return ConditionTrace(
            "safe_operations",
            False,
            f"no part of the request uses {quoted_list(sorted(self.operations))} as this rule names it",
        )

"""The condition registry: the order conditions take in traces, the fields a rule may hold, stored traces that
must keep reading back, and that a new condition is found through the registry alone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

import custody.domain.policy.parsing as parsing_module
from custody.domain.errors import ConfigurationError, InternalError
from custody.domain.policy import (
    ConditionTrace,
    DecisionAction,
    Policy,
    RequestFacts,
    Rule,
    VelocityLookup,
    VelocityUsage,
    trace_from_json,
    trace_to_json,
)
from custody.domain.policy.conditions import CONDITION_TYPES, RuleTable, VelocityLimit
from custody.domain.policy.fields import parse_wei
from custody.domain.requests import PayloadKind

TOKEN = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
TRANSFER = "0xa9059cbb"
APPROVE = bytes.fromhex("095ea7b3")
ONE_ETHER = 10**18

EVERY_CONDITION_RULE: dict[str, Any] = {
    "name": "everything",
    "action": "sign",
    "keys": ["ops"],
    "chain_ids": [1, 10],
    "kinds": ["transaction"],
    "transaction_types": ["eip1559"],
    "destinations": [TOKEN],
    "contracts": [{"address": TOKEN, "selectors": [TRANSFER]}],
    "max_value_wei": ONE_ETHER,
    "max_fee_wei": 10**16,
    "velocity": {"window_seconds": 3600, "max_count": 5, "max_value_wei": str(3 * ONE_ETHER)},
}
# A replacement, so the replacement condition speaks too; it fails some conditions and meets others.
REPLACEMENT_APPROVE_CALL = RequestFacts(
    "ops",
    PayloadKind.TRANSACTION,
    chain_id=1,
    transaction_type="eip1559",
    to=TOKEN.lower(),
    value=2 * ONE_ETHER,
    selector=APPROVE,
    replacement=True,
    max_fee_wei=21_000 * 30 * 10**9,
)


def busy_key(key_label: str, window_seconds: int) -> VelocityUsage:
    del key_label, window_seconds  # Every window holds the same usage here.
    return VelocityUsage(count=4, total_value=3 * ONE_ETHER // 2)


def test_conditions_appear_in_traces_in_registry_order() -> None:
    policy = Policy.from_mapping({"version": 7, "rules": [EVERY_CONDITION_RULE]}, "t")
    (rule_trace,) = policy.evaluate(REPLACEMENT_APPROVE_CALL, busy_key).trace
    assert [outcome.condition for outcome in rule_trace.conditions] == [
        "keys",
        "chain_ids",
        "kinds",
        "transaction_types",
        "destinations",
        "contracts",
        "max_value_wei",
        "max_fee_wei",
        "replacement",
        "velocity",
    ]


# The trace the policy wrote for EVERY_CONDITION_RULE and REPLACEMENT_APPROVE_CALL before it was split into a
# package with a condition registry. Databases hold traces like it, and ``policy explain`` must read them.
STORED_TRACE = (
    '{"rules":[{"conditions":['
    '{"condition":"keys","detail":"key \'ops\' is in \'ops\'","matched":true},'
    '{"condition":"chain_ids","detail":"chain id 1 is in [1, 10]","matched":true},'
    '{"condition":"kinds","detail":"kind \'transaction\' is in \'transaction\'","matched":true},'
    '{"condition":"transaction_types","detail":"transaction type \'eip1559\' is in \'eip1559\'","matched":true},'
    '{"condition":"destinations","detail":"destination 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed is in'
    ' 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","matched":true},'
    '{"condition":"contracts","detail":"selector 0x095ea7b3 on 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed is'
    ' not in 0xa9059cbb","matched":false},'
    '{"condition":"max_value_wei","detail":"value 2000000000000000000 wei exceeds the cap of'
    ' 1000000000000000000 wei","matched":false},'
    '{"condition":"max_fee_wei","detail":"maximum fee 630000000000000 wei (0.00063 ether) is at most the cap'
    ' of 10000000000000000 wei (0.01 ether)","matched":true},'
    '{"condition":"replacement","detail":"the request replaces an earlier one, and this rule has no'
    ' allow_replacement","matched":false},'
    '{"condition":"velocity","detail":"in the last 3600 s, this request included: 3500000000000000000 wei'
    ' would exceed the limit of 3000000000000000000 wei","matched":false}'
    '],"matched":false,"rule":"everything"}]}'
)


def test_a_stored_trace_reads_back_and_equals_todays_evaluation_of_the_same_request() -> None:
    policy = Policy.from_mapping({"version": 7, "rules": [EVERY_CONDITION_RULE]}, "t")
    evaluation = policy.evaluate(REPLACEMENT_APPROVE_CALL, busy_key)
    assert trace_from_json(STORED_TRACE) == evaluation.trace
    assert trace_to_json(evaluation.trace) == STORED_TRACE


def test_a_rule_may_hold_only_its_own_fields_and_those_of_registered_conditions() -> None:
    rule = {**EVERY_CONDITION_RULE, "max_gas": 21_000}
    with pytest.raises(ConfigurationError) as refused:
        Policy.from_mapping({"version": 1, "rules": [rule]}, "policy.toml")
    assert refused.value.message == (
        "policy.toml: rule 'everything' (rules[0]): unknown key 'max_gas'; allowed are 'action', 'allow_hash_like',"
        " 'allow_refund', 'allow_replacement', 'allow_unlimited_approval', 'any_chain', 'chain_ids', 'contracts',"
        " 'delegatecall_targets', 'delegates', 'destinations', 'governance_targets', 'intents', 'keys', 'kinds',"
        " 'lifetime_seconds', 'max_fee_wei', 'max_message_bytes', 'max_permit_horizon_seconds', 'max_value_wei',"
        " 'message_prefixes', 'name', 'operators', 'quorum', 'recipients', 'requires_intents', 'safe_operations',"
        " 'safes',"
        " 'spenders', 'text_only', 'timelock_seconds', 'token_caps', 'token_velocity', 'tokens',"
        " 'transaction_types', 'typed_data', 'velocity'"
    )


@pytest.mark.parametrize("condition_type", CONDITION_TYPES, ids=lambda c: c.__name__)
def test_every_registered_condition_documents_its_fields_for_policy_authors(condition_type: Any) -> None:
    documentation = condition_type.__doc__ or ""
    for field in condition_type.TOML_FIELDS:
        # Each field is shown as a policy author writes it, "field = ...", with an example value.
        assert re.search(rf"``{field} = [^`]+``", documentation), f"{condition_type.__name__} lacks {field}"


def test_a_rule_without_keys_cannot_be_built() -> None:
    with pytest.raises(InternalError, match="rule 'nameless' names no keys"):
        Rule("nameless", DecisionAction.SIGN, conditions=())


@dataclass(frozen=True)
class MinimumValueCondition:
    """``min_value_wei = 1``: the request must move at least this many wei (a condition made up for the test)."""

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("min_value_wei",)

    min_value_wei: int

    @classmethod
    def parse(cls, rule: RuleTable) -> MinimumValueCondition | None:
        if "min_value_wei" not in rule.raw:
            return None
        return cls(parse_wei(rule.raw["min_value_wei"], "min_value_wei", rule.fail))

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        matched = facts.value >= self.min_value_wei
        return ConditionTrace(
            "min_value_wei", matched, f"value {facts.value} wei against {self.min_value_wei}"
        )


def test_a_new_condition_is_found_through_the_registry_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = {
        "name": "some-value",
        "action": "sign",
        "keys": ["ops"],
        "min_value_wei": 1,
        "velocity": {"window_seconds": 60, "max_count": 10},
    }
    with pytest.raises(ConfigurationError, match="unknown key 'min_value_wei'"):
        Policy.from_mapping({"version": 1, "rules": [rule]}, "t")

    # What a contributor's one registry line does: the new class before VelocityLimit, which stays last.
    assert CONDITION_TYPES[-1] is VelocityLimit
    extended = (*CONDITION_TYPES[:-1], MinimumValueCondition, VelocityLimit)
    monkeypatch.setattr(parsing_module, "CONDITION_TYPES", extended)
    policy = Policy.from_mapping({"version": 1, "rules": [rule]}, "t")

    moves_nothing = RequestFacts(
        "ops", PayloadKind.MESSAGE, chain_id=None, transaction_type=None, to=None, value=0
    )
    refused = policy.evaluate(moves_nothing, busy_key)
    assert refused.decision.action == "deny"
    assert [c.condition for c in refused.trace[0].conditions] == ["keys", "min_value_wei", "velocity"]
    assert [c.matched for c in refused.trace[0].conditions] == [True, False, True]
    moves_one_wei = RequestFacts("ops", PayloadKind.TRANSACTION, 1, "eip1559", TOKEN, value=1)
    assert policy.evaluate(moves_one_wei, busy_key).decision.action == "sign"

"""Policy evaluation and validation, table-driven.

Expected decisions and messages are written from the policy format's specification, not copied from output.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from custody.domain.errors import ConfigurationError
from custody.domain.policy import NO_MATCH_REASON, Policy, RequestFacts
from custody.domain.requests import PayloadKind
from custody.policy_file import dev_policy_toml, parse_policy_text

ONE_ETHER = 10**18

EIP1559_MAINNET = RequestFacts(
    key_label="ops",
    kind=PayloadKind.TRANSACTION,
    chain_id=1,
    transaction_type="eip1559",
    to="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    value=ONE_ETHER,
)
TYPED_DATA = RequestFacts("ops", PayloadKind.TYPED_DATA, chain_id=1, transaction_type=None, to=None, value=0)
MESSAGE = RequestFacts("ops", PayloadKind.MESSAGE, chain_id=None, transaction_type=None, to=None, value=0)


def single_rule_policy(**rule: Any) -> Policy:
    return Policy.from_mapping(
        {"version": 3, "rules": [{"name": "only", "action": "sign", **rule}]}, "test.toml"
    )


# ----------------------------------------------------------------------------------------------------
# Each condition on its own: a one-rule policy with that condition, a request that meets it and one that
# does not.

CONDITION_CASES = [
    pytest.param(
        {"keys": ["ops"]}, EIP1559_MAINNET, replace(EIP1559_MAINNET, key_label="treasury"), "keys", id="keys"
    ),
    pytest.param(
        {"keys": ["ops"], "chain_ids": [1, 11155111]},
        replace(EIP1559_MAINNET, chain_id=11155111),
        replace(EIP1559_MAINNET, chain_id=10),
        "chain_ids",
        id="chain_ids",
    ),
    pytest.param(
        {"keys": ["ops"], "chain_ids": [1]},
        TYPED_DATA,
        MESSAGE,
        "chain_ids",
        id="chain_ids-request-without-chain-id",
    ),
    pytest.param(
        {"keys": ["ops"], "kinds": ["typed_data", "message"]}, MESSAGE, EIP1559_MAINNET, "kinds", id="kinds"
    ),
    pytest.param(
        {"keys": ["ops"], "transaction_types": ["legacy"]},
        replace(EIP1559_MAINNET, transaction_type="legacy"),
        EIP1559_MAINNET,
        "transaction_types",
        id="transaction_types",
    ),
    pytest.param(
        {"keys": ["ops"], "transaction_types": ["legacy", "eip2930", "eip1559"]},
        EIP1559_MAINNET,
        TYPED_DATA,
        "transaction_types",
        id="transaction_types-refuse-non-transactions",
    ),
    pytest.param(
        {"keys": ["ops"], "max_value_wei": "1000000000000000000"},
        EIP1559_MAINNET,
        replace(EIP1559_MAINNET, value=ONE_ETHER + 1),
        "max_value_wei",
        id="max_value_wei-edge",
    ),
    pytest.param(
        {"keys": ["ops"], "max_value_wei": 0},
        MESSAGE,
        replace(EIP1559_MAINNET, value=1),
        "max_value_wei",
        id="max_value_wei-zero",
    ),
]


@pytest.mark.parametrize(("rule", "matching", "not_matching", "condition"), CONDITION_CASES)
def test_each_condition_matches_and_refuses(
    rule: dict[str, Any], matching: RequestFacts, not_matching: RequestFacts, condition: str
) -> None:
    policy = single_rule_policy(**rule)

    allowed = policy.evaluate(matching)
    assert allowed.decision.action == "sign"
    assert allowed.decision.rule == "only"
    assert allowed.decision.policy_version == 3
    assert all(outcome.matched for outcome in allowed.trace[0].conditions)

    refused = policy.evaluate(not_matching)
    assert refused.decision.action == "deny"
    assert refused.decision.rule is None
    assert refused.decision.reason == NO_MATCH_REASON
    (rule_trace,) = refused.trace
    assert rule_trace.rule == "only"
    assert not rule_trace.matched
    failed = [outcome.condition for outcome in rule_trace.conditions if not outcome.matched]
    assert failed == [condition]


def test_trace_lists_every_condition_of_a_rule_with_details() -> None:
    policy = single_rule_policy(
        keys=["ops"], chain_ids=[1], kinds=["transaction"], transaction_types=["eip1559"], max_value_wei=5
    )
    evaluation = policy.evaluate(replace(EIP1559_MAINNET, key_label="treasury", chain_id=10, value=6))
    conditions = {outcome.condition: outcome for outcome in evaluation.trace[0].conditions}
    assert list(conditions) == ["keys", "chain_ids", "kinds", "transaction_types", "max_value_wei"]
    assert [outcome.matched for outcome in conditions.values()] == [False, False, True, True, False]
    assert conditions["keys"].detail == "key 'treasury' is not in 'ops'"
    assert conditions["chain_ids"].detail == "chain id 10 is not in [1]"
    assert conditions["max_value_wei"].detail == "value 6 wei exceeds the cap of 5 wei"


def test_message_without_chain_id_explains_why_a_chain_rule_does_not_match() -> None:
    evaluation = single_rule_policy(keys=["ops"], chain_ids=[1]).evaluate(MESSAGE)
    (chain_outcome,) = [c for c in evaluation.trace[0].conditions if c.condition == "chain_ids"]
    assert not chain_outcome.matched
    assert "no chain id" in chain_outcome.detail


def test_first_match_wins_and_trace_stops_there() -> None:
    policy = Policy.from_mapping(
        {
            "version": 1,
            "rules": [
                {"name": "other-key", "keys": ["treasury"], "action": "sign"},
                {"name": "block-big", "keys": ["ops"], "max_value_wei": 10, "action": "sign"},
                {"name": "ops-deny", "keys": ["ops"], "action": "deny"},
                {"name": "ops-sign", "keys": ["ops"], "action": "sign"},
            ],
        },
        "test.toml",
    )
    evaluation = policy.evaluate(EIP1559_MAINNET)
    assert evaluation.decision.action == "deny"
    assert evaluation.decision.rule == "ops-deny"
    assert [trace.rule for trace in evaluation.trace] == ["other-key", "block-big", "ops-deny"]
    assert [trace.matched for trace in evaluation.trace] == [False, False, True]


def test_sign_rule_before_deny_rule_signs() -> None:
    policy = Policy.from_mapping(
        {
            "version": 1,
            "rules": [
                {"name": "ops-sign", "keys": ["ops"], "action": "sign"},
                {"name": "ops-deny", "keys": ["ops"], "action": "deny"},
            ],
        },
        "test.toml",
    )
    evaluation = policy.evaluate(EIP1559_MAINNET)
    assert (evaluation.decision.action, evaluation.decision.rule) == ("sign", "ops-sign")
    assert len(evaluation.trace) == 1


def test_deny_rule_names_itself_in_the_reason() -> None:
    policy = single_rule_policy(keys=["ops"], action="deny")
    decision = policy.evaluate(EIP1559_MAINNET).decision
    assert decision.action == "deny"
    assert decision.rule == "only"
    assert "only" in decision.reason


def test_nothing_matched_is_denied_by_default_with_full_trace() -> None:
    policy = Policy.from_mapping(
        {
            "version": 7,
            "rules": [
                {"name": "a", "keys": ["alpha"], "action": "sign"},
                {"name": "b", "keys": ["beta"], "action": "sign"},
            ],
        },
        "test.toml",
    )
    evaluation = policy.evaluate(EIP1559_MAINNET)
    assert evaluation.decision.action == "deny"
    assert evaluation.decision.rule is None
    assert evaluation.decision.reason == "no rule allows this request (deny by default)"
    assert evaluation.decision.policy_version == 7
    assert [(trace.rule, trace.matched) for trace in evaluation.trace] == [("a", False), ("b", False)]


@pytest.mark.parametrize(
    ("written", "cap"),
    [
        pytest.param(1_000_000, 1_000_000, id="toml-integer"),
        pytest.param("1000000", 1_000_000, id="decimal-string"),
        pytest.param(0, 0, id="zero"),
        pytest.param("0", 0, id="zero-string"),
        pytest.param(str(2**256 - 1), 2**256 - 1, id="uint256-max-string"),
        pytest.param(2**63 - 1, 2**63 - 1, id="toml-integer-max"),
    ],
)
def test_value_cap_accepts_integers_and_decimal_strings_with_inclusive_edge(written: Any, cap: int) -> None:
    policy = single_rule_policy(keys=["ops"], max_value_wei=written)
    assert policy.evaluate(replace(EIP1559_MAINNET, value=cap)).decision.action == "sign"
    if cap < 2**256 - 1:
        assert policy.evaluate(replace(EIP1559_MAINNET, value=cap + 1)).decision.action == "deny"


def test_key_labels_are_the_union_over_rules() -> None:
    policy = Policy.from_mapping(
        {
            "version": 1,
            "rules": [
                {"name": "a", "keys": ["ops", "hot"], "action": "sign"},
                {"name": "b", "keys": ["treasury", "ops"], "action": "deny"},
            ],
        },
        "test.toml",
    )
    assert policy.key_labels() == frozenset({"ops", "hot", "treasury"})


# ----------------------------------------------------------------------------------------------------
# Validation: every refusal names the source, the rule (by name and index) and the field.

VALID_RULE: dict[str, Any] = {"name": "ops", "keys": ["ops"], "action": "sign"}


def with_rule(**changes: Any) -> dict[str, Any]:
    rule = {**VALID_RULE, **changes}
    return {"version": 1, "rules": [rule]}


def without(key: str) -> dict[str, Any]:
    rule = {k: v for k, v in VALID_RULE.items() if k != key}
    return {"version": 1, "rules": [rule]}


RULE_PREFIX = "policy.toml: rule 'ops' (rules[0]): "

INVALID_POLICIES = [
    # Top level.
    pytest.param({"rules": [VALID_RULE]}, "policy.toml: version: is required", id="version-missing"),
    pytest.param(
        {"version": 0, "rules": [VALID_RULE]},
        "policy.toml: version: must be a positive integer, got 0",
        id="version-zero",
    ),
    pytest.param(
        {"version": "1", "rules": [VALID_RULE]},
        "policy.toml: version: must be a positive integer",
        id="version-string",
    ),
    pytest.param(
        {"version": True, "rules": [VALID_RULE]},
        "policy.toml: version: must be a positive integer",
        id="version-bool",
    ),
    pytest.param(
        {"version": 1}, "policy.toml: rules: a policy needs at least one [[rules]] entry", id="no-rules"
    ),
    pytest.param(
        {"version": 1, "rules": []},
        "policy.toml: rules: a policy needs at least one [[rules]] entry",
        id="empty-rules",
    ),
    pytest.param(
        {"version": 1, "rules": {"name": "x"}},
        "policy.toml: rules: must be an array of tables",
        id="rules-not-a-list",
    ),
    pytest.param(
        {"version": 1, "rules": [VALID_RULE], "approvers": []},
        "policy.toml: unknown top-level key 'approvers'",
        id="unknown-top-level-key",
    ),
    pytest.param(
        {"version": 1, "rules": ["ops"]}, "policy.toml: rules[0]: must be a table", id="rule-not-a-table"
    ),
    # Rule names.
    pytest.param(without("name"), "policy.toml: rules[0]: name: is required", id="name-missing"),
    pytest.param(
        with_rule(name="Ops"), "policy.toml: rules[0]: name: must be lowercase", id="name-uppercase"
    ),
    pytest.param(
        with_rule(name="-ops"), "policy.toml: rules[0]: name: must be lowercase", id="name-leading-dash"
    ),
    pytest.param(with_rule(name=""), "policy.toml: rules[0]: name: must be lowercase", id="name-empty"),
    pytest.param(with_rule(name=5), "policy.toml: rules[0]: name: must be lowercase", id="name-not-a-string"),
    pytest.param(
        {"version": 1, "rules": [VALID_RULE, {**VALID_RULE, "keys": ["hot"]}]},
        "policy.toml: rule 'ops' (rules[1]): name: duplicates the name of rules[0]",
        id="name-duplicate",
    ),
    pytest.param(with_rule(approvals=2), RULE_PREFIX + "unknown key 'approvals'", id="unknown-rule-key"),
    # keys
    pytest.param(without("keys"), RULE_PREFIX + "keys: is required", id="keys-missing"),
    pytest.param(with_rule(keys=[]), RULE_PREFIX + "keys: must list at least one", id="keys-empty"),
    pytest.param(
        with_rule(keys="ops"),
        RULE_PREFIX + "keys: must be a list of key labels, got a string",
        id="keys-not-a-list",
    ),
    pytest.param(
        with_rule(keys=[1]),
        RULE_PREFIX + "keys: must be a list of key labels (strings), got 1",
        id="keys-not-strings",
    ),
    pytest.param(
        with_rule(keys=["Ops"]), RULE_PREFIX + "keys: 'Ops' is not a valid key label", id="keys-bad-label"
    ),
    pytest.param(
        with_rule(keys=["ops", "ops"]), RULE_PREFIX + "keys: lists 'ops' twice", id="keys-duplicate"
    ),
    # action
    pytest.param(without("action"), RULE_PREFIX + "action: is required", id="action-missing"),
    pytest.param(
        with_rule(action="allow"),
        RULE_PREFIX + "action: must be one of 'sign', 'deny', got 'allow'",
        id="action-unknown",
    ),
    # chain_ids
    pytest.param(
        with_rule(chain_ids=[]),
        RULE_PREFIX + "chain_ids: must list at least one chain id",
        id="chain-ids-empty",
    ),
    pytest.param(
        with_rule(chain_ids=[0]),
        RULE_PREFIX + "chain_ids: a chain id must be between 1 and 2**256-1, got 0",
        id="chain-id-zero",
    ),
    pytest.param(
        with_rule(chain_ids=[-1]), RULE_PREFIX + "chain_ids: a chain id must be between 1", id="chain-id-neg"
    ),
    pytest.param(
        with_rule(chain_ids=[2**256]),
        RULE_PREFIX + "chain_ids: a chain id must be between 1",
        id="chain-id-too-big",
    ),
    pytest.param(
        with_rule(chain_ids=["1"]),
        RULE_PREFIX + "chain_ids: must be a list of integers, got '1'",
        id="chain-id-string",
    ),
    pytest.param(
        with_rule(chain_ids=[True]),
        RULE_PREFIX + "chain_ids: must be a list of integers, got True",
        id="chain-id-bool",
    ),
    pytest.param(
        with_rule(chain_ids=1),
        RULE_PREFIX + "chain_ids: must be a list of chain ids, got an integer",
        id="chain-ids-not-a-list",
    ),
    pytest.param(
        with_rule(chain_ids=[1, 1]), RULE_PREFIX + "chain_ids: lists 1 twice", id="chain-ids-duplicate"
    ),
    # kinds
    pytest.param(with_rule(kinds=[]), RULE_PREFIX + "kinds: must list at least one", id="kinds-empty"),
    pytest.param(
        with_rule(kinds=["raw_digest"]), RULE_PREFIX + "kinds: unknown kind 'raw_digest'", id="kinds-unknown"
    ),
    pytest.param(with_rule(kinds="message"), RULE_PREFIX + "kinds: must be a list", id="kinds-not-a-list"),
    # transaction_types
    pytest.param(
        with_rule(transaction_types=[]),
        RULE_PREFIX + "transaction_types: must list at least one",
        id="transaction-types-empty",
    ),
    pytest.param(
        with_rule(transaction_types=["eip4844"]),
        RULE_PREFIX + "transaction_types: unknown transaction type 'eip4844'",
        id="transaction-types-unknown",
    ),
    pytest.param(
        with_rule(kinds=["message"], transaction_types=["legacy"]),
        RULE_PREFIX + "transaction_types: only transactions can match it",
        id="transaction-types-no-tx-kind",
    ),
    # max_value_wei
    pytest.param(
        with_rule(max_value_wei=-1),
        RULE_PREFIX + "max_value_wei: must be between 0 and 2**256-1, got -1",
        id="value-negative",
    ),
    pytest.param(
        with_rule(max_value_wei="-1"),
        RULE_PREFIX + "max_value_wei: must be between 0 and 2**256-1, got -1",
        id="value-negative-string",
    ),
    pytest.param(
        with_rule(max_value_wei=str(2**256)),
        RULE_PREFIX + f"max_value_wei: must be between 0 and 2**256-1, got {2**256}",
        id="value-too-big",
    ),
    pytest.param(
        with_rule(max_value_wei="1e18"),
        RULE_PREFIX + "max_value_wei: must be an integer or a string of",
        id="value-scientific",
    ),
    pytest.param(
        with_rule(max_value_wei="0x10"),
        RULE_PREFIX + "max_value_wei: must be an integer or a string of",
        id="value-hex",
    ),
    pytest.param(
        with_rule(max_value_wei="1_000"),
        RULE_PREFIX + "max_value_wei: must be an integer or a string of",
        id="value-underscores",
    ),
    pytest.param(
        with_rule(max_value_wei=" 1"),
        RULE_PREFIX + "max_value_wei: must be an integer or a string of",
        id="value-space",
    ),
    pytest.param(
        with_rule(max_value_wei="\u0661"),
        RULE_PREFIX + "max_value_wei: must be an integer or a string of",
        id="value-non-ascii-digit",
    ),
    pytest.param(
        with_rule(max_value_wei="9" * 5000),
        RULE_PREFIX + "max_value_wei: must be an integer or a string",
        id="value-huge-string",
    ),
    pytest.param(
        with_rule(max_value_wei=1.5),
        RULE_PREFIX + "max_value_wei: must be an integer or a string of",
        id="value-float",
    ),
    pytest.param(
        with_rule(max_value_wei=True),
        RULE_PREFIX + "max_value_wei: must be an integer or a string of",
        id="value-bool",
    ),
]


@pytest.mark.parametrize(("document", "expected_start"), INVALID_POLICIES)
def test_invalid_policies_are_refused_naming_source_rule_and_field(
    document: dict[str, Any], expected_start: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_mapping(document, "policy.toml")
    assert raised.value.message.startswith(expected_start), raised.value.message
    # One sentence, on one line, as the CLI prints it.
    assert "\n" not in raised.value.message


def test_second_rule_is_named_with_its_index() -> None:
    document = {
        "version": 1,
        "rules": [VALID_RULE, {"name": "second", "keys": ["ops"], "action": "sign", "chain_ids": [0]}],
    }
    with pytest.raises(
        ConfigurationError, match=re.escape("policy.toml: rule 'second' (rules[1]): chain_ids:")
    ):
        Policy.from_mapping(document, "policy.toml")


def test_parsed_toml_reaches_the_same_validation() -> None:
    text = 'version = 1\n[[rules]]\nname = "ops"\nkeys = ["ops"]\naction = "sign"\nmax_value_wei = -1\n'
    with pytest.raises(
        ConfigurationError,
        match=re.escape("/etc/custody/policy.toml: rule 'ops' (rules[0]): max_value_wei: must be between 0"),
    ):
        parse_policy_text(text, "/etc/custody/policy.toml")


# ----------------------------------------------------------------------------------------------------
# The development policy: key "ops" signs EIP-1559 and legacy transactions of at most 1 ether on chains 1 and
# 11155111, and EIP-712 typed data and EIP-191 messages; everything else, "treasury" included, is denied.

DEV_POLICY_CASES = [
    pytest.param(EIP1559_MAINNET, "sign", "ops-transactions", id="eip1559-1-ether-mainnet"),
    pytest.param(
        replace(EIP1559_MAINNET, transaction_type="legacy", chain_id=11155111, value=0),
        "sign",
        "ops-transactions",
        id="legacy-sepolia",
    ),
    pytest.param(replace(EIP1559_MAINNET, value=ONE_ETHER + 1), "deny", None, id="over-1-ether"),
    pytest.param(replace(EIP1559_MAINNET, transaction_type="eip2930"), "deny", None, id="eip2930"),
    pytest.param(replace(EIP1559_MAINNET, chain_id=137), "deny", None, id="other-chain"),
    pytest.param(TYPED_DATA, "sign", "ops-typed-data-and-messages", id="typed-data"),
    pytest.param(
        replace(TYPED_DATA, chain_id=None),
        "sign",
        "ops-typed-data-and-messages",
        id="typed-data-without-chain-id",
    ),
    pytest.param(MESSAGE, "sign", "ops-typed-data-and-messages", id="message"),
    pytest.param(replace(EIP1559_MAINNET, key_label="treasury", value=1), "deny", None, id="treasury-tx"),
    pytest.param(replace(MESSAGE, key_label="treasury"), "deny", None, id="treasury-message"),
]


@pytest.mark.parametrize(("facts", "action", "rule"), DEV_POLICY_CASES)
def test_dev_policy_decides_as_described(facts: RequestFacts, action: str, rule: str | None) -> None:
    policy = parse_policy_text(dev_policy_toml(), "policy.toml")
    decision = policy.evaluate(facts).decision
    assert (decision.action, decision.rule) == (action, rule)
    assert decision.policy_version == 1


def test_dev_policy_names_only_ops_and_explains_treasury() -> None:
    text = dev_policy_toml()
    assert parse_policy_text(text, "policy.toml").key_labels() == frozenset({"ops"})
    # The file is meant to be read by a new user, so the missing treasury rule is explained in it.
    assert any(line.startswith("#") and "treasury" in line for line in text.splitlines())

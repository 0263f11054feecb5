"""Policy evaluation and validation, table-driven.

Expected decisions and messages are written from the policy format's specification, not copied from output.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custody.chains.evm import parse_payload
from custody.chains.evm.intents import payload_intents
from custody.domain.errors import ConfigurationError, InternalError, InvalidInput
from custody.domain.intents import Intent, IntentKind, Party, PartyRole, TokenAmount, TypedDataDomain
from custody.domain.policy import (
    NO_MATCH_REASON,
    Policy,
    RequestFacts,
    VelocityLimit,
    VelocityUsage,
    ed25519_public_key_problem,
    trace_from_json,
    trace_to_json,
)
from custody.domain.requests import Decision, PayloadKind, QuorumTerm
from custody.policy_file import dev_policy_toml, parse_policy_text

ONE_ETHER = 10**18
GWEI = 10**9

EIP1559_MAINNET = RequestFacts(
    key_label="ops",
    kind=PayloadKind.TRANSACTION,
    chain_id=1,
    transaction_type="eip1559",
    to="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    value=ONE_ETHER,
    max_fee_wei=21000 * 30 * GWEI,
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
        replace(EIP1559_MAINNET, value=0),
        replace(EIP1559_MAINNET, value=1),
        "max_value_wei",
        id="max_value_wei-zero",
    ),
    # Only transactions send value: a value cap says nothing about typed data or messages, so they never match.
    pytest.param(
        {"keys": ["ops"], "max_value_wei": 0},
        replace(EIP1559_MAINNET, value=0),
        MESSAGE,
        "max_value_wei",
        id="max_value_wei-refuses-messages",
    ),
    pytest.param(
        {"keys": ["ops"], "max_value_wei": str(ONE_ETHER)},
        EIP1559_MAINNET,
        TYPED_DATA,
        "max_value_wei",
        id="max_value_wei-refuses-typed-data",
    ),
    pytest.param(
        {"keys": ["ops"], "max_fee_wei": "630000000000000"},
        EIP1559_MAINNET,
        replace(EIP1559_MAINNET, max_fee_wei=630_000_000_000_001),
        "max_fee_wei",
        id="max_fee_wei-edge",
    ),
    pytest.param(
        {"keys": ["ops"], "max_fee_wei": str(ONE_ETHER)},
        EIP1559_MAINNET,
        MESSAGE,
        "max_fee_wei",
        id="max_fee_wei-refuses-messages",
    ),
    pytest.param(
        {"keys": ["ops"], "max_fee_wei": str(ONE_ETHER)},
        EIP1559_MAINNET,
        TYPED_DATA,
        "max_fee_wei",
        id="max_fee_wei-refuses-typed-data",
    ),
    pytest.param(
        {"keys": ["ops"], "max_fee_wei": str(ONE_ETHER)},
        EIP1559_MAINNET,
        replace(EIP1559_MAINNET, max_fee_wei=None),
        "max_fee_wei",
        id="max_fee_wei-refuses-a-transaction-whose-fee-is-unknown",
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
    (rule_trace,) = refused.trace
    assert rule_trace.rule == "only"
    assert not rule_trace.matched
    failed = [outcome for outcome in rule_trace.conditions if not outcome.matched]
    assert [outcome.condition for outcome in failed] == [condition]
    # The denial says what stopped the rule written for the key; a rule for another key goes unmentioned.
    if condition == "keys":
        assert refused.decision.reason == NO_MATCH_REASON
    else:
        assert refused.decision.reason == f"{NO_MATCH_REASON}; rule 'only' did not match: {failed[0].detail}"


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
        {"version": 1, "rules": [VALID_RULE], "approver": {}},
        "policy.toml: unknown top-level key 'approver'",
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
        RULE_PREFIX + "action: must be one of 'sign', 'deny', 'approve', got 'allow'",
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
        with_rule(transaction_types=["eip7703"]),
        RULE_PREFIX + "transaction_types: unknown transaction type 'eip7703'",
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
    # max_fee_wei
    pytest.param(
        with_rule(max_fee_wei="-1"),
        RULE_PREFIX + "max_fee_wei: must be between 0 and 2**256-1, got -1",
        id="fee-negative",
    ),
    pytest.param(
        with_rule(max_fee_wei=str(2**256)),
        RULE_PREFIX + f"max_fee_wei: must be between 0 and 2**256-1, got {2**256}",
        id="fee-too-big",
    ),
    pytest.param(
        with_rule(max_fee_wei="0.05 ether"),
        RULE_PREFIX + "max_fee_wei: must be an integer or a string of decimal digits",
        id="fee-text",
    ),
    pytest.param(
        with_rule(max_fee_wei=0.05),
        RULE_PREFIX + "max_fee_wei: must be an integer or a string of decimal digits",
        id="fee-float",
    ),
    pytest.param(
        with_rule(kinds=["typed_data", "message"], max_fee_wei="1"),
        RULE_PREFIX + "max_fee_wei: only transactions can match it, but kinds does not include 'transaction'",
        id="fee-without-transaction-kind",
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
# Approvers, quorums and the conditions of issue 3. Addresses are EIP-55's own test vectors (EIP-55,
# "Test Cases"); selectors are ERC-20's transfer(address,uint256) and approve(address,uint256) (EIP-20).

TOKEN = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
VAULT = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
OTHER = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
TRANSFER = bytes.fromhex("a9059cbb")
APPROVE = bytes.fromhex("095ea7b3")


def new_public_key() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes_raw()


PUBLIC_KEYS = {name: new_public_key() for name in ("alice", "bob", "carol", "dave", "erin")}
GROUPS = {
    "alice": ["treasury", "admins"],
    "bob": ["treasury", "admins"],
    "carol": ["treasury"],
    "dave": ["security", "admins"],
}


def approvers_table(**groups: list[str]) -> dict[str, Any]:
    return {name: {"public_key": PUBLIC_KEYS[name].hex(), "groups": g} for name, g in groups.items()}


def full_policy(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": 4,
        "approvers": approvers_table(**GROUPS),
        "admin": {"quorum": [{"group": "admins", "threshold": 2}]},
        "rules": list(rules),
    }
    document.update(top)
    return document


TREASURY_TX = RequestFacts(
    key_label="treasury",
    kind=PayloadKind.TRANSACTION,
    chain_id=1,
    transaction_type="eip1559",
    to=TOKEN,
    value=0,
    selector=TRANSFER,
)

APPROVE_RULE: dict[str, Any] = {
    "name": "treasury",
    "keys": ["treasury"],
    "action": "approve",
    "quorum": [{"group": "treasury", "threshold": 2}],
}


class UsageBook:
    """A key's usage as the store would report it, recording what evaluation asked for."""

    def __init__(self, count: int = 0, total_value: int = 0) -> None:
        self.usage = VelocityUsage(count=count, total_value=total_value)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, key_label: str, window_seconds: int) -> VelocityUsage:
        self.asked.append((key_label, window_seconds))
        return self.usage


NEW_CONDITION_CASES = [
    pytest.param(
        {"destinations": [VAULT, TOKEN]},
        replace(TREASURY_TX, to=VAULT),
        replace(TREASURY_TX, to=OTHER),
        "destinations",
        id="destinations",
    ),
    pytest.param(
        {"destinations": [VAULT]},
        replace(TREASURY_TX, to=VAULT.lower()),
        replace(TREASURY_TX, to=None),
        "destinations",
        id="destinations-any-case-and-contract-creation",
    ),
    pytest.param(
        {"contracts": [{"address": TOKEN, "selectors": ["0xa9059cbb", "0x095ea7b3"]}]},
        replace(TREASURY_TX, selector=APPROVE),
        replace(TREASURY_TX, selector=bytes.fromhex("23b872dd")),
        "contracts",
        id="contracts-selector-not-listed",
    ),
    pytest.param(
        {"contracts": [{"address": TOKEN, "selectors": ["0xA9059CBB"]}]},
        TREASURY_TX,
        replace(TREASURY_TX, selector=None, value=5),
        "contracts",
        id="contracts-plain-transfer-does-not-match",
    ),
    pytest.param(
        {"contracts": [{"address": TOKEN, "selectors": ["0xa9059cbb"]}]},
        TREASURY_TX,
        replace(TREASURY_TX, to=VAULT),
        "contracts",
        id="contracts-other-address",
    ),
    pytest.param(
        {"contracts": [{"address": TOKEN, "selectors": ["0xa9059cbb"]}]},
        TREASURY_TX,
        replace(TREASURY_TX, to=None),
        "contracts",
        id="contracts-no-destination",
    ),
]


@pytest.mark.parametrize(("rule", "matching", "not_matching", "condition"), NEW_CONDITION_CASES)
def test_destination_and_contract_conditions(
    rule: dict[str, Any], matching: RequestFacts, not_matching: RequestFacts, condition: str
) -> None:
    policy = Policy.from_mapping(full_policy({**APPROVE_RULE, **rule}), "test.toml")
    assert policy.evaluate(matching).decision.action == "approve"
    refused = policy.evaluate(not_matching)
    assert refused.decision.action == "deny"
    assert [c.condition for c in refused.trace[0].conditions if not c.matched] == [condition]


def test_typed_data_matches_destinations_only_in_a_rule_that_lists_typed_data_and_never_a_contract_call() -> (
    None
):
    # A rule written for payments to VAULT must not match a signature that merely names VAULT as its verifying
    # contract (a SafeTx for a Safe moves the Safe's funds, whatever its destination says).
    mail = Intent(
        IntentKind.TYPED_DATA,
        contract=VAULT,
        subject="Mail",
        domain=TypedDataDomain(verifying_contract=VAULT),
    )
    typed_data = replace(
        TREASURY_TX,
        kind=PayloadKind.TYPED_DATA,
        transaction_type=None,
        to=VAULT,
        selector=None,
        intents=(mail,),
    )
    by_destination = Policy.from_mapping(full_policy({**APPROVE_RULE, "destinations": [VAULT]}), "t")
    refused = by_destination.evaluate(typed_data)
    assert refused.decision.action == "deny"
    assert [c.condition for c in refused.trace[0].conditions if not c.matched] == [
        "destinations",
        "typed_data",
    ]
    listing_typed_data = Policy.from_mapping(
        full_policy({**APPROVE_RULE, "destinations": [VAULT], "typed_data": [{"primary_type": "Mail"}]}), "t"
    )
    assert listing_typed_data.evaluate(typed_data).decision.action == "approve"
    assert listing_typed_data.evaluate(replace(typed_data, to=OTHER)).decision.action == "deny"
    by_contract = Policy.from_mapping(
        full_policy(
            {
                **APPROVE_RULE,
                "contracts": [{"address": VAULT, "selectors": ["0xa9059cbb"]}],
                "typed_data": [{"primary_type": "Mail"}],
            }
        ),
        "t",
    )
    assert by_contract.evaluate(typed_data).decision.action == "deny"


VELOCITY = {"window_seconds": 3600, "max_count": 3, "max_value_wei": "1000"}

VELOCITY_EDGE_CASES = [
    # (usage count, usage total, request value, matched)
    pytest.param(0, 0, 0, True, id="nothing-used"),
    pytest.param(2, 0, 0, True, id="count-reaches-limit-exactly"),
    pytest.param(3, 0, 0, False, id="count-one-over"),
    pytest.param(0, 999, 1, True, id="value-reaches-limit-exactly"),
    pytest.param(0, 1000, 0, True, id="value-at-limit-with-zero-value-request"),
    pytest.param(0, 1000, 1, False, id="value-one-wei-over"),
    pytest.param(0, 0, 1001, False, id="single-request-over-value"),
    pytest.param(2, 999, 1, True, id="both-at-limit"),
    pytest.param(3, 1000, 1, False, id="both-over"),
]


@pytest.mark.parametrize(("count", "total", "value", "matched"), VELOCITY_EDGE_CASES)
def test_velocity_limit_at_its_edges(count: int, total: int, value: int, matched: bool) -> None:
    policy = Policy.from_mapping(full_policy({**APPROVE_RULE, "velocity": VELOCITY}), "test.toml")
    book = UsageBook(count, total)
    evaluation = policy.evaluate(replace(TREASURY_TX, value=value), book)
    assert evaluation.decision.action == ("approve" if matched else "deny")
    (velocity,) = [c for c in evaluation.trace[0].conditions if c.condition == "velocity"]
    assert velocity.matched is matched
    assert book.asked == [("treasury", 3600)]
    assert not evaluation.freeze_key  # freeze_on_breach is not set


@pytest.mark.parametrize(
    ("limit", "usage", "matched"),
    [
        pytest.param({"max_count": 1}, VelocityUsage(0, 10**30), True, id="count-only-ignores-value"),
        pytest.param({"max_count": 1}, VelocityUsage(1, 0), False, id="count-only"),
        pytest.param({"max_value_wei": 10}, VelocityUsage(10**6, 10), True, id="value-only-ignores-count"),
        pytest.param({"max_value_wei": 10}, VelocityUsage(0, 11), False, id="value-only"),
    ],
)
def test_velocity_with_one_limit_tests_only_that_limit(
    limit: dict[str, Any], usage: VelocityUsage, matched: bool
) -> None:
    policy = Policy.from_mapping(
        full_policy({**APPROVE_RULE, "velocity": {"window_seconds": 60, **limit}}), "test.toml"
    )
    book = UsageBook(usage.count, usage.total_value)
    assert policy.evaluate(TREASURY_TX, book).trace[0].matched is matched


def test_velocity_detail_says_what_was_exceeded() -> None:
    policy = Policy.from_mapping(full_policy({**APPROVE_RULE, "velocity": VELOCITY}), "test.toml")
    (velocity,) = policy.evaluate(replace(TREASURY_TX, value=5), UsageBook(3, 996)).trace[0].conditions[1:]
    assert velocity.detail == (
        "in the last 3600 s, this request included: 4 requests would exceed the limit of 3;"
        " 1001 wei would exceed the limit of 1000 wei"
    )


def test_each_window_is_looked_up_once_per_evaluation() -> None:
    rules = [
        {**APPROVE_RULE, "name": "small", "max_value_wei": 0, "velocity": VELOCITY},
        {**APPROVE_RULE, "name": "same-window", "velocity": {"window_seconds": 3600, "max_count": 1}},
        {**APPROVE_RULE, "name": "day", "velocity": {"window_seconds": 86400, "max_count": 100}},
    ]
    book = UsageBook(5, 0)
    evaluation = Policy.from_mapping(full_policy(*rules), "t").evaluate(replace(TREASURY_TX, value=1), book)
    assert evaluation.decision.rule == "day"
    assert book.asked == [("treasury", 3600), ("treasury", 86400)]


def test_velocity_rule_without_usage_lookup_is_an_internal_error() -> None:
    policy = Policy.from_mapping(full_policy({**APPROVE_RULE, "velocity": VELOCITY}), "test.toml")
    with pytest.raises(InternalError, match="usage"):
        policy.evaluate(TREASURY_TX)


FREEZING = {**VELOCITY, "freeze_on_breach": True}

FREEZE_CASES = [
    # (rules, facts, usage, freeze_key, decided by)
    pytest.param(
        [{**APPROVE_RULE, "velocity": FREEZING}],
        TREASURY_TX,
        UsageBook(3, 0),
        True,
        None,
        id="only-velocity-failed",
    ),
    pytest.param(
        [{**APPROVE_RULE, "velocity": FREEZING}],
        TREASURY_TX,
        UsageBook(2, 0),
        False,
        "treasury",
        id="within-limit",
    ),
    pytest.param(
        [{**APPROVE_RULE, "velocity": VELOCITY}],
        TREASURY_TX,
        UsageBook(3, 0),
        False,
        None,
        id="not-asked-for",
    ),
    pytest.param(
        [{**APPROVE_RULE, "chain_ids": [10], "velocity": FREEZING}],
        TREASURY_TX,
        UsageBook(3, 0),
        False,
        None,
        id="another-condition-also-failed",
    ),
    pytest.param(
        [{**APPROVE_RULE, "velocity": FREEZING}],
        replace(TREASURY_TX, key_label="ops"),
        UsageBook(3, 0),
        False,
        None,
        id="other-key",
    ),
    pytest.param(
        [
            {**APPROVE_RULE, "name": "fast", "velocity": FREEZING},
            {**APPROVE_RULE, "name": "slow", "quorum": [{"group": "admins", "threshold": 3}]},
        ],
        TREASURY_TX,
        UsageBook(3, 0),
        True,
        "slow",
        id="later-rule-decides-and-key-still-freezes",
    ),
    pytest.param(
        [
            {"name": "stop", "keys": ["treasury"], "action": "deny"},
            {**APPROVE_RULE, "velocity": FREEZING},
        ],
        TREASURY_TX,
        UsageBook(3, 0),
        False,
        "stop",
        id="rule-never-reached",
    ),
]


@pytest.mark.parametrize(("rules", "facts", "book", "freeze", "rule"), FREEZE_CASES)
def test_freeze_on_breach(
    rules: list[dict[str, Any]], facts: RequestFacts, book: UsageBook, freeze: bool, rule: str | None
) -> None:
    evaluation = Policy.from_mapping(full_policy(*rules), "test.toml").evaluate(facts, book)
    assert evaluation.freeze_key is freeze
    assert evaluation.decision.rule == rule
    if freeze:
        assert "velocity limit" in evaluation.freeze_reason
        assert facts.key_label in evaluation.freeze_reason
    else:
        assert evaluation.freeze_reason == ""


def test_approve_rule_decides_with_its_quorum_lifetime_and_timelock() -> None:
    rule = {
        **APPROVE_RULE,
        "quorum": [{"group": "treasury", "threshold": 2}, {"group": "security", "threshold": 1}],
        "lifetime_seconds": 7200,
        "timelock_seconds": 600,
    }
    evaluation = Policy.from_mapping(full_policy(rule), "test.toml").evaluate(TREASURY_TX)
    assert evaluation.decision == Decision(
        action="approve",
        rule="treasury",
        reason="rule 'treasury' needs approval by 2 of treasury AND 1 of security",
        policy_version=4,
        quorum=(QuorumTerm("treasury", 2), QuorumTerm("security", 1)),
        timelock_seconds=600,
    )
    assert evaluation.lifetime_seconds == 7200


def test_approve_rule_defaults_to_a_day_without_timelock() -> None:
    evaluation = Policy.from_mapping(full_policy(APPROVE_RULE), "test.toml").evaluate(TREASURY_TX)
    assert evaluation.lifetime_seconds == 86400
    assert evaluation.decision.timelock_seconds == 0


@pytest.mark.parametrize(
    ("rule", "facts"),
    [
        pytest.param({"name": "s", "keys": ["treasury"], "action": "sign"}, TREASURY_TX, id="sign"),
        pytest.param({"name": "d", "keys": ["treasury"], "action": "deny"}, TREASURY_TX, id="deny"),
        pytest.param({"name": "d", "keys": ["ops"], "action": "sign"}, TREASURY_TX, id="deny-by-default"),
    ],
)
def test_non_approve_decisions_have_no_quorum_or_lifetime(rule: dict[str, Any], facts: RequestFacts) -> None:
    evaluation = Policy.from_mapping(full_policy(rule), "test.toml").evaluate(facts)
    assert evaluation.decision.quorum == ()
    assert evaluation.decision.timelock_seconds == 0
    assert evaluation.lifetime_seconds is None


def test_approvers_groups_and_security() -> None:
    policy = Policy.from_mapping(
        full_policy(APPROVE_RULE, admin={"quorum": [{"group": "admins", "threshold": 3}]}), "test.toml"
    )
    assert set(policy.approvers) == {"alice", "bob", "carol", "dave"}
    alice = policy.approver("alice")
    assert alice is not None
    assert alice.public_key == PUBLIC_KEYS["alice"]
    assert alice.groups == frozenset({"treasury", "admins"})
    assert policy.approver("erin") is None
    assert policy.group_members() == {
        "treasury": frozenset({"alice", "bob", "carol"}),
        "admins": frozenset({"alice", "bob", "dave"}),
        "security": frozenset({"dave"}),
    }
    assert policy.security_groups == frozenset({"security"})
    assert [name for name in ("alice", "bob", "carol", "dave", "erin") if policy.is_security(name)] == [
        "dave"
    ]
    assert policy.admin_quorum == (QuorumTerm("admins", 3),)


def test_security_groups_can_be_named() -> None:
    policy = Policy.from_mapping(
        full_policy(
            APPROVE_RULE,
            admin={"quorum": [{"group": "admins", "threshold": 2}], "security_groups": ["treasury"]},
        ),
        "test.toml",
    )
    assert [name for name in ("alice", "bob", "carol", "dave") if policy.is_security(name)] == [
        "alice",
        "bob",
        "carol",
    ]


def test_governance_decision_is_the_admin_quorum() -> None:
    policy = Policy.from_mapping(full_policy(APPROVE_RULE), "test.toml")
    assert policy.governance_decision() == Decision(
        action="approve",
        rule="admin",
        reason="changes to custody need the admin quorum",
        policy_version=4,
        quorum=(QuorumTerm("admins", 2),),
    )


def test_governance_without_approvers_is_denied_rather_than_left_pending_forever() -> None:
    policy = single_rule_policy(keys=["ops"])
    decision = policy.governance_decision()
    assert decision.action == "deny"
    assert decision.quorum == ()
    assert "names no approvers" in decision.reason


def test_unknown_key_labels() -> None:
    policy = Policy.from_mapping(
        full_policy(APPROVE_RULE, {"name": "ops", "keys": ["ops", "hot"], "action": "sign"}), "test.toml"
    )
    assert policy.unknown_key_labels(frozenset({"ops", "cold"})) == frozenset({"treasury", "hot"})
    assert policy.unknown_key_labels(frozenset({"ops", "hot", "treasury"})) == frozenset()


def test_trace_json_round_trips_and_is_compact_and_stable() -> None:
    rules = [
        {"name": "ops", "keys": ["ops"], "action": "sign"},
        {**APPROVE_RULE, "velocity": VELOCITY, "destinations": [TOKEN]},
    ]
    evaluation = Policy.from_mapping(full_policy(*rules), "t").evaluate(TREASURY_TX, UsageBook(1, 2))
    text = trace_to_json(evaluation.trace)
    assert trace_from_json(text) == evaluation.trace
    assert trace_to_json(trace_from_json(text)) == text
    document = json.loads(text)
    assert [rule["rule"] for rule in document["rules"]] == ["ops", "treasury"]
    assert document["rules"][1]["conditions"][0] == {
        "condition": "keys",
        "detail": "key 'treasury' is in 'treasury'",
        "matched": True,
    }
    assert text == json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_empty_trace_round_trips() -> None:
    assert trace_from_json(trace_to_json(())) == ()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[]", id="not-an-object"),
        pytest.param('{"rules": {}}', id="rules-not-a-list"),
        pytest.param('{"rules": [], "extra": 1}', id="extra-key"),
        pytest.param('{"rules": [{"rule": "a", "matched": 1, "conditions": []}]}', id="matched-not-bool"),
        pytest.param('{"rules": [{"rule": "a", "matched": true}]}', id="conditions-missing"),
        pytest.param(
            '{"rules": [{"rule": "a", "matched": true, "conditions": [{"condition": "keys", "matched": true}]}]}',
            id="detail-missing",
        ),
    ],
)
def test_trace_from_json_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidInput, match="policy trace"):
        trace_from_json(text)


# ----------------------------------------------------------------------------------------------------
# Ed25519 public keys. The low-order encodings are the eight points of order 1, 2, 4 and 8 listed by
# libsodium's blocklist (src/libsodium/crypto_sign/ed25519/ref10/open.c, "small order" check) and in
# Chalkias et al., "Taming the many EdDSAs" (2020), table 6.

LOW_ORDER_POINTS = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
]
FIELD_PRIME = 2**255 - 19


def test_generated_public_keys_are_accepted_and_verify_their_signatures() -> None:
    for _ in range(20):
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes_raw()
        assert ed25519_public_key_problem(raw) is None
        Ed25519PublicKey.from_public_bytes(raw).verify(private.sign(b"statement"), b"statement")


@pytest.mark.parametrize("encoded", LOW_ORDER_POINTS)
def test_low_order_points_are_weak_keys(encoded: str) -> None:
    assert "weak" in (ed25519_public_key_problem(bytes.fromhex(encoded)) or "")


def test_point_with_a_torsion_component_is_a_weak_key() -> None:
    # Adding the point of order 2, (0, -1), to (x, y) gives (-x, -y): negate y and flip the sign of x.
    raw = new_public_key()
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x_sign = raw[31] >> 7
    mixed = ((FIELD_PRIME - y) | ((1 - x_sign) << 255)).to_bytes(32, "little")
    assert "weak" in (ed25519_public_key_problem(mixed) or "")


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("02" + "00" * 31, id="y-2-has-no-x"),
        pytest.param("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", id="y-equals-p"),
        pytest.param("ff" * 32, id="y-above-p"),
        pytest.param(
            "0100000000000000000000000000000000000000000000000000000000000080", id="x-zero-negative"
        ),
    ],
)
def test_non_points_are_refused(encoded: str) -> None:
    assert (
        ed25519_public_key_problem(bytes.fromhex(encoded))
        == "is not the encoding of a point on the Ed25519 curve"
    )


# ----------------------------------------------------------------------------------------------------
# Validation of approvers, admin and the new rule fields.

APPROVER_PREFIX = "policy.toml: approver 'alice': "
TREASURY_PREFIX = "policy.toml: rule 'treasury' (rules[0]): "


def approve_rule(**changes: Any) -> dict[str, Any]:
    return full_policy({**APPROVE_RULE, **changes})


def with_alice(**changes: Any) -> dict[str, Any]:
    document = full_policy(APPROVE_RULE)
    document["approvers"]["alice"] = {**document["approvers"]["alice"], **changes}
    return document


def without_alice_field(field: str) -> dict[str, Any]:
    document = full_policy(APPROVE_RULE)
    del document["approvers"]["alice"][field]
    return document


def sign_rule(**changes: Any) -> dict[str, Any]:
    return full_policy({"name": "treasury", "keys": ["treasury"], "action": "sign", **changes})


INVALID_ISSUE3_POLICIES = [
    # Approvers.
    pytest.param(
        full_policy(APPROVE_RULE, approvers=[]),
        "policy.toml: approvers: must be a table",
        id="approvers-list",
    ),
    pytest.param(
        full_policy(APPROVE_RULE, approvers={**approvers_table(**GROUPS), "bad id": {}}),
        "policy.toml: approvers: 'bad id' is not a valid approver id",
        id="approver-id",
    ),
    pytest.param(
        full_policy(APPROVE_RULE, approvers={**approvers_table(**GROUPS), "erin": "key"}),
        "policy.toml: approver 'erin': must be a table",
        id="approver-not-a-table",
    ),
    pytest.param(with_alice(role="x"), APPROVER_PREFIX + "unknown key 'role'", id="approver-unknown-key"),
    pytest.param(
        without_alice_field("public_key"), APPROVER_PREFIX + "public_key: is required", id="key-missing"
    ),
    pytest.param(
        with_alice(public_key="ab" * 31),
        APPROVER_PREFIX + "public_key: must be 64 hex digits",
        id="key-short",
    ),
    pytest.param(
        with_alice(public_key="0x" + "ab" * 31),
        APPROVER_PREFIX + "public_key: must be 64 hex digits",
        id="key-0x",
    ),
    pytest.param(
        with_alice(public_key="zz" * 32),
        APPROVER_PREFIX + "public_key: must be 64 hex digits",
        id="key-not-hex",
    ),
    pytest.param(
        with_alice(public_key=5), APPROVER_PREFIX + "public_key: must be 64 hex digits", id="key-int"
    ),
    pytest.param(
        with_alice(public_key="02" + "00" * 31),
        APPROVER_PREFIX + "public_key: is not the encoding of a point on the Ed25519 curve",
        id="key-not-a-point",
    ),
    pytest.param(
        with_alice(public_key=LOW_ORDER_POINTS[0]),
        APPROVER_PREFIX + "public_key: is a weak Ed25519 key",
        id="key-identity",
    ),
    pytest.param(
        full_policy(
            APPROVE_RULE,
            approvers={
                **approvers_table(**GROUPS),
                "erin": {"public_key": PUBLIC_KEYS["bob"].hex().upper(), "groups": ["treasury"]},
            },
        ),
        "policy.toml: approver 'erin': public_key: is the same key as approver 'bob''s",
        id="key-shared",
    ),
    pytest.param(without_alice_field("groups"), APPROVER_PREFIX + "groups: is required", id="groups-missing"),
    pytest.param(
        with_alice(groups=[]), APPROVER_PREFIX + "groups: must list at least one", id="groups-empty"
    ),
    pytest.param(
        with_alice(groups=["Treasury"]),
        APPROVER_PREFIX + "groups: 'Treasury' is not a valid group name",
        id="group-name",
    ),
    pytest.param(
        with_alice(groups=["admins", "admins"]),
        APPROVER_PREFIX + "groups: lists 'admins' twice",
        id="group-twice",
    ),
    # Admin.
    pytest.param(
        {k: v for k, v in full_policy(APPROVE_RULE).items() if k != "admin"},
        "policy.toml: admin: is required when the policy names approvers",
        id="admin-missing",
    ),
    pytest.param(
        full_policy(APPROVE_RULE, admin=[]), "policy.toml: admin: must be a table", id="admin-not-a-table"
    ),
    pytest.param(
        full_policy(APPROVE_RULE, admin={"quorum": [{"group": "admins", "threshold": 2}], "freeze": ["x"]}),
        "policy.toml: admin: unknown key 'freeze'",
        id="admin-unknown-key",
    ),
    pytest.param(
        full_policy(APPROVE_RULE, admin={}), "policy.toml: admin: quorum: is required", id="admin-no-quorum"
    ),
    pytest.param(
        full_policy(APPROVE_RULE, admin={"quorum": []}),
        "policy.toml: admin: quorum: must name at least one",
        id="admin-quorum-empty",
    ),
    pytest.param(
        full_policy(APPROVE_RULE, admin={"quorum": [{"group": "admins", "threshold": 4}]}),
        "policy.toml: admin: quorum[0]: threshold 4 is larger than group 'admins', which has 3 members",
        id="admin-threshold-too-big",
    ),
    pytest.param(
        full_policy(APPROVE_RULE, admin={"quorum": [{"group": "root", "threshold": 1}]}),
        "policy.toml: admin: quorum[0]: unknown group 'root': no approver lists it",
        id="admin-unknown-group",
    ),
    pytest.param(
        full_policy(
            APPROVE_RULE,
            admin={"quorum": [{"group": "admins", "threshold": 1}], "security_groups": ["guards"]},
        ),
        "policy.toml: admin: security_groups: unknown group 'guards'",
        id="security-unknown-group",
    ),
    pytest.param(
        full_policy(
            APPROVE_RULE, admin={"quorum": [{"group": "admins", "threshold": 1}], "security_groups": []}
        ),
        "policy.toml: admin: security_groups: must list at least one",
        id="security-empty",
    ),
    pytest.param(
        {"version": 1, "admin": {"quorum": [{"group": "admins", "threshold": 1}]}, "rules": [VALID_RULE]},
        "policy.toml: admin: quorum: the policy names no approvers",
        id="admin-without-approvers",
    ),
    # Quorum of approve rules.
    pytest.param(
        {k: v for k, v in full_policy(APPROVE_RULE).items() if k not in ("approvers", "admin")},
        TREASURY_PREFIX + "quorum: the policy names no approvers",
        id="approve-rule-without-approvers",
    ),
    pytest.param(
        full_policy({k: v for k, v in APPROVE_RULE.items() if k != "quorum"}),
        TREASURY_PREFIX + "quorum: is required for an approve rule",
        id="quorum-missing",
    ),
    pytest.param(
        approve_rule(quorum=[]), TREASURY_PREFIX + "quorum: must name at least one", id="quorum-empty"
    ),
    pytest.param(
        approve_rule(quorum={"group": "treasury"}),
        TREASURY_PREFIX + "quorum: must be a list",
        id="quorum-table",
    ),
    pytest.param(
        approve_rule(quorum=["treasury"]), TREASURY_PREFIX + "quorum[0]: must be a", id="term-string"
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "treasury"}]),
        TREASURY_PREFIX + "quorum[0]: must have exactly the keys 'group' and 'threshold'",
        id="term-no-threshold",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "treasury", "threshold": 1, "of": 3}]),
        TREASURY_PREFIX + "quorum[0]: must have exactly the keys",
        id="term-extra-key",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "treasury", "threshold": 0}]),
        TREASURY_PREFIX + "quorum[0]: threshold must be a positive integer, got 0",
        id="threshold-zero",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "treasury", "threshold": "2"}]),
        TREASURY_PREFIX + "quorum[0]: threshold must be a positive integer, got '2'",
        id="threshold-string",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "treasury", "threshold": True}]),
        TREASURY_PREFIX + "quorum[0]: threshold must be a positive integer, got True",
        id="threshold-bool",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "treasury", "threshold": 2}, {"group": "security", "threshold": 2}]),
        TREASURY_PREFIX + "quorum[1]: threshold 2 is larger than group 'security', which has 1 member",
        id="threshold-larger-than-group",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "auditors", "threshold": 1}]),
        TREASURY_PREFIX + "quorum[0]: unknown group 'auditors': no approver lists it (groups are 'admins',"
        " 'security', 'treasury')",
        id="unknown-group",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": 5, "threshold": 1}]),
        TREASURY_PREFIX + "quorum[0]: group must be a group name, got 5",
        id="group-not-a-string",
    ),
    pytest.param(
        approve_rule(quorum=[{"group": "treasury", "threshold": 1}, {"group": "treasury", "threshold": 1}]),
        TREASURY_PREFIX + "quorum[1]: names group 'treasury' twice",
        id="group-twice",
    ),
    # Approve-only fields on other rules.
    pytest.param(
        sign_rule(quorum=[{"group": "treasury", "threshold": 1}]),
        TREASURY_PREFIX + 'quorum: belongs to approve rules only, but this rule\'s action is "sign"',
        id="quorum-on-sign",
    ),
    pytest.param(
        full_policy({"name": "treasury", "keys": ["treasury"], "action": "deny", "lifetime_seconds": 600}),
        TREASURY_PREFIX + "lifetime_seconds: belongs to approve rules only",
        id="lifetime-on-deny",
    ),
    pytest.param(
        sign_rule(timelock_seconds=0),
        TREASURY_PREFIX + "timelock_seconds: belongs to approve rules only",
        id="timelock-on-sign",
    ),
    # Lifetime and time-lock.
    pytest.param(
        approve_rule(lifetime_seconds=59),
        TREASURY_PREFIX + "lifetime_seconds: must be an integer from 60 to 2592000 (30 days), got 59",
        id="lifetime-too-short",
    ),
    pytest.param(
        approve_rule(lifetime_seconds=2592001),
        TREASURY_PREFIX + "lifetime_seconds: must be an integer from 60 to 2592000",
        id="lifetime-too-long",
    ),
    pytest.param(
        approve_rule(lifetime_seconds="1d"),
        TREASURY_PREFIX + "lifetime_seconds: must be an integer from 60",
        id="lifetime-string",
    ),
    pytest.param(
        approve_rule(timelock_seconds=-1),
        TREASURY_PREFIX + "timelock_seconds: must be a non-negative integer, got -1",
        id="timelock-negative",
    ),
    pytest.param(
        approve_rule(timelock_seconds=1.5),
        TREASURY_PREFIX + "timelock_seconds: must be a non-negative integer, got 1.5",
        id="timelock-float",
    ),
    pytest.param(
        approve_rule(lifetime_seconds=3600, timelock_seconds=7200),
        TREASURY_PREFIX + "lifetime_seconds: 3600 s is not longer than the time-lock of 7200 s",
        id="lifetime-shorter-than-timelock",
    ),
    pytest.param(
        approve_rule(lifetime_seconds=3600, timelock_seconds=3600),
        TREASURY_PREFIX + "lifetime_seconds: 3600 s is not longer than the time-lock of 3600 s",
        id="lifetime-equal-to-timelock",
    ),
    pytest.param(
        approve_rule(timelock_seconds=86400),
        TREASURY_PREFIX + "lifetime_seconds: 86400 s is not longer than the time-lock of 86400 s",
        id="timelock-against-default-lifetime",
    ),
    # Kinds: governance requests are never decided by rules.
    pytest.param(
        approve_rule(kinds=["policy_change"]),
        TREASURY_PREFIX
        + "kinds: unknown kind 'policy_change'; allowed are 'authorization', 'message', 'transaction',"
        " 'typed_data'",
        id="kind-policy-change",
    ),
    # Destinations.
    pytest.param(
        approve_rule(destinations=[]),
        TREASURY_PREFIX + "destinations: must list at least one",
        id="dest-empty",
    ),
    pytest.param(
        approve_rule(destinations=TOKEN), TREASURY_PREFIX + "destinations: must be a list", id="dest-string"
    ),
    pytest.param(
        approve_rule(destinations=["0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]),
        TREASURY_PREFIX + "destinations: has a wrong EIP-55 checksum",
        id="dest-bad-checksum",
    ),
    pytest.param(
        approve_rule(destinations=[TOKEN[:-2]]),
        TREASURY_PREFIX + "destinations: must be 0x followed by 40 hex digits",
        id="dest-19-bytes",
    ),
    pytest.param(
        approve_rule(destinations=[1]), TREASURY_PREFIX + "destinations: must be a 0x-prefixed", id="dest-int"
    ),
    pytest.param(
        approve_rule(destinations=[TOKEN, TOKEN.lower()]),
        TREASURY_PREFIX + f"destinations: lists {TOKEN} twice",
        id="dest-twice",
    ),
    # Contracts.
    pytest.param(
        approve_rule(contracts=[]),
        TREASURY_PREFIX + "contracts: must list at least one",
        id="contracts-empty",
    ),
    pytest.param(
        approve_rule(contracts=TOKEN), TREASURY_PREFIX + "contracts: must be a list", id="contracts-string"
    ),
    pytest.param(
        approve_rule(contracts=[TOKEN]), TREASURY_PREFIX + "contracts[0]: must be a", id="contract-string"
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN}]),
        TREASURY_PREFIX + "contracts[0]: must have exactly the keys 'address' and 'selectors'",
        id="contract-no-selectors",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN, "selectors": []}]),
        TREASURY_PREFIX + "contracts[0].selectors: must list at least one",
        id="selectors-empty",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN.replace("a", "A", 1), "selectors": ["0xa9059cbb"]}]),
        TREASURY_PREFIX + "contracts[0].address: has a wrong EIP-55 checksum",
        id="contract-bad-checksum",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": "0x" + "00" * 21, "selectors": ["0xa9059cbb"]}]),
        TREASURY_PREFIX + "contracts[0].address: must be 0x followed by 40 hex digits",
        id="contract-21-bytes",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN, "selectors": ["a9059cbb"]}]),
        TREASURY_PREFIX + "contracts[0].selectors: 'a9059cbb' is not a function selector",
        id="selector-no-0x",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN, "selectors": ["0xa9059c"]}]),
        TREASURY_PREFIX + "contracts[0].selectors: '0xa9059c' is not a function selector",
        id="selector-short",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN, "selectors": ["0xa9059cbb00"]}]),
        TREASURY_PREFIX + "contracts[0].selectors: '0xa9059cbb00' is not a function selector",
        id="selector-long",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN, "selectors": ["transfer(address,uint256)"]}]),
        TREASURY_PREFIX + "contracts[0].selectors: 'transfer(address,uint256)' is not a function selector",
        id="selector-signature",
    ),
    pytest.param(
        approve_rule(contracts=[{"address": TOKEN, "selectors": ["0xa9059cbb", "0xA9059CBB"]}]),
        TREASURY_PREFIX + "contracts[0].selectors: lists 0xa9059cbb twice",
        id="selector-twice-any-case",
    ),
    pytest.param(
        approve_rule(
            contracts=[
                {"address": TOKEN, "selectors": ["0xa9059cbb"]},
                {"address": TOKEN.lower(), "selectors": ["0x095ea7b3"]},
            ]
        ),
        TREASURY_PREFIX + f"contracts[1]: lists contract {TOKEN} twice",
        id="contract-twice",
    ),
    # Velocity.
    pytest.param(approve_rule(velocity=5), TREASURY_PREFIX + "velocity: must be a table", id="velocity-int"),
    pytest.param(
        approve_rule(velocity={"window_seconds": 60, "max_count": 1, "per": "key"}),
        TREASURY_PREFIX + "velocity: unknown key 'per'",
        id="velocity-unknown-key",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 60}),
        TREASURY_PREFIX + "velocity: must set max_value_wei, max_count or both",
        id="velocity-no-limit",
    ),
    pytest.param(
        approve_rule(velocity={"max_count": 1}),
        TREASURY_PREFIX + "velocity.window_seconds: is required: an integer from 1 to 31622400",
        id="window-missing",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 0, "max_count": 1}),
        TREASURY_PREFIX
        + "velocity.window_seconds: is required: an integer from 1 to 31622400 (366 days), got 0",
        id="window-zero",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 31622401, "max_count": 1}),
        TREASURY_PREFIX + "velocity.window_seconds: is required: an integer from 1",
        id="window-too-long",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 60, "max_count": 0}),
        TREASURY_PREFIX + "velocity.max_count: must be a positive integer, got 0",
        id="count-zero",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 60, "max_count": "5"}),
        TREASURY_PREFIX + "velocity.max_count: must be a positive integer, got '5'",
        id="count-string",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 60, "max_value_wei": "-5"}),
        TREASURY_PREFIX + "velocity.max_value_wei: must be between 0 and 2**256-1, got -5",
        id="velocity-value-negative",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 60, "max_value_wei": "5 ether"}),
        TREASURY_PREFIX + "velocity.max_value_wei: must be an integer or a string of decimal digits",
        id="velocity-value-text",
    ),
    pytest.param(
        approve_rule(velocity={"window_seconds": 60, "max_count": 1, "freeze_on_breach": "yes"}),
        TREASURY_PREFIX + "velocity.freeze_on_breach: must be true or false, got 'yes'",
        id="freeze-not-bool",
    ),
]


@pytest.mark.parametrize(("document", "expected_start"), INVALID_ISSUE3_POLICIES)
def test_invalid_approvers_admin_and_rule_fields_are_refused(
    document: dict[str, Any], expected_start: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_mapping(document, "policy.toml")
    assert raised.value.message.startswith(expected_start), raised.value.message
    assert "\n" not in raised.value.message


def test_full_example_of_the_format_is_valid() -> None:
    text = f"""
version = 2

[approvers.alice]
public_key = "{PUBLIC_KEYS["alice"].hex()}"
groups = ["treasury", "admins"]
[approvers.bob]
public_key = "{PUBLIC_KEYS["bob"].hex()}"
groups = ["treasury"]
[approvers.dave]
public_key = "{PUBLIC_KEYS["dave"].hex()}"
groups = ["security", "admins"]

[admin]
quorum = [{{ group = "admins", threshold = 2 }}]
security_groups = ["security"]

[[rules]]
name = "treasury-transfers"
keys = ["treasury"]
chain_ids = [1, 11155111]
kinds = ["transaction"]
transaction_types = ["eip1559"]
destinations = ["{TOKEN}"]
contracts = [{{ address = "{TOKEN}", selectors = ["0xa9059cbb", "0x095ea7b3"] }}]
max_value_wei = "100000000000000000000"
velocity = {{ window_seconds = 86400, max_value_wei = "5000000000000000000", max_count = 20, freeze_on_breach = true }}
action = "approve"
quorum = [{{ group = "treasury", threshold = 2 }}, {{ group = "security", threshold = 1 }}]
lifetime_seconds = 86400
timelock_seconds = 3600
"""
    policy = parse_policy_text(text, "policy.toml")
    (rule,) = policy.rules
    assert rule.velocity == VelocityLimit(86400, 5 * ONE_ETHER, 20, freeze_on_breach=True)
    evaluation = policy.evaluate(TREASURY_TX, UsageBook(19, 5 * ONE_ETHER))
    assert evaluation.decision.quorum == (QuorumTerm("treasury", 2), QuorumTerm("security", 1))
    assert evaluation.decision.timelock_seconds == 3600
    assert [c.condition for c in evaluation.trace[0].conditions] == [
        "keys",
        "chain_ids",
        "kinds",
        "transaction_types",
        "destinations",
        "contracts",
        "max_value_wei",
        "velocity",
    ]
    assert all(c.matched for c in evaluation.trace[0].conditions)
    breached = policy.evaluate(TREASURY_TX, UsageBook(20, 0))
    assert (breached.decision.action, breached.freeze_key) == ("deny", True)


# ----------------------------------------------------------------------------------------------------
# The development policy: key "ops" signs EIP-1559 and legacy transactions of at most 1 ether on chains 1 and
# 11155111 that are plain ether transfers, the EIP-712 Mail example of its own domain and short text messages;
# "treasury" needs 2 of alice, bob and carol for transactions on those chains; dave is the security approver;
# changes need 2 of all four. (Safe transactions and admin intents: tests/unit/domain/test_policy_intents_dev.py.)

DEV_KEYS = {name: PUBLIC_KEYS[name].hex() for name in ("alice", "bob", "carol", "dave")}
MAIL_CONTRACT = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"


def as_decoded(facts: RequestFacts) -> RequestFacts:
    """``facts`` with the intents the decoder finds in such a payload: a plain ether transfer, the EIP-712 Mail
    example (with the facts' chain id in its domain), or a short text message."""
    if facts.kind is PayloadKind.TRANSACTION:
        assert facts.to is not None
        intent = Intent(
            IntentKind.NATIVE_TRANSFER,
            parties=(Party(PartyRole.RECIPIENT, facts.to),),
            amounts=(TokenAmount(None, facts.value),),
        )
    elif facts.kind is PayloadKind.TYPED_DATA:
        domain = TypedDataDomain("Ether Mail", "1", facts.chain_id, MAIL_CONTRACT)
        intent = Intent(IntentKind.TYPED_DATA, contract=MAIL_CONTRACT, subject="Mail", domain=domain)
    else:
        intent = Intent(IntentKind.TEXT_MESSAGE, text="hello", size=5)
    return replace(facts, intents=(intent,))


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
    pytest.param(TYPED_DATA, "sign", "ops-mail", id="mail"),
    # The Mail rule names its domain's chain id: the same typed data without it is another domain.
    pytest.param(replace(TYPED_DATA, chain_id=None), "deny", None, id="mail-without-chain-id"),
    pytest.param(MESSAGE, "sign", "ops-messages", id="message"),
    pytest.param(
        replace(EIP1559_MAINNET, key_label="treasury", value=100 * ONE_ETHER),
        "approve",
        "treasury-transactions",
        id="treasury-tx-mainnet",
    ),
    pytest.param(
        replace(EIP1559_MAINNET, key_label="treasury", transaction_type="eip2930", chain_id=11155111),
        "approve",
        "treasury-transactions",
        id="treasury-tx-sepolia-any-type",
    ),
    pytest.param(
        replace(EIP1559_MAINNET, key_label="treasury", chain_id=137), "deny", None, id="treasury-other-chain"
    ),
    # Treasury typed data is a SafeTx of its Safe or nothing.
    pytest.param(replace(TYPED_DATA, key_label="treasury"), "deny", None, id="treasury-mail"),
    pytest.param(replace(MESSAGE, key_label="treasury"), "deny", None, id="treasury-message"),
    # Fee caps: 0.05 ether for ops transactions and 0.1 ether for treasury transactions, both inclusive.
    pytest.param(
        replace(EIP1559_MAINNET, max_fee_wei=5 * 10**16), "sign", "ops-transactions", id="ops-fee-at-cap"
    ),
    pytest.param(replace(EIP1559_MAINNET, max_fee_wei=5 * 10**16 + 1), "deny", None, id="ops-fee-over-cap"),
    pytest.param(
        replace(EIP1559_MAINNET, transaction_type="legacy", max_fee_wei=5 * 10**16 + 1),
        "deny",
        None,
        id="ops-legacy-fee-over-cap",
    ),
    pytest.param(replace(EIP1559_MAINNET, max_fee_wei=None), "deny", None, id="ops-transaction-without-fee"),
    pytest.param(
        replace(EIP1559_MAINNET, key_label="treasury", max_fee_wei=10**17),
        "approve",
        "treasury-transactions",
        id="treasury-fee-at-cap",
    ),
    pytest.param(
        replace(EIP1559_MAINNET, key_label="treasury", max_fee_wei=10**17 + 1),
        "deny",
        None,
        id="treasury-fee-over-cap",
    ),
]


@pytest.mark.parametrize(("facts", "action", "rule"), DEV_POLICY_CASES)
def test_dev_policy_decides_as_described(facts: RequestFacts, action: str, rule: str | None) -> None:
    policy = parse_policy_text(dev_policy_toml(DEV_KEYS), "policy.toml")
    evaluation = policy.evaluate(as_decoded(facts))
    decision = evaluation.decision
    assert (decision.action, decision.rule) == (action, rule)
    assert decision.policy_version == 1
    if action == "approve":
        assert decision.quorum == (QuorumTerm("treasury", 2),)
        assert decision.timelock_seconds == 0
        assert evaluation.lifetime_seconds == 24 * 3600


def test_dev_policy_approvers_admin_quorum_and_security() -> None:
    policy = parse_policy_text(dev_policy_toml(DEV_KEYS), "policy.toml")
    assert {name: approver.public_key.hex() for name, approver in policy.approvers.items()} == DEV_KEYS
    members = policy.group_members()
    assert members["treasury"] == frozenset({"alice", "bob", "carol"})
    assert members["admins"] == frozenset({"alice", "bob", "carol", "dave"})
    assert [name for name in DEV_KEYS if policy.is_security(name)] == ["dave"]
    assert policy.governance_decision().quorum == (QuorumTerm("admins", 2),)
    assert policy.key_labels() == frozenset({"ops", "treasury"})


def test_dev_policy_is_commented_for_a_new_reader() -> None:
    lines = dev_policy_toml(DEV_KEYS).splitlines()
    comments = [line for line in lines if line.startswith("#")]
    for topic in ("treasury", "quorum", "policy propose", "deny by default", "freeze", "max_fee_wei"):
        assert any(topic in line for line in comments), topic
    # What the value cap does not cover is said in so many words.
    condition_list = " ".join(line.lstrip("# ").strip() for line in comments)
    assert "It covers the ether value only: not token amounts in calldata" in condition_list
    assert "and not fees" in condition_list


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param(
            {k: v for k, v in DEV_KEYS.items() if k != "dave"}, "needs public keys for exactly", id="missing"
        ),
        pytest.param({**DEV_KEYS, "erin": DEV_KEYS["bob"]}, "needs public keys for exactly", id="extra"),
        pytest.param(
            {**DEV_KEYS, "bob": "ab" * 31}, "bob's approver public key must be 64 hex digits", id="short"
        ),
        pytest.param(
            {**DEV_KEYS, "bob": DEV_KEYS["bob"][:-1] + '"\n[[rules]]'},
            "bob's approver public key must be 64 hex digits",
            id="injection",
        ),
        pytest.param(
            {**DEV_KEYS, "bob": DEV_KEYS["alice"]}, "approver 'bob': public_key: is the same key", id="shared"
        ),
        pytest.param(
            {**DEV_KEYS, "bob": "02" + "00" * 31},
            "public_key: is not the encoding of a point",
            id="not-a-point",
        ),
    ],
)
def test_dev_policy_refuses_bad_keys(keys: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        dev_policy_toml(keys)


# ----------------------------------------------------------------------------------------------------
# Replacements: a second payload for a nonce already used passes only rules that allow it explicitly.


def test_a_replacement_matches_only_a_rule_that_allows_replacements() -> None:
    policy = Policy.from_mapping(
        {
            "version": 1,
            "rules": [
                {"name": "plain", "keys": ["ops"], "action": "sign"},
                {"name": "fee-bumps", "keys": ["ops"], "action": "sign", "allow_replacement": True},
            ],
        },
        "test.toml",
    )
    assert policy.evaluate(EIP1559_MAINNET).decision.rule == "plain"
    replacement = policy.evaluate(replace(EIP1559_MAINNET, replacement=True))
    assert replacement.decision.rule == "fee-bumps"
    refused = replacement.trace[0].conditions[-1]
    assert (refused.condition, refused.matched) == ("replacement", False)


def test_a_replacement_is_denied_by_default_without_such_a_rule() -> None:
    policy = single_rule_policy(keys=["ops"])
    evaluation = policy.evaluate(replace(EIP1559_MAINNET, replacement=True))
    assert evaluation.decision.action == "deny"
    # Requests that replace nothing are not burdened with the condition in their trace.
    assert [c.condition for c in policy.evaluate(EIP1559_MAINNET).trace[0].conditions] == ["keys"]


def test_allow_replacement_must_be_a_boolean() -> None:
    with pytest.raises(ConfigurationError, match="allow_replacement: must be true or false"):
        single_rule_policy(keys=["ops"], allow_replacement="yes")


# ----------------------------------------------------------------------------------------------------
# Fee caps on payloads as the daemon parses them: the facts carry the parser's maximum fee (gas times
# maxFeePerGas, or gas times gasPrice), and the cap is inclusive.

FEE_CAP = 21000 * 30 * GWEI  # 0.00063 ether
LEGACY_FEES = {"gasPrice": 30 * GWEI}
EIP1559_FEES = {"maxFeePerGas": 30 * GWEI, "maxPriorityFeePerGas": GWEI}


def parsed_facts(kind: PayloadKind, payload: bytes, key_label: str = "ops") -> RequestFacts:
    """The facts the daemon derives from a payload, field by field from the parsed payload."""
    parsed = parse_payload(kind, payload)
    return RequestFacts(
        key_label=key_label,
        kind=parsed.kind,
        chain_id=parsed.chain_id,
        transaction_type=parsed.transaction_type,
        to=parsed.to,
        value=parsed.value,
        selector=parsed.selector,
        max_fee_wei=parsed.max_fee_wei,
        intents=payload_intents(parsed),
    )


def transaction_facts(gas: int, fees: dict[str, int], value: int = 0) -> RequestFacts:
    transaction = {"chainId": 1, "nonce": 0, "to": TOKEN, "value": value, "gas": gas, **fees}
    return parsed_facts(PayloadKind.TRANSACTION, json.dumps(transaction).encode())


FEE_CAP_CASES = [
    # (gas, fee fields, action): at the cap, and one wei over it (as much gas as wei, at 1 wei per gas).
    pytest.param(21000, EIP1559_FEES, "sign", id="eip1559-at-cap"),
    pytest.param(
        FEE_CAP + 1, {"maxFeePerGas": 1, "maxPriorityFeePerGas": 1}, "deny", id="eip1559-one-wei-over"
    ),
    pytest.param(21000, LEGACY_FEES, "sign", id="legacy-at-cap"),
    pytest.param(FEE_CAP + 1, {"gasPrice": 1}, "deny", id="legacy-one-wei-over"),
    pytest.param(21001, LEGACY_FEES, "deny", id="legacy-one-more-gas"),
    pytest.param(21000, {**LEGACY_FEES, "accessList": []}, "sign", id="eip2930-at-cap"),
    pytest.param(
        # The reviewers' transaction: a value of 0.01 ether does not excuse a fee of 30,000 ether.
        30_000_000,
        {"maxFeePerGas": 10**15, "maxPriorityFeePerGas": GWEI},
        "deny",
        id="reviewers-30000-ether-fee",
    ),
]


@pytest.mark.parametrize(("gas", "fees", "action"), FEE_CAP_CASES)
def test_fee_cap_signs_at_the_cap_and_denies_one_wei_over(
    gas: int, fees: dict[str, int], action: str
) -> None:
    policy = single_rule_policy(keys=["ops"], max_value_wei=str(ONE_ETHER), max_fee_wei=str(FEE_CAP))
    facts = transaction_facts(gas, fees, value=10**16)
    evaluation = policy.evaluate(facts)
    assert evaluation.decision.action == action
    (fee_outcome,) = [c for c in evaluation.trace[0].conditions if c.condition == "max_fee_wei"]
    assert fee_outcome.matched is (action == "sign")
    # The value condition passed either way: the fee alone decided.
    (value_outcome,) = [c for c in evaluation.trace[0].conditions if c.condition == "max_value_wei"]
    assert value_outcome.matched


def test_messages_and_typed_data_never_match_a_rule_with_a_fee_cap() -> None:
    policy = Policy.from_mapping(
        {
            "version": 1,
            "rules": [
                {"name": "capped", "keys": ["ops"], "max_fee_wei": str(2**256 - 1), "action": "sign"},
                {"name": "fallback", "keys": ["ops"], "action": "deny"},
            ],
        },
        "test.toml",
    )
    typed_data = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
            "Note": [{"name": "text", "type": "string"}],
        },
        "primaryType": "Note",
        "domain": {"name": "Fees", "chainId": 1},
        "message": {"text": "not a transaction"},
    }
    requests = {
        "message": parsed_facts(PayloadKind.MESSAGE, b"hello"),
        "typed_data": parsed_facts(PayloadKind.TYPED_DATA, json.dumps(typed_data).encode()),
    }
    for kind, facts in requests.items():
        evaluation = policy.evaluate(facts)
        assert evaluation.decision.rule == "fallback", kind
        (fee_outcome,) = [c for c in evaluation.trace[0].conditions if c.condition == "max_fee_wei"]
        assert not fee_outcome.matched
        assert fee_outcome.detail.startswith(f"the request is {kind!r}, not a transaction")
    # Even the largest cap lets a transaction through, so the rule is not simply broken.
    assert policy.evaluate(transaction_facts(21000, EIP1559_FEES)).decision.rule == "capped"


def test_the_fee_cap_is_in_the_trace_with_amounts_in_wei_and_ether() -> None:
    policy = single_rule_policy(keys=["ops"], max_value_wei=5, max_fee_wei="50000000000000000")
    over = policy.evaluate(transaction_facts(30_000_000, {"maxFeePerGas": 10**15, "maxPriorityFeePerGas": 1}))
    conditions = {outcome.condition: outcome for outcome in over.trace[0].conditions}
    assert list(conditions) == ["keys", "max_value_wei", "max_fee_wei"]
    assert conditions["max_fee_wei"].detail == (
        "maximum fee 30000000000000000000000 wei (30000 ether) exceeds the cap of 50000000000000000 wei"
        " (0.05 ether)"
    )
    within = policy.evaluate(transaction_facts(21000, EIP1559_FEES))
    assert within.trace[0].conditions[-1].detail == (
        "maximum fee 630000000000000 wei (0.00063 ether) is at most the cap of 50000000000000000 wei"
        " (0.05 ether)"
    )
    # The trace kept with the request for `policy explain` carries the condition like any other.
    assert trace_from_json(trace_to_json(over.trace)) == over.trace
    assert '"condition":"max_fee_wei"' in trace_to_json(over.trace)


def test_a_denial_names_what_stopped_the_rules_for_the_key() -> None:
    policy = parse_policy_text(dev_policy_toml(DEV_KEYS), "policy.toml")
    facts = replace(
        transaction_facts(30_000_000, {"maxFeePerGas": 10**15, "maxPriorityFeePerGas": GWEI}, 10**16),
        chain_id=11155111,
    )
    decision = policy.evaluate(facts).decision
    assert (decision.action, decision.rule) == ("deny", None)
    # The treasury rules are for another key, so they are not mentioned.
    assert decision.reason == (
        "no rule allows this request (deny by default);"
        " rule 'ops-transactions' did not match: maximum fee 30000000000000000000000 wei (30000 ether) exceeds"
        " the cap of 50000000000000000 wei (0.05 ether);"
        " rule 'ops-mail' did not match: kind 'transaction' is not in 'typed_data'; intent 1: native_transfer is"
        " not of an allowed kind ('typed_data'); the request is 'transaction', not typed data; the rule allows"
        " only typed data of primary type 'Mail';"
        " rule 'ops-messages' did not match: kind 'transaction' is not in 'message'; intent 1: native_transfer is"
        " not of an allowed kind ('text_message'); the request is 'transaction', not a message; the rule's message"
        " conditions need one"
    )


def test_a_denial_names_at_most_three_rules() -> None:
    rules = [
        {"name": f"cap-{index}", "keys": ["ops"], "max_value_wei": index, "action": "sign"}
        for index in range(5)
    ]
    decision = Policy.from_mapping({"version": 1, "rules": rules}, "t").evaluate(EIP1559_MAINNET).decision
    assert decision.reason.startswith(NO_MATCH_REASON + "; rule 'cap-0' did not match: value ")
    assert [name for name in ("cap-0", "cap-1", "cap-2", "cap-3", "cap-4") if name in decision.reason] == [
        "cap-0",
        "cap-1",
        "cap-2",
    ]
    assert decision.reason.endswith("; and 2 more rules (see policy explain)")


# ----------------------------------------------------------------------------------------------------
# Quorums that no set of approvers could meet: one approver fills one seat, so terms over overlapping groups
# can need more distinct people than the groups hold.

PAIR_AND_SOLO = {
    "alice": {"public_key": PUBLIC_KEYS["alice"].hex(), "groups": ["pair", "solo"]},
    "bob": {"public_key": PUBLIC_KEYS["bob"].hex(), "groups": ["pair"]},
}


def test_a_rule_quorum_that_cannot_be_met_is_refused_naming_the_rule_and_terms() -> None:
    document = full_policy(
        {**APPROVE_RULE, "quorum": [{"group": "pair", "threshold": 2}, {"group": "solo", "threshold": 1}]},
        approvers=PAIR_AND_SOLO,
        admin={"quorum": [{"group": "pair", "threshold": 1}]},
    )
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_mapping(document, "policy.toml")
    assert raised.value.message == (
        "policy.toml: rule 'treasury' (rules[0]): quorum: 2 of pair AND 1 of solo can never be met: one approver"
        " fills one seat only, and the members of these groups can fill at most 2 of its 3 seats"
    )


def test_an_admin_quorum_that_cannot_be_met_is_refused() -> None:
    document = full_policy(
        APPROVE_RULE,
        admin={"quorum": [{"group": "treasury", "threshold": 3}, {"group": "admins", "threshold": 2}]},
    )
    # treasury is alice, bob and carol; admins is alice, bob and dave: four people for five seats.
    with pytest.raises(ConfigurationError) as raised:
        Policy.from_mapping(document, "policy.toml")
    assert raised.value.message == (
        "policy.toml: admin: quorum: 3 of treasury AND 2 of admins can never be met: one approver fills one seat"
        " only, and the members of these groups can fill at most 4 of its 5 seats"
    )


@pytest.mark.parametrize(
    "quorum",
    [
        pytest.param([{"group": "treasury", "threshold": 3}, {"group": "admins", "threshold": 1}], id="dave"),
        pytest.param([{"group": "treasury", "threshold": 2}, {"group": "admins", "threshold": 2}], id="four"),
        pytest.param(
            [
                {"group": "treasury", "threshold": 1},
                {"group": "security", "threshold": 1},
                {"group": "admins", "threshold": 2},
            ],
            id="everyone-seated",
        ),
    ],
)
def test_overlapping_quorums_that_distinct_people_can_meet_are_accepted(quorum: list[dict[str, Any]]) -> None:
    policy = Policy.from_mapping(full_policy({**APPROVE_RULE, "quorum": quorum}), "policy.toml")
    assert policy.rules[0].quorum == tuple(QuorumTerm(term["group"], term["threshold"]) for term in quorum)

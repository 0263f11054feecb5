"""Blob and set-code transactions and EIP-7702 authorizations under policy: denied unless a rule names them,
delegates judged by an allowlist, chain id 0 only with ``any_chain = true``.

Payloads are parsed and decoded by custody (as the daemon does) and judged by the development policy's text,
or by that text with one rule added, the way an operator would paste it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.app.integrity import request_facts
from custody.chains.evm import parse_payload
from custody.domain.errors import ConfigurationError
from custody.domain.policy import Policy, RequestFacts
from custody.domain.requests import DecisionAction, PayloadKind
from custody.policy_file import DEV_APPROVERS, dev_policy_toml, parse_policy_text
from tests import evm_payloads as payloads

SEPOLIA = 11155111
RECIPIENT = payloads.PAYEE
DELEGATE = payloads.EXAMPLE_DELEGATE
OTHER_DELEGATE = payloads.ATTACKER
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# One delegate on one chain, for the ops key, with the treasury's approval.
DELEGATION_RULE = f"""
[[rules]]
name = "ops-delegation"
keys = ["ops"]
kinds = ["authorization"]
chain_ids = [{SEPOLIA}]
intents = ["authorization"]
delegates = ["{DELEGATE}"]
action = "approve"
quorum = [{{ group = "treasury", threshold = 2 }}]
"""


@pytest.fixture(scope="module")
def dev_text() -> str:
    keys = {
        name: Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex() for name in DEV_APPROVERS
    }
    return dev_policy_toml(keys)


@pytest.fixture(scope="module")
def dev_policy(dev_text: str) -> Policy:
    return parse_policy_text(dev_text, "policy.toml")


def facts(key: str, kind: PayloadKind, payload: dict[str, Any]) -> RequestFacts:
    parsed = parse_payload(kind, json.dumps(payload).encode())
    return request_facts(key, parsed, replacement=False, now=NOW)


def blob_transaction(**fields: Any) -> dict[str, Any]:
    return {**payloads.blob_transaction(RECIPIENT, 0, value=10**17), **fields}


def signed_tuple(chain_id: int, delegate: str = DELEGATE, nonce: int = 1) -> dict[str, Any]:
    return payloads.signed_authorization(chain_id, delegate, nonce)


def set_code_transaction(*authorizations: dict[str, Any], **fields: Any) -> dict[str, Any]:
    carried = list(authorizations) or [signed_tuple(SEPOLIA)]
    transaction = payloads.set_code_transaction(RECIPIENT, 0, carried, value=10**17)
    return {**transaction, **fields}


def authorization(chain_id: int = SEPOLIA, delegate: str = DELEGATE, nonce: int = 0) -> dict[str, Any]:
    return {"chainId": chain_id, "address": delegate, "nonce": nonce}


@pytest.mark.parametrize("key", ["ops", "treasury"])
def test_the_development_policy_denies_blob_transactions_naming_the_missing_rule(
    dev_policy: Policy, key: str
) -> None:
    decision = dev_policy.evaluate(facts(key, PayloadKind.TRANSACTION, blob_transaction())).decision
    assert decision.action is DecisionAction.DENY
    assert decision.rule is None
    assert "'eip4844'" in decision.reason
    if key == "treasury":
        # The treasury rules name no transaction types: they are written for ordinary transactions, and a plain
        # ether transfer in a blob transaction must not start matching them.
        assert "is allowed only by a rule whose transaction_types names it" in decision.reason


@pytest.mark.parametrize("key", ["ops", "treasury"])
def test_the_development_policy_denies_set_code_transactions_naming_the_missing_rule(
    dev_policy: Policy, key: str
) -> None:
    decision = dev_policy.evaluate(facts(key, PayloadKind.TRANSACTION, set_code_transaction())).decision
    assert decision.action is DecisionAction.DENY
    assert "'eip7702'" in decision.reason
    assert "authorization" in decision.reason


@pytest.mark.parametrize("key", ["ops", "treasury"])
@pytest.mark.parametrize("chain_id", [0, SEPOLIA])
def test_the_development_policy_denies_authorizations_naming_the_missing_rule(
    dev_policy: Policy, key: str, chain_id: int
) -> None:
    decision = dev_policy.evaluate(facts(key, PayloadKind.AUTHORIZATION, authorization(chain_id))).decision
    assert decision.action is DecisionAction.DENY
    assert decision.rule is None
    assert "kind 'authorization' is not in" in decision.reason


def test_a_rule_without_kinds_or_transaction_types_does_not_match_the_new_kinds_and_types() -> None:
    policy = Policy.from_mapping(
        {"version": 1, "rules": [{"name": "all", "keys": ["ops"], "action": "sign"}]}, "t"
    )
    assert (
        policy.evaluate(facts("ops", PayloadKind.TRANSACTION, blob_transaction())).decision.action
        is DecisionAction.DENY
    )
    decision = policy.evaluate(facts("ops", PayloadKind.AUTHORIZATION, authorization())).decision
    assert decision.action is DecisionAction.DENY
    assert "kind 'authorization' is allowed only by a rule whose kinds names it" in decision.reason
    # A plain transfer is still signed: the guards say nothing about what they do not guard.
    transfer = blob_transaction(type=2)
    del transfer["maxFeePerBlobGas"], transfer["blobVersionedHashes"]
    assert (
        policy.evaluate(facts("ops", PayloadKind.TRANSACTION, transfer)).decision.action
        is DecisionAction.SIGN
    )


def test_a_deny_rule_without_kinds_still_denies_authorizations() -> None:
    policy = Policy.from_mapping(
        {"version": 1, "rules": [{"name": "stop", "keys": ["ops"], "action": "deny"}]}, "t"
    )
    decision = policy.evaluate(facts("ops", PayloadKind.AUTHORIZATION, authorization())).decision
    assert (decision.action, decision.rule) == (DecisionAction.DENY, "stop")


def test_the_example_delegation_rule_allows_exactly_one_delegate_on_one_chain(dev_text: str) -> None:
    policy = parse_policy_text(dev_text + DELEGATION_RULE, "policy.toml")
    decision = policy.evaluate(facts("ops", PayloadKind.AUTHORIZATION, authorization())).decision
    assert (decision.action, decision.rule) == (DecisionAction.APPROVE, "ops-delegation")

    refused = {
        "another delegate": facts("ops", PayloadKind.AUTHORIZATION, authorization(delegate=OTHER_DELEGATE)),
        "another chain": facts("ops", PayloadKind.AUTHORIZATION, authorization(chain_id=1)),
        "every chain": facts("ops", PayloadKind.AUTHORIZATION, authorization(chain_id=0)),
        "another key": facts("treasury", PayloadKind.AUTHORIZATION, authorization()),
        "a set-code transaction": facts("ops", PayloadKind.TRANSACTION, set_code_transaction()),
    }
    for what, request in refused.items():
        assert policy.evaluate(request).decision.action is DecisionAction.DENY, what


def set_code_rule(**fields: Any) -> dict[str, Any]:
    return {
        "name": "set-code",
        "keys": ["ops"],
        "kinds": ["transaction"],
        "transaction_types": ["eip7702"],
        "intents": ["native_transfer", "authorization"],
        "delegates": [DELEGATE],
        "action": "sign",
        **fields,
    }


def test_a_set_code_transaction_needs_every_authorization_it_carries_allowed() -> None:
    policy = Policy.from_mapping({"version": 1, "rules": [set_code_rule()]}, "t")
    allowed = facts("ops", PayloadKind.TRANSACTION, set_code_transaction(signed_tuple(SEPOLIA)))
    assert policy.evaluate(allowed).decision.action is DecisionAction.SIGN

    one_other = set_code_transaction(signed_tuple(SEPOLIA), signed_tuple(SEPOLIA, OTHER_DELEGATE, nonce=2))
    decision = policy.evaluate(facts("ops", PayloadKind.TRANSACTION, one_other)).decision
    assert decision.action is DecisionAction.DENY
    assert f"delegate {OTHER_DELEGATE}" in decision.reason

    every_chain = facts("ops", PayloadKind.TRANSACTION, set_code_transaction(signed_tuple(0)))
    decision = policy.evaluate(every_chain).decision
    assert decision.action is DecisionAction.DENY
    assert "no any_chain = true" in decision.reason
    any_chain = Policy.from_mapping({"version": 1, "rules": [set_code_rule(any_chain=True)]}, "t")
    assert any_chain.evaluate(every_chain).decision.action is DecisionAction.SIGN


def test_a_set_code_transaction_is_judged_by_its_calldata_intents_too() -> None:
    policy = Policy.from_mapping({"version": 1, "rules": [set_code_rule()]}, "t")
    # transfer(address,uint256): an ERC-20 transfer, which the rule's intents do not name.
    calldata = "0xa9059cbb" + RECIPIENT[2:].lower().rjust(64, "0") + "01".rjust(64, "0")
    request = facts("ops", PayloadKind.TRANSACTION, set_code_transaction(data=calldata, gas=100000))
    decision = policy.evaluate(request).decision
    assert decision.action is DecisionAction.DENY
    assert "erc20_transfer" in decision.reason


def test_a_rule_without_authorization_in_its_intents_does_not_match_a_set_code_transaction() -> None:
    rule = {**set_code_rule(), "intents": ["native_transfer"]}
    del rule["delegates"]
    policy = Policy.from_mapping({"version": 1, "rules": [rule]}, "t")
    decision = policy.evaluate(facts("ops", PayloadKind.TRANSACTION, set_code_transaction())).decision
    assert decision.action is DecisionAction.DENY
    assert "authorization" in decision.reason


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"delegates": None}, "delegates: is required: intents names 'authorization'"),
        ({"delegates": []}, "delegates: must list at least one address"),
        ({"delegates": ["0x1234"]}, "delegates:"),
        (
            {"delegates": [DELEGATE], "intents": ["native_transfer"]},
            "delegates: applies only to intents of kind",
        ),
        ({"any_chain": "yes"}, "any_chain: must be true or false"),
        ({"any_chain": True, "delegates": None}, "any_chain: applies to the delegates a rule allows"),
        ({"any_chain": True, "chain_ids": [SEPOLIA]}, "any_chain: lets through authorizations of chain id 0"),
        (
            {"any_chain": True, "action": "deny"},
            "any_chain: lets authorizations of chain id 0 through a rule",
        ),
    ],
)
def test_malformed_delegation_rules_are_refused_naming_the_field(
    fields: dict[str, Any], problem: str
) -> None:
    rule = {**set_code_rule(), **fields}
    for name, value in fields.items():
        if value is None:
            del rule[name]
    with pytest.raises(ConfigurationError) as refused:
        Policy.from_mapping({"version": 1, "rules": [rule]}, "policy.toml")
    assert problem in refused.value.message


def deny_then_allow(deny_rule: dict[str, Any], **allow_fields: Any) -> Policy:
    """A deny rule before a rule that would sign set-code transactions for both delegates."""
    deny = {"name": "deny", "keys": ["ops"], "action": "deny", **deny_rule}
    allow = set_code_rule(delegates=[DELEGATE, OTHER_DELEGATE], **allow_fields)
    return Policy.from_mapping({"version": 1, "rules": [deny, allow]}, "t")


@pytest.mark.parametrize(
    "deny_rule",
    [
        {"intents": ["authorization"], "delegates": [OTHER_DELEGATE]},
        {"delegates": [OTHER_DELEGATE]},
    ],
    ids=["with-intents", "delegates-alone"],
)
def test_a_deny_rule_on_a_delegate_denies_a_set_code_transaction_carrying_a_tuple_for_it(
    deny_rule: dict[str, Any],
) -> None:
    policy = deny_then_allow(deny_rule)
    denied = {
        "its tuple alone": set_code_transaction(signed_tuple(SEPOLIA, OTHER_DELEGATE)),
        "its tuple beside an allowed one": set_code_transaction(
            signed_tuple(SEPOLIA), signed_tuple(SEPOLIA, OTHER_DELEGATE, nonce=2)
        ),
        "its tuple and no value": set_code_transaction(signed_tuple(SEPOLIA, OTHER_DELEGATE), value=0),
    }
    for what, transaction in denied.items():
        decision = policy.evaluate(facts("ops", PayloadKind.TRANSACTION, transaction)).decision
        assert (decision.action, decision.rule) == (DecisionAction.DENY, "deny"), what
    standalone = policy.evaluate(
        facts("ops", PayloadKind.AUTHORIZATION, authorization(delegate=OTHER_DELEGATE))
    ).decision
    assert (standalone.action, standalone.rule) == (DecisionAction.DENY, "deny")
    # Another delegate is not what the deny rule names: the allow rule after it decides.
    allowed = policy.evaluate(facts("ops", PayloadKind.TRANSACTION, set_code_transaction())).decision
    assert (allowed.action, allowed.rule) == (DecisionAction.SIGN, "set-code")


def test_a_deny_rule_naming_authorization_denies_every_set_code_transaction() -> None:
    policy = deny_then_allow({"intents": ["authorization"]})
    for transaction in (set_code_transaction(), set_code_transaction(value=0)):
        decision = policy.evaluate(facts("ops", PayloadKind.TRANSACTION, transaction)).decision
        assert (decision.action, decision.rule) == (DecisionAction.DENY, "deny")
        assert "a deny rule matches when any part of the request does" in str(
            policy.evaluate(facts("ops", PayloadKind.TRANSACTION, transaction)).trace
        )


def test_a_deny_rule_on_a_chain_denies_authorizations_valid_on_every_chain() -> None:
    deny = {"name": "no-mainnet", "keys": ["ops"], "chain_ids": [1], "action": "deny"}
    allow_every_chain = {
        "name": "every-chain",
        "keys": ["ops"],
        "kinds": ["authorization"],
        "intents": ["authorization"],
        "delegates": [DELEGATE],
        "any_chain": True,
        "action": "sign",
    }
    policy = Policy.from_mapping(
        {"version": 1, "rules": [deny, allow_every_chain, set_code_rule(any_chain=True)]}, "t"
    )
    standalone = policy.evaluate(facts("ops", PayloadKind.AUTHORIZATION, authorization(chain_id=0))).decision
    assert (standalone.action, standalone.rule) == (DecisionAction.DENY, "no-mainnet")
    carried = facts("ops", PayloadKind.TRANSACTION, set_code_transaction(signed_tuple(0)))
    assert policy.evaluate(carried).decision.rule == "no-mainnet"
    # A Sepolia authorization and a Sepolia tuple are not for mainnet: the rules after the deny rule decide.
    sepolia = policy.evaluate(facts("ops", PayloadKind.TRANSACTION, set_code_transaction())).decision
    assert (sepolia.action, sepolia.rule) == (DecisionAction.SIGN, "set-code")

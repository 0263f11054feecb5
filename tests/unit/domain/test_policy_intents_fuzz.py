"""Fuzzing the conditions over intents: whatever a rule's intent fields hold, the parser answers with a policy
or with an error that names the file, the rule and one of the fields the rule set; and whatever intent tree a
request carries, a rule that signs it allowed every intent in it.

The trees are drawn at random (kinds, parties, amounts, flags and children), so the second property holds for
trees the decoder may never build as well as for those it does.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.domain.errors import ConfigurationError
from custody.domain.intents import (
    UNLIMITED,
    Intent,
    IntentFlag,
    IntentKind,
    Party,
    PartyRole,
    TokenAmount,
    TypedDataDomain,
    walk_all,
)
from custody.domain.policy import NAMED_ONLY_KINDS, Policy, RequestFacts, VelocityUsage
from custody.domain.requests import PayloadKind
from tests.fuzzing import cases

SOURCE = "fuzz.toml"
ADDRESSES = [
    "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D",
]
KIND_NAMES = [kind.value for kind in IntentKind]
NOW = 1_750_000_000
# Fields a parser may ask for when the rule left them out: another field needs them.
REQUIRED_WITH_OTHERS = {
    "spenders",
    "operators",
    "safes",
    "governance_targets",
    "delegatecall_targets",
    "delegates",
    "text_only",
}

_HEALTH_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=12)
    | st.sampled_from(["0x", ADDRESSES[0].lower()[:-1], "CALL", "native_transfer", "-1", "1e3"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
addresses = st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3, unique=True)
kinds = st.lists(st.sampled_from(KIND_NAMES), min_size=1, max_size=6, unique=True)
amount = st.one_of(
    st.integers(min_value=0, max_value=2**70), st.integers(min_value=0, max_value=2**80).map(str)
)
window = st.integers(min_value=0, max_value=40_000_000)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "intents": kinds,
    "requires_intents": kinds,
    "tokens": addresses,
    "recipients": addresses,
    "spenders": addresses,
    "operators": addresses,
    "token_caps": st.lists(
        st.fixed_dictionaries({"token": st.sampled_from(ADDRESSES), "max": amount}), max_size=3
    ),
    "allow_unlimited_approval": st.booleans(),
    "max_permit_horizon_seconds": window,
    "safes": addresses,
    "safe_operations": st.lists(
        st.sampled_from(["CALL", "DELEGATECALL"]), min_size=1, max_size=2, unique=True
    ),
    "delegatecall_targets": addresses,
    "delegates": addresses,
    "any_chain": st.booleans(),
    "allow_refund": st.booleans(),
    "governance_targets": addresses,
    "typed_data": st.lists(
        st.fixed_dictionaries(
            {"primary_type": st.sampled_from(["Mail", "Permit", "SafeTx"])},
            optional={
                "name": st.text(max_size=10),
                "version": st.sampled_from(["1", "2"]),
                "chain_id": st.integers(min_value=-1, max_value=3),
                "verifying_contract": st.sampled_from(ADDRESSES),
            },
        ),
        max_size=3,
    ),
    "text_only": st.booleans(),
    "max_message_bytes": window,
    "message_prefixes": st.lists(st.text(max_size=6), max_size=3),
    "allow_hash_like": st.booleans(),
    "token_velocity": st.lists(
        st.fixed_dictionaries({"token": st.sampled_from(ADDRESSES), "window_seconds": window, "max": amount}),
        max_size=2,
    ),
}


@st.composite
def rules(draw: st.DrawFn, pool: list[IntentKind]) -> dict[str, Any]:
    """A rule with some intent fields; its ``intents`` usually allows the ``pool`` the request's tree is drawn
    from, so that rules that sign are common enough to test."""
    fields = draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=4, unique=True))
    rule: dict[str, Any] = {
        "name": "fuzzed",
        "keys": ["ops"],
        "action": draw(st.sampled_from(["sign", "deny"])),
        "kinds": draw(
            st.lists(st.sampled_from(["transaction", "typed_data", "message"]), min_size=1, unique=True)
        ),
    }
    for field in fields:
        # One field in four holds junk, so that both the parsers' refusals and working rules are common.
        rule[field] = draw(junk) if draw(st.integers(0, 3)) == 0 else draw(FIELD_VALUES[field])
    if draw(st.integers(0, 3)) > 0:
        rule["intents"] = sorted(
            {kind.value for kind in pool} | set(draw(st.lists(st.sampled_from(KIND_NAMES))))
        )
    return rule


@st.composite
def intent_trees(draw: st.DrawFn, pool: list[IntentKind], depth: int = 0) -> Intent:
    kind = draw(st.sampled_from(pool))
    children = (
        tuple(draw(st.lists(intent_trees(pool, depth + 1), max_size=2)))
        if depth < 2 and draw(st.booleans())
        else ()
    )
    return Intent(
        kind=kind,
        contract=draw(st.none() | st.sampled_from(ADDRESSES)),
        parties=tuple(
            draw(
                st.lists(
                    st.builds(Party, st.sampled_from(list(PartyRole)), st.sampled_from(ADDRESSES)), max_size=3
                )
            )
        ),
        amounts=tuple(
            draw(
                st.lists(
                    st.builds(
                        TokenAmount,
                        st.none() | st.sampled_from(ADDRESSES),
                        st.integers(min_value=0, max_value=10**9) | st.just(UNLIMITED),
                    ),
                    max_size=2,
                )
            )
        ),
        deadline=draw(st.none() | st.integers(min_value=NOW - 10, max_value=NOW + 10**6)),
        flags=draw(st.just(frozenset()) | st.frozensets(st.sampled_from(list(IntentFlag)), max_size=2)),
        children=children,
        subject=draw(st.sampled_from(["", "Mail", "Permit", "SafeTx"])),
        domain=draw(st.none() | st.builds(TypedDataDomain, chain_id=st.sampled_from([None, 1]))),
        text=draw(st.none() | st.text(max_size=8)),
        size=draw(st.none() | st.integers(min_value=0, max_value=2048)),
    )


def requests(tree: tuple[Intent, ...]) -> list[RequestFacts]:
    return [
        RequestFacts(
            "ops",
            kind,
            chain_id=1,
            transaction_type="eip1559" if kind is PayloadKind.TRANSACTION else None,
            to=ADDRESSES[1],
            value=0,
            max_fee_wei=0,
            intents=tree,
            now=NOW,
        )
        for kind in (PayloadKind.TRANSACTION, PayloadKind.TYPED_DATA, PayloadKind.MESSAGE)
    ]


def usage(key_label: str, window_seconds: int) -> VelocityUsage:
    return VelocityUsage(count=0, total_value=0, token_amounts={ADDRESSES[0]: 5})


def parse(rule: dict[str, Any]) -> Policy | None:
    try:
        return Policy.from_mapping({"version": 1, "rules": [rule]}, SOURCE)
    except ConfigurationError as error:
        where = f"{SOURCE}: rule 'fuzzed' (rules[0]): "
        assert error.message.startswith(where), error.message
        field = error.message[len(where) :].split(":", 1)[0].split("[", 1)[0].split(".", 1)[0]
        assert field in set(rule) | REQUIRED_WITH_OTHERS, error.message
        return None


@settings(max_examples=cases(1500), deadline=None, suppress_health_check=_HEALTH_CHECKS)
@given(st.data())
def test_intent_fields_parse_or_name_the_field_and_a_signing_rule_allowed_every_intent(
    data: st.DataObject,
) -> None:
    pool = data.draw(st.lists(st.sampled_from(list(IntentKind)), min_size=1, max_size=3, unique=True))
    rule = data.draw(rules(pool))
    tree = data.draw(st.lists(intent_trees(pool), min_size=1, max_size=2))
    policy = parse(rule)
    if policy is None:
        return
    for request in requests(tuple(tree)):
        decision = policy.evaluate(request, usage).decision
        if decision.action.value != "sign":
            continue
        every = list(walk_all(request.intents))
        named = {IntentKind(name) for name in rule.get("intents", [])}
        if "intents" in rule:
            assert every and all(intent.kind in named for intent in every)
        assert all(intent.kind not in NAMED_ONLY_KINDS or intent.kind in named for intent in every)
        flags = {flag for intent in every for flag in intent.flags}
        assert IntentFlag.UNLIMITED_APPROVAL not in flags or rule.get("allow_unlimited_approval") is True
        assert IntentFlag.REFUND not in flags or rule.get("allow_refund") is True
        if IntentFlag.DELEGATECALL in flags:
            assert "DELEGATECALL" in rule.get("safe_operations", [])
        if request.kind is PayloadKind.TYPED_DATA and every:
            assert "typed_data" in rule


@settings(max_examples=cases(1500), deadline=None, suppress_health_check=_HEALTH_CHECKS)
@given(st.data())
def test_a_deny_rule_that_denies_a_request_still_denies_it_with_more_intents_beside(
    data: st.DataObject,
) -> None:
    pool = data.draw(st.lists(st.sampled_from(list(IntentKind)), min_size=1, max_size=3, unique=True))
    rule = {**data.draw(rules(pool)), "action": "deny"}
    tree = data.draw(st.lists(intent_trees(pool), min_size=1, max_size=2))
    beside = data.draw(st.lists(intent_trees(list(IntentKind)), min_size=1, max_size=2))
    policy = parse(rule)
    if policy is None:
        return
    for request, larger in zip(requests(tuple(tree)), requests((*tree, *beside)), strict=True):
        if policy.evaluate(request, usage).decision.rule != "fuzzed":
            continue
        # What a deny rule denies must not slip through because the request also does something else.
        assert policy.evaluate(larger, usage).decision.rule == "fuzzed", (rule, tree, beside)

"""Rule conditions over intents, judged on hand-built intent trees.

Each tree is what custody/domain/intents.py says the decoder builds for a payload (a Safe transaction holding
its call, a MultiSend batch holding its calls, a proposal holding its actions); the expected decisions and
trace details are written from the conditions' documentation, not copied from output. The attacks are those
the development policy used to sign at once: an unlimited Permit to a stranger, a Permit2 allowance, a SafeTx
by DELEGATECALL, a message that is a Safe transaction hash, ``approve(attacker, max)`` and
``setApprovalForAll``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from custody.domain.errors import ConfigurationError
from custody.domain.intents import (
    UNLIMITED,
    UNLIMITED_UINT160,
    Intent,
    IntentFlag,
    IntentKind,
    Party,
    PartyRole,
    TokenAmount,
    TypedDataDomain,
)
from custody.domain.policy import Policy, RequestFacts, VelocityUsage, trace_from_json, trace_to_json
from custody.domain.policy.conditions import (
    CONDITION_TYPES,
    IntentCondition,
    TokenCondition,
    VelocityLimit,
)
from custody.domain.requests import PayloadKind

# Addresses: EIP-55 spellings, so a trace shows them as the decoder writes them.
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DAI = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
SAFE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
VAULT = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
ROUTER = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
STRANGER = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"
COLLECTION = "0x52908400098527886E0F7030069857D2E4169EE7"
GOVERNOR = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"
MAIL_CONTRACT = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
NOW = 1_750_000_000
HOUR = 3600
ONE_ETHER = 10**18


# ------------------------------------------------------------------------------------------------------------
# Intent trees as the decoder builds them.


def native(to: str = VAULT, wei: int = ONE_ETHER) -> Intent:
    return Intent(
        IntentKind.NATIVE_TRANSFER,
        parties=(Party(PartyRole.RECIPIENT, to),),
        amounts=(TokenAmount(None, wei),),
    )


def erc20_transfer(token: str = USDC, to: str = VAULT, amount: int = 1_000_000) -> Intent:
    return Intent(
        IntentKind.ERC20_TRANSFER,
        contract=token,
        parties=(Party(PartyRole.RECIPIENT, to),),
        amounts=(TokenAmount(token, amount),),
        subject="transfer(address,uint256)",
    )


def erc20_approve(token: str = USDC, spender: str = STRANGER, amount: int = UNLIMITED) -> Intent:
    flags = frozenset({IntentFlag.UNLIMITED_APPROVAL}) if amount == UNLIMITED else frozenset()
    return Intent(
        IntentKind.ERC20_APPROVE,
        contract=token,
        parties=(Party(PartyRole.SPENDER, spender),),
        amounts=(TokenAmount(token, amount),),
        flags=flags,
        subject="approve(address,uint256)",
    )


def set_approval_for_all(operator: str = STRANGER) -> Intent:
    """``setApprovalForAll(operator, true)``: every NFT of the collection, now and later, is the operator's to
    move, so the decoder flags it as an unlimited approval."""
    return Intent(
        IntentKind.SET_APPROVAL_FOR_ALL,
        contract=COLLECTION,
        parties=(Party(PartyRole.OPERATOR, operator),),
        flags=frozenset({IntentFlag.UNLIMITED_APPROVAL}),
        subject="setApprovalForAll(address,bool)",
    )


def permit(spender: str = STRANGER, amount: int = UNLIMITED, deadline: int | None = UNLIMITED) -> Intent:
    """An EIP-2612 Permit of USDC, as typed data: the token is the verifying contract."""
    flags = frozenset({IntentFlag.UNLIMITED_APPROVAL}) if amount == UNLIMITED else frozenset()
    return Intent(
        IntentKind.PERMIT,
        contract=USDC,
        parties=(Party(PartyRole.SPENDER, spender),),
        amounts=(TokenAmount(USDC, amount),),
        deadline=deadline,
        flags=flags,
        subject="Permit",
        domain=TypedDataDomain(name="USD Coin", version="2", chain_id=1, verifying_contract=USDC),
    )


def permit2_single(
    spender: str = STRANGER, amount: int = 500_000_000, deadline: int | None = NOW + 600
) -> Intent:
    """A Permit2 PermitSingle: the contract is Permit2, the token is named in the amounts."""
    flags = frozenset({IntentFlag.UNLIMITED_APPROVAL}) if amount == UNLIMITED_UINT160 else frozenset()
    return Intent(
        IntentKind.PERMIT2_ALLOWANCE,
        contract=PERMIT2,
        parties=(Party(PartyRole.SPENDER, spender),),
        amounts=(TokenAmount(USDC, amount),),
        deadline=deadline,
        flags=flags,
        subject="PermitSingle",
        domain=TypedDataDomain(name="Permit2", chain_id=1, verifying_contract=PERMIT2),
    )


def safe_tx(
    *calls: Intent,
    safe: str = SAFE,
    delegate: str | None = None,
    refund: bool = False,
    typed_data: bool = True,
) -> Intent:
    """A Safe transaction (SafeTx typed data by default) of ``safe`` making ``calls``; with ``delegate`` its
    operation is DELEGATECALL to that contract."""
    flags = set()
    parties = []
    if delegate is not None:
        flags.add(IntentFlag.DELEGATECALL)
        parties.append(Party(PartyRole.DELEGATE, delegate))
    if refund:
        flags.add(IntentFlag.REFUND)
    return Intent(
        IntentKind.SAFE_TRANSACTION,
        contract=safe,
        parties=tuple(parties),
        flags=frozenset(flags),
        children=calls,
        subject="SafeTx" if typed_data else "execTransaction",
        domain=TypedDataDomain(chain_id=1, verifying_contract=safe) if typed_data else None,
    )


def multisend(*calls: Intent) -> Intent:
    return Intent(
        IntentKind.MULTISEND, contract=MULTISEND_CALL_ONLY, children=calls, subject="multiSend(bytes)"
    )


def add_owner(safe: str = SAFE, owner: str = STRANGER) -> Intent:
    return Intent(
        IntentKind.SAFE_CONFIGURATION,
        contract=safe,
        parties=(Party(PartyRole.NEW_OWNER, owner),),
        flags=frozenset({IntentFlag.SAFE_CONFIGURATION_CHANGE}),
        subject="addOwnerWithThreshold(address,uint256)",
    )


def upgrade(proxy: str = ROUTER, implementation: str = STRANGER) -> Intent:
    return Intent(
        IntentKind.UPGRADE,
        contract=proxy,
        parties=(Party(PartyRole.IMPLEMENTATION, implementation),),
        flags=frozenset({IntentFlag.UPGRADE}),
        subject="upgradeTo(address)",
    )


def transfer_ownership(contract: str = ROUTER, owner: str = STRANGER) -> Intent:
    return Intent(
        IntentKind.OWNERSHIP_TRANSFER,
        contract=contract,
        parties=(Party(PartyRole.NEW_OWNER, owner),),
        flags=frozenset({IntentFlag.OWNERSHIP_TRANSFER}),
        subject="transferOwnership(address)",
    )


def propose(*actions: Intent) -> Intent:
    targets = tuple(Party(PartyRole.TARGET, action.contract) for action in actions if action.contract)
    return Intent(IntentKind.GOVERNOR_PROPOSE, contract=GOVERNOR, parties=targets, children=actions)


def unknown_call(contract: str = ROUTER) -> Intent:
    return Intent(
        IntentKind.UNKNOWN,
        contract=contract,
        flags=frozenset({IntentFlag.UNKNOWN_SELECTOR}),
        subject="0xdeadbeef",
    )


def undecodable_call(contract: str = USDC) -> Intent:
    return Intent(
        IntentKind.UNDECODABLE,
        contract=contract,
        flags=frozenset({IntentFlag.UNDECODABLE}),
        subject="transfer(address,uint256)",
    )


def mail(name: str = "Ether Mail", verifying_contract: str = MAIL_CONTRACT, chain_id: int = 1) -> Intent:
    return Intent(
        IntentKind.TYPED_DATA,
        contract=verifying_contract,
        subject="Mail",
        domain=TypedDataDomain(
            name=name, version="1", chain_id=chain_id, verifying_contract=verifying_contract
        ),
    )


def text_message(text: str = "Sign in to example.org") -> Intent:
    return Intent(IntentKind.TEXT_MESSAGE, text=text, size=len(text.encode()))


def binary_message(size: int = 32) -> Intent:
    flags = frozenset({IntentFlag.HASH_LIKE_MESSAGE}) if size == 32 else frozenset()
    return Intent(IntentKind.BINARY_MESSAGE, flags=flags, size=size)


def transaction(*intents: Intent, key: str = "ops", to: str | None = SAFE, value: int = 0) -> RequestFacts:
    return RequestFacts(
        key,
        PayloadKind.TRANSACTION,
        chain_id=1,
        transaction_type="eip1559",
        to=to,
        value=value,
        max_fee_wei=21_000 * 30 * 10**9,
        intents=intents,
        now=NOW,
    )


def typed_data(root: Intent, key: str = "ops") -> RequestFacts:
    domain = root.domain or TypedDataDomain()
    return RequestFacts(
        key,
        PayloadKind.TYPED_DATA,
        chain_id=domain.chain_id,
        transaction_type=None,
        to=domain.verifying_contract,
        value=0,
        intents=(root,),
        now=NOW,
    )


def message(root: Intent, key: str = "ops") -> RequestFacts:
    return RequestFacts(
        key,
        PayloadKind.MESSAGE,
        chain_id=None,
        transaction_type=None,
        to=None,
        value=0,
        intents=(root,),
        now=NOW,
    )


def policy(*rules: dict[str, Any]) -> Policy:
    return Policy.from_mapping(
        {
            "version": 1,
            "rules": [
                {"name": f"rule-{index}", "keys": ["ops"], "action": "sign", **rule}
                for index, rule in enumerate(rules)
            ],
        },
        "policy.toml",
    )


def outcome(
    rule: dict[str, Any], facts: RequestFacts, usage: Any = None
) -> tuple[str, dict[str, tuple[bool, str]]]:
    """The decision of a one-rule policy, and each condition's (matched, detail) in its trace."""
    evaluation = policy(rule).evaluate(facts, usage)
    (trace,) = evaluation.trace
    return evaluation.decision.action.value, {c.condition: (c.matched, c.detail) for c in trace.conditions}


def refused_by(rule: dict[str, Any], facts: RequestFacts, usage: Any = None) -> dict[str, str]:
    """The conditions that refused ``facts`` under the one-rule policy, with their details."""
    action, conditions = outcome(rule, facts, usage)
    assert action == "deny"
    return {name: detail for name, (matched, detail) in conditions.items() if not matched}


def signs(rule: dict[str, Any], facts: RequestFacts, usage: Any = None) -> bool:
    action, conditions = outcome(rule, facts, usage)
    assert (action == "sign") == all(matched for matched, _ in conditions.values())
    return action == "sign"


# ------------------------------------------------------------------------------------------------------------
# intents: every intent of the tree, inner calls too, must be of a kind the rule names.


def test_a_rule_naming_intents_allows_only_those_kinds_at_every_depth() -> None:
    rule = {
        "intents": ["safe_transaction", "multisend", "erc20_transfer"],
        "safes": [SAFE],
        "safe_operations": ["DELEGATECALL"],
        "delegatecall_targets": [MULTISEND_CALL_ONLY],
    }
    batch = safe_tx(multisend(erc20_transfer(), erc20_transfer(to=SAFE)), delegate=MULTISEND_CALL_ONLY)
    assert signs(rule, transaction(batch))
    # One forbidden call inside the batch decides the whole request, and the trace says which one.
    hidden = safe_tx(multisend(erc20_transfer(), erc20_approve(amount=5)), delegate=MULTISEND_CALL_ONLY)
    refused = refused_by(rule, transaction(hidden))
    assert refused == {
        "intents": f"intent 1.1.2: erc20_approve 'approve(address,uint256)' on {USDC} is not of an allowed kind"
        " ('erc20_transfer', 'multisend', 'safe_transaction')"
    }


def test_the_intents_trace_counts_what_it_allowed() -> None:
    _, conditions = outcome({"intents": ["native_transfer"]}, transaction(native()))
    assert conditions["intents"] == (
        True,
        "the one intent ('native_transfer') is of an allowed kind ('native_transfer')",
    )
    _, conditions = outcome(
        {"intents": ["multisend", "native_transfer"]}, transaction(multisend(native(), native()))
    )
    assert conditions["intents"] == (
        True,
        "all 3 intents ('multisend', 'native_transfer') are of allowed kinds ('multisend', 'native_transfer')",
    )


@pytest.mark.parametrize(
    ("intent", "kind"),
    [
        pytest.param(unknown_call(), "unknown", id="unknown"),
        pytest.param(undecodable_call(), "undecodable", id="undecodable"),
    ],
)
def test_unknown_and_undecodable_are_allowed_only_where_named(intent: Intent, kind: str) -> None:
    assert not signs({"intents": ["native_transfer", "erc20_transfer"]}, transaction(intent))
    assert signs({"intents": [kind]}, transaction(intent))


def test_a_request_without_decoded_intents_matches_no_rule_that_names_intents() -> None:
    refused = refused_by({"intents": ["native_transfer"]}, transaction())
    assert refused == {
        "intents": "custody decoded no intents from this request, so a rule that judges intents cannot match it"
    }
    # A rule that does not judge intents decides on the envelope, as before intents existed.
    assert signs({"kinds": ["transaction"]}, transaction())


@pytest.mark.parametrize(
    ("facts", "place"),
    [
        pytest.param(
            transaction(undecodable_call()),
            f"intent 1: undecodable 'transfer(address,uint256)' on {USDC}",
            id="undecodable",
        ),
        pytest.param(
            transaction(safe_tx(add_owner(), typed_data=False)),
            f"intent 1.1: safe_configuration 'addOwnerWithThreshold(address,uint256)' on {SAFE}",
            id="safe-configuration-inside-a-safe-transaction",
        ),
        pytest.param(message(binary_message(size=20)), "intent 1: binary_message", id="binary-message"),
    ],
)
def test_a_rule_without_intents_still_refuses_what_only_a_naming_rule_may_allow(
    facts: RequestFacts, place: str
) -> None:
    kind = re.search(r": (\w+)", place)
    assert kind is not None
    refused = refused_by({}, facts)
    assert refused == {
        "intents": f"{place} is allowed only by a rule whose intents names {kind.group(1)!r}, and this rule names"
        " no intents"
    }


def test_the_guards_stay_out_of_the_trace_of_requests_they_say_nothing_about() -> None:
    _, conditions = outcome({}, transaction(native(), unknown_call()))
    assert list(conditions) == ["keys"]


def test_requires_intents_keeps_a_rule_to_requests_that_do_what_it_is_for() -> None:
    rule = {
        "intents": ["multisend", "native_transfer", "ownership_transfer"],
        "requires_intents": ["ownership_transfer"],
    }
    _, conditions = outcome(rule, transaction(multisend(native(), transfer_ownership())))
    assert conditions["requires_intents"] == (
        True,
        f"intent 1.2: ownership_transfer 'transferOwnership(address)' on {ROUTER} is of a kind the rule is for",
    )
    assert refused_by(rule, transaction(multisend(native(), native()))) == {
        "requires_intents": "no intent of the request is of kind 'ownership_transfer', which the rule is for"
    }


# ------------------------------------------------------------------------------------------------------------
# tokens, recipients, spenders, operators.


def test_tokens_allowlist_judges_every_token_moved_or_allowed_in_the_tree() -> None:
    rule = {
        "intents": ["safe_transaction", "erc20_transfer", "permit2_allowance"],
        "safes": [SAFE],
        "tokens": [USDC],
        "spenders": [ROUTER],
    }
    assert signs(rule, transaction(safe_tx(erc20_transfer(), typed_data=False)))
    refused = refused_by(rule, transaction(safe_tx(erc20_transfer(token=DAI), typed_data=False)))
    assert refused == {
        "tokens": f"token {DAI} of intent 1.1: erc20_transfer 'transfer(address,uint256)' on {DAI} is not in {USDC}"
    }
    # Permit2 acts through its own contract; the token is the one its amounts name.
    _, conditions = outcome(rule, typed_data(permit2_single(spender=ROUTER)))
    assert conditions["tokens"] == (True, f"every token the request moves or allows ({USDC}) is allowed")
    nameless = replace(permit2_single(spender=ROUTER), amounts=())
    assert refused_by(rule, typed_data(nameless))["tokens"] == (
        f"intent 1: permit2_allowance 'PermitSingle' on {PERMIT2} names no token; the rule allows {USDC}"
    )


def test_recipients_are_judged_wherever_they_are() -> None:
    rule = {"intents": ["multisend", "native_transfer", "erc20_transfer"], "recipients": [VAULT]}
    assert signs(rule, transaction(multisend(native(), erc20_transfer())))
    refused = refused_by(rule, transaction(multisend(native(), erc20_transfer(to=STRANGER))))
    assert refused == {
        "recipients": f"recipient {STRANGER} of intent 1.2: erc20_transfer 'transfer(address,uint256)' on {USDC}"
        f" is not in {VAULT}"
    }


def test_an_address_allowed_in_one_role_is_not_allowed_in_another() -> None:
    rule = {"intents": ["erc20_transfer", "erc20_approve"], "recipients": [ROUTER], "spenders": [VAULT]}
    assert signs(rule, transaction(erc20_transfer(to=ROUTER), erc20_approve(spender=VAULT, amount=1)))
    refused = refused_by(rule, transaction(erc20_approve(spender=ROUTER, amount=1)))
    assert list(refused) == ["spenders"]
    assert refused["spenders"].startswith(f"spender {ROUTER} of intent 1: erc20_approve")


def test_operators_allowlist_judges_set_approval_for_all() -> None:
    # An operator may move every NFT of the collection: an unlimited approval, which the rule must allow.
    rule = {"intents": ["set_approval_for_all"], "operators": [ROUTER], "allow_unlimited_approval": True}
    assert signs(rule, transaction(set_approval_for_all(ROUTER)))
    assert list(refused_by(rule, transaction(set_approval_for_all(STRANGER)))) == ["operators"]
    no_operator = replace(set_approval_for_all(), parties=())
    assert refused_by(rule, transaction(no_operator))["operators"] == (
        f"intent 1: set_approval_for_all 'setApprovalForAll(address,bool)' on {COLLECTION} names no operator;"
        f" the rule allows {ROUTER}"
    )


# ------------------------------------------------------------------------------------------------------------
# token_caps and unlimited approvals.


def test_token_caps_add_up_every_amount_of_a_token_in_the_tree() -> None:
    rule = {"intents": ["multisend", "erc20_transfer"], "token_caps": [{"token": USDC, "max": "2000000"}]}
    assert signs(
        rule, transaction(multisend(erc20_transfer(amount=1_000_000), erc20_transfer(amount=1_000_000)))
    )
    # Two transfers each under the cap are, together, one base unit over it.
    refused = refused_by(
        rule, transaction(multisend(erc20_transfer(amount=1_000_000), erc20_transfer(amount=1_000_001)))
    )
    assert refused == {
        "token_caps": f"the request moves or allows 2000001 of token {USDC}, over its cap of 2000000"
    }
    # A token without a cap is not allowed at all by a rule with caps.
    assert refused_by(rule, transaction(erc20_transfer(token=DAI))) == {
        "token_caps": f"the request moves or allows 1000000 of token {DAI}, which has no cap"
    }


def test_an_unlimited_approval_never_matches_unless_the_rule_says_so() -> None:
    approval = transaction(erc20_approve(spender=ROUTER))
    # Not even a rule that judges no intents: the default is "never".
    assert refused_by({}, approval) == {
        "unlimited_approval": f"intent 1: erc20_approve 'approve(address,uint256)' on {USDC} is an unlimited approval,"
        " and this rule has no allow_unlimited_approval"
    }
    capped = {
        "intents": ["erc20_approve"],
        "spenders": [ROUTER],
        "token_caps": [{"token": USDC, "max": 10**12}],
    }
    # Refused as unlimited, and because no cap holds an unlimited amount.
    assert list(refused_by(capped, approval)) == ["unlimited_approval", "token_caps"]
    allowed = {**capped, "allow_unlimited_approval": True}
    _, conditions = outcome(allowed, approval)
    assert conditions["unlimited_approval"][0]
    # Allowed, the unlimited amount is judged there, not against the cap.
    assert conditions["token_caps"] == (True, "the request moves and allows no token amounts")


def test_an_unlimited_amount_is_unlimited_even_without_the_flag() -> None:
    unflagged = replace(permit2_single(spender=ROUTER, amount=UNLIMITED_UINT160), flags=frozenset())
    assert list(refused_by({}, typed_data(unflagged))) == ["unlimited_approval", "typed_data"]


# ------------------------------------------------------------------------------------------------------------
# max_permit_horizon_seconds.

PERMIT2_RULE: dict[str, Any] = {
    "kinds": ["typed_data"],
    "intents": ["permit2_allowance"],
    "typed_data": [{"primary_type": "PermitSingle", "verifying_contract": PERMIT2}],
    "spenders": [ROUTER],
    "tokens": [USDC],
    "token_caps": [{"token": USDC, "max": "1000000000"}],
    "max_permit_horizon_seconds": HOUR,
}


@pytest.mark.parametrize(
    ("deadline", "now", "detail"),
    [
        pytest.param(NOW + HOUR, NOW, None, id="at-the-horizon"),
        pytest.param(NOW - 1, NOW, None, id="already-expired"),
        pytest.param(
            NOW + HOUR + 1,
            NOW,
            f"intent 1: permit2_allowance 'PermitSingle' on {PERMIT2} is valid until {NOW + HOUR + 1}, 3601 s after"
            f" now ({NOW}), beyond the horizon of 3600 s",
            id="one-second-beyond",
        ),
        pytest.param(
            None,
            NOW,
            f"intent 1: permit2_allowance 'PermitSingle' on {PERMIT2} states no deadline",
            id="no-deadline",
        ),
        pytest.param(
            NOW,
            None,
            "the time of the request is unknown, so no permit can be held to 3600 s",
            id="time-unknown",
        ),
    ],
)
def test_permit_horizon(deadline: int | None, now: int | None, detail: str | None) -> None:
    facts = replace(typed_data(permit2_single(spender=ROUTER, deadline=deadline)), now=now)
    if detail is None:
        assert signs(PERMIT2_RULE, facts)
    else:
        assert refused_by(PERMIT2_RULE, facts) == {"max_permit_horizon_seconds": detail}


# ------------------------------------------------------------------------------------------------------------
# Safe transactions: safes, safe_operations with delegatecall_targets, allow_refund.

SAFE_RULE: dict[str, Any] = {
    "intents": ["safe_transaction", "native_transfer", "erc20_transfer"],
    "safes": [SAFE],
}


def test_a_safe_transaction_of_a_listed_safe_by_call_matches() -> None:
    _, conditions = outcome(SAFE_RULE, transaction(safe_tx(native(), typed_data=False)))
    assert conditions["safes"] == (True, f"every Safe of the request ({SAFE}) is allowed")
    assert conditions["safe_operations"] == (
        True,
        f"intent 1: safe_transaction 'execTransaction' on {SAFE} is a CALL",
    )
    assert list(refused_by(SAFE_RULE, transaction(safe_tx(native(), safe=VAULT, typed_data=False)))) == [
        "safes"
    ]


def test_delegatecall_is_refused_by_default_even_to_a_listed_safe() -> None:
    # The Bybit theft: a Safe transaction whose operation was DELEGATECALL to the attacker's contract.
    bybit = transaction(safe_tx(delegate=STRANGER, typed_data=False))
    assert refused_by(SAFE_RULE, bybit) == {
        "safe_operations": f"intent 1: safe_transaction 'execTransaction' on {SAFE} runs code by DELEGATECALL; this"
        " rule allows only 'CALL'"
    }
    # And so does a rule that does not judge intents at all.
    assert list(refused_by({}, bybit)) == ["safe_operations"]


def test_delegatecall_runs_only_listed_contracts_and_their_calls_are_judged() -> None:
    rule = {
        **SAFE_RULE,
        "intents": [*SAFE_RULE["intents"], "multisend"],
        "safe_operations": ["CALL", "DELEGATECALL"],
        "delegatecall_targets": [MULTISEND_CALL_ONLY],
    }
    batch = safe_tx(multisend(native(), erc20_transfer()), delegate=MULTISEND_CALL_ONLY, typed_data=False)
    _, conditions = outcome(rule, transaction(batch))
    assert conditions["safe_operations"] == (
        True,
        f"intent 1: safe_transaction 'execTransaction' on {SAFE} runs {MULTISEND_CALL_ONLY} by DELEGATECALL, which is"
        " allowed",
    )
    assert refused_by(rule, transaction(safe_tx(delegate=STRANGER, typed_data=False))) == {
        "safe_operations": f"intent 1: safe_transaction 'execTransaction' on {SAFE} runs {STRANGER} by DELEGATECALL,"
        f" which is not in {MULTISEND_CALL_ONLY}"
    }
    # The Radiant theft: an ownership transfer among the batch's calls.
    radiant = safe_tx(
        multisend(native(), transfer_ownership()), delegate=MULTISEND_CALL_ONLY, typed_data=False
    )
    assert list(refused_by(rule, transaction(radiant))) == ["intents"]


def test_a_refund_is_refused_unless_the_rule_allows_it() -> None:
    refunding = transaction(safe_tx(native(), refund=True, typed_data=False))
    assert refused_by(SAFE_RULE, refunding) == {
        "refunds": f"intent 1: safe_transaction 'execTransaction' on {SAFE} pays a gas refund, and this rule has no"
        " allow_refund"
    }
    assert signs({**SAFE_RULE, "allow_refund": True}, refunding)


def test_safe_configuration_needs_a_rule_that_names_it() -> None:
    change = transaction(safe_tx(add_owner(), typed_data=False))
    assert list(refused_by(SAFE_RULE, change)) == ["intents"]
    assert signs({**SAFE_RULE, "intents": ["safe_transaction", "safe_configuration"]}, change)
    # Its Safe is judged by safes like a Safe transaction's.
    other = transaction(safe_tx(add_owner(safe=VAULT), typed_data=False))
    assert list(refused_by({**SAFE_RULE, "intents": ["safe_transaction", "safe_configuration"]}, other)) == [
        "safes"
    ]


# ------------------------------------------------------------------------------------------------------------
# governance_targets.

GOVERNANCE_RULE: dict[str, Any] = {
    "intents": ["governor_propose", "native_transfer", "erc20_transfer"],
    "governance_targets": [USDC, VAULT],
}


def test_every_action_of_a_proposal_is_judged_as_an_intent_and_by_its_target() -> None:
    assert signs(GOVERNANCE_RULE, transaction(propose(erc20_transfer(), erc20_transfer())))
    # A proposal whose batch hides an upgrade: the upgrade is an intent the rule does not name.
    hidden = transaction(propose(erc20_transfer(), upgrade(proxy=VAULT)))
    assert refused_by(GOVERNANCE_RULE, hidden) == {
        "intents": f"intent 1.2: upgrade 'upgradeTo(address)' on {VAULT} is not of an allowed kind ('erc20_transfer',"
        " 'governor_propose', 'native_transfer')"
    }
    elsewhere = transaction(propose(erc20_transfer(token=DAI)))
    assert refused_by(GOVERNANCE_RULE, elsewhere) == {
        "governance_targets": f"target {DAI} of intent 1: governor_propose on {GOVERNOR} is not in {USDC}, {VAULT}"
    }


# ------------------------------------------------------------------------------------------------------------
# typed_data: by primary type and domain; typed data no rule names is denied.

MAIL_RULE: dict[str, Any] = {
    "kinds": ["typed_data"],
    "intents": ["typed_data"],
    "typed_data": [
        {
            "primary_type": "Mail",
            "name": "Ether Mail",
            "version": "1",
            "chain_id": 1,
            "verifying_contract": MAIL_CONTRACT.lower(),
        }
    ],
}


def test_typed_data_of_a_named_primary_type_and_domain_matches() -> None:
    _, conditions = outcome(MAIL_RULE, typed_data(mail()))
    assert conditions["typed_data"] == (
        True,
        f"'Mail' of domain {{name 'Ether Mail', version '1', chainId 1, verifyingContract {MAIL_CONTRACT}}} is allowed",
    )


@pytest.mark.parametrize(
    ("root", "problem"),
    [
        pytest.param(mail(name="Evil Mail"), "domain name 'Evil Mail' is not 'Ether Mail'", id="other-name"),
        pytest.param(mail(chain_id=10), "domain chainId 10 is not 1", id="other-chain"),
        pytest.param(
            mail(verifying_contract=STRANGER),
            f"domain verifyingContract {STRANGER} is not {MAIL_CONTRACT}",
            id="other-contract",
        ),
        pytest.param(replace(mail(), subject="Order"), "primary type 'Order' is not 'Mail'", id="other-type"),
    ],
)
def test_typed_data_of_another_type_or_domain_does_not_match(root: Intent, problem: str) -> None:
    refused = refused_by(MAIL_RULE, typed_data(root))
    assert list(refused) == ["typed_data"]
    assert refused["typed_data"].endswith(f"is not allowed (typed_data[0]: {problem})")


def test_typed_data_no_rule_names_is_denied_by_rules_that_do_not_judge_it() -> None:
    # The old development policy signed any typed data with a rule of kinds = ["typed_data"].
    assert refused_by({"kinds": ["typed_data"]}, typed_data(mail())) == {
        "typed_data": f"typed data 'Mail' of domain {{name 'Ether Mail', version '1', chainId 1, verifyingContract"
        f" {MAIL_CONTRACT}}} is allowed only by a rule that names its primary type in typed_data, and this rule"
        " names none"
    }
    # A rule that names typed data matches typed data only.
    assert refused_by({"typed_data": [{"primary_type": "Mail"}]}, transaction(native())) == {
        "typed_data": "the request is 'transaction', not typed data; the rule allows only typed data of primary type"
        " 'Mail'"
    }


def test_a_value_or_destination_rule_never_matches_a_safe_transaction_signature() -> None:
    # A rule written for ether payments to the Safe used to match a SafeTx for that Safe moving 1,000 ether by
    # DELEGATECALL, because typed data has value 0 and its verifyingContract counted as the destination.
    payments = {"destinations": [SAFE], "max_value_wei": str(ONE_ETHER)}
    safe_tx_signature = typed_data(safe_tx(native(wei=1000 * ONE_ETHER), delegate=STRANGER))
    refused = refused_by(payments, safe_tx_signature)
    assert set(refused) == {"destinations", "max_value_wei", "safe_operations", "typed_data"}
    assert refused["max_value_wei"] == (
        "the request is 'typed_data', not a transaction; the rule caps the value a transaction sends at"
        " 1000000000000000000 wei"
    )
    assert refused["destinations"] == (
        "the request is 'typed_data', not a transaction (a verifyingContract counts only in a rule that lists"
        f" typed_data); the rule allows only {SAFE}"
    )


# ------------------------------------------------------------------------------------------------------------
# Messages.

TEXT_RULE: dict[str, Any] = {"kinds": ["message"], "intents": ["text_message"], "max_message_bytes": 1024}


def test_text_messages_up_to_the_length_limit_match() -> None:
    assert signs(TEXT_RULE, message(text_message("x" * 1024)))
    assert refused_by(TEXT_RULE, message(text_message("x" * 1025))) == {
        "messages": "intent 1: text_message is 1025 bytes, over the limit of 1024"
    }
    # A multi-byte character counts as the bytes it takes.
    assert not signs(TEXT_RULE, message(text_message("é" * 513)))


def test_message_prefixes() -> None:
    rule = {**TEXT_RULE, "message_prefixes": ["Sign in to example.org", "I approve"]}
    assert signs(rule, message(text_message("I approve governance proposal 42.")))
    assert refused_by(rule, message(text_message("Transfer everything"))) == {
        "messages": "intent 1: text_message does not start with one of 'I approve', 'Sign in to example.org'"
    }


def test_binary_and_hash_like_messages_need_rules_that_say_so() -> None:
    binary = message(binary_message(size=20))
    hash_like = message(binary_message(size=32))
    # A text rule refuses both, by its intents and by text_only (its default).
    assert list(refused_by(TEXT_RULE, binary)) == ["intents", "messages"]
    binary_rule = {"kinds": ["message"], "intents": ["binary_message"], "text_only": False}
    assert signs(binary_rule, binary)
    # A Safe transaction hash signed as a message is a valid owner signature: hash-like messages need more.
    assert refused_by(binary_rule, hash_like) == {
        "messages": "intent 1: binary_message is hash-like (32 bytes, as a transaction hash is), and this rule has no"
        " allow_hash_like"
    }
    assert signs({**binary_rule, "allow_hash_like": True}, hash_like)


def test_a_message_rule_matches_messages_only() -> None:
    assert refused_by({"max_message_bytes": 10}, transaction(native())) == {
        "messages": "the request is 'transaction', not a message; the rule's message conditions need one"
    }


# ------------------------------------------------------------------------------------------------------------
# token_velocity: the key's earlier amounts per token, from the store, plus this request's.


class TokenBook:
    """A key's usage as the store would report it, with token amounts per window."""

    def __init__(self, token_amounts: dict[str, int] | None) -> None:
        self.token_amounts = token_amounts
        self.asked: list[tuple[str, int]] = []

    def __call__(self, key_label: str, window_seconds: int) -> VelocityUsage:
        self.asked.append((key_label, window_seconds))
        return VelocityUsage(count=0, total_value=0, token_amounts=self.token_amounts)


VELOCITY_RULE: dict[str, Any] = {
    "intents": ["erc20_transfer"],
    "token_velocity": [{"token": USDC, "window_seconds": 86400, "max": "5000000"}],
}


def test_token_velocity_counts_earlier_amounts_of_the_token_and_this_request() -> None:
    book = TokenBook({USDC.lower(): 4_000_000, DAI: 10**30})
    assert signs(VELOCITY_RULE, transaction(erc20_transfer(amount=1_000_000)), book)
    assert book.asked == [("ops", 86400)]
    refused = refused_by(VELOCITY_RULE, transaction(erc20_transfer(amount=1_000_001)), book)
    assert refused == {
        "token_velocity": f"in the last 86400 s, this request included: 5000001 of token {USDC} would exceed the"
        " limit of 5000000"
    }
    # Another token is not limited by this rule.
    assert signs(VELOCITY_RULE, transaction(erc20_transfer(token=DAI, amount=10**30)), book)


def test_token_velocity_does_not_match_when_the_store_does_not_count_tokens() -> None:
    refused = refused_by(VELOCITY_RULE, transaction(erc20_transfer(amount=1)), TokenBook(None))
    assert refused == {
        "token_velocity": f"in the last 86400 s: the key's earlier amounts of token {USDC} are not counted, so the"
        " limit cannot be held"
    }


# ------------------------------------------------------------------------------------------------------------
# The attacks, and a rule that allows exactly one of them.

ATTACKS = {
    "unlimited-permit-to-a-stranger": typed_data(permit()),
    "permit2-allowance": typed_data(permit2_single()),
    "safe-tx-by-delegatecall": typed_data(safe_tx(delegate=STRANGER)),
    "safe-tx-hash-as-message": message(binary_message(size=32)),
    "approve-attacker-max": transaction(erc20_approve(), to=USDC),
    "set-approval-for-all": transaction(set_approval_for_all(), to=COLLECTION),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_no_envelope_rule_signs_any_attack(attack: str) -> None:
    # What the old development policy had: rules on the envelope alone, for every kind of payload.
    permissive = policy({"kinds": ["transaction"]}, {"kinds": ["typed_data", "message"]})
    evaluation = permissive.evaluate(ATTACKS[attack])
    assert evaluation.decision.action == "deny"


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_rule_for_permit2_to_one_spender_up_to_a_cap_allows_that_and_no_attack(attack: str) -> None:
    assert signs(PERMIT2_RULE, typed_data(permit2_single(spender=ROUTER, amount=10**9)))
    assert not signs(PERMIT2_RULE, typed_data(permit2_single(spender=ROUTER, amount=10**9 + 1)))
    assert not signs(PERMIT2_RULE, ATTACKS[attack])


# ------------------------------------------------------------------------------------------------------------
# Traces and the denial reason.

EVERY_INTENT_CONDITION: dict[str, Any] = {
    "kinds": ["transaction"],
    "intents": [
        "safe_transaction",
        "multisend",
        "erc20_transfer",
        "erc20_approve",
        "permit2_allowance",
        "set_approval_for_all",
        "governor_propose",
    ],
    "requires_intents": ["multisend"],
    "tokens": [USDC],
    "recipients": [VAULT],
    "spenders": [ROUTER],
    "operators": [ROUTER],
    "allow_unlimited_approval": True,
    "token_caps": [{"token": USDC, "max": "5000000"}],
    "max_permit_horizon_seconds": HOUR,
    "safes": [SAFE],
    "safe_operations": ["CALL", "DELEGATECALL"],
    "delegatecall_targets": [MULTISEND_CALL_ONLY],
    "allow_refund": True,
    "governance_targets": [USDC],
    "token_velocity": [{"token": USDC, "window_seconds": 60, "max": "5000000"}],
}


def test_every_intent_condition_is_in_the_trace_in_registry_order_and_reads_back() -> None:
    batch = safe_tx(
        multisend(erc20_transfer(), erc20_approve(spender=ROUTER, amount=1)),
        delegate=MULTISEND_CALL_ONLY,
        refund=True,
        typed_data=False,
    )
    evaluation = policy(EVERY_INTENT_CONDITION).evaluate(transaction(batch), TokenBook({}))
    (trace,) = evaluation.trace
    assert [c.condition for c in trace.conditions] == [
        "keys",
        "kinds",
        "intents",
        "requires_intents",
        "tokens",
        "recipients",
        "spenders",
        "operators",
        # No unlimited approval in the batch: that condition has nothing to say, and stays out.
        "token_caps",
        "max_permit_horizon_seconds",
        "safes",
        "safe_operations",
        "refunds",
        "governance_targets",
        "token_velocity",
    ]
    assert evaluation.decision.action == "sign", trace
    assert trace_from_json(trace_to_json(evaluation.trace)) == evaluation.trace
    # The intents condition is parsed before the conditions that ask it which kinds the rule names, and the
    # ether velocity limit stays last.
    order = list(CONDITION_TYPES)
    assert order.index(IntentCondition) < order.index(TokenCondition)
    assert order[-1] is VelocityLimit


def test_a_denial_names_the_intent_that_stopped_the_rule() -> None:
    rules = policy({"intents": ["native_transfer"]})
    decision = rules.evaluate(transaction(erc20_approve())).decision
    assert decision.reason == (
        "no rule allows this request (deny by default); rule 'rule-0' did not match: intent 1: erc20_approve"
        f" 'approve(address,uint256)' on {USDC} is not of an allowed kind ('native_transfer'); intent 1:"
        f" erc20_approve 'approve(address,uint256)' on {USDC} is an unlimited approval, and this rule has no"
        " allow_unlimited_approval"
    )


# ------------------------------------------------------------------------------------------------------------
# The parser: errors name the file, the rule and the field.

PREFIX = "policy.toml: rule 'rule-0' (rules[0]): "

PARSE_ERRORS = [
    pytest.param(
        {"intents": "native_transfer"}, "intents: must be a list of intent kinds", id="intents-string"
    ),
    pytest.param(
        {"intents": ["native_transfers"]},
        "intents: unknown intent kind 'native_transfers'; allowed are",
        id="intents-unknown-kind",
    ),
    pytest.param(
        {"intents": ["native_transfer"], "requires_intents": ["upgrade"]},
        "requires_intents: 'upgrade' must also be in intents, or no request could match the rule",
        id="requires-what-intents-does-not-allow",
    ),
    pytest.param(
        {"requires_intents": ["upgrade"]}, "requires_intents: judges intents", id="requires-without-intents"
    ),
    pytest.param(
        {"tokens": [USDC]},
        "tokens: judges intents, so the rule must also say which intent kinds it"
        ' allows, e.g. intents = ["erc20_transfer"]',
        id="tokens-without-intents",
    ),
    pytest.param(
        {"intents": ["native_transfer"], "tokens": [USDC]},
        "tokens: applies only to intents of kind",
        id="tokens-for-no-token-kind",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "tokens": [USDC.lower()[:-1]]},
        "tokens: must be 0x followed by 40 hex digits",
        id="tokens-bad-address",
    ),
    pytest.param(
        {"intents": ["erc20_approve"]},
        "spenders: is required: intents names 'erc20_approve', which gives a"
        " spender power over the key's assets, so the rule must list the spenders it allows",
        id="approve-without-spenders",
    ),
    pytest.param(
        {"intents": ["set_approval_for_all"]},
        "operators: is required: intents names 'set_approval_for_all'",
        id="set-approval-without-operators",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "recipients": []},
        "recipients: must list at least one address, got an empty list",
        id="recipients-empty",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "recipients": [VAULT, VAULT.lower()]},
        f"recipients: lists {VAULT} twice",
        id="recipients-twice",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "token_caps": [{"token": USDC}]},
        "token_caps[0]: must have exactly the keys 'token' and 'max'",
        id="cap-without-max",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "token_caps": [{"token": USDC, "max": "-1"}]},
        "token_caps[0].max: must be between 0 and 2**256-1, got -1",
        id="cap-negative",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "token_caps": [{"token": USDC, "max": 1}, {"token": USDC, "max": 2}]},
        f"token_caps[1]: caps token {USDC} twice",
        id="cap-twice",
    ),
    pytest.param(
        {"allow_unlimited_approval": "yes"},
        "allow_unlimited_approval: must be true or false, got 'yes'",
        id="unlimited-not-bool",
    ),
    pytest.param(
        {"allow_unlimited_approval": True},
        "allow_unlimited_approval: judges intents",
        id="unlimited-without-intents",
    ),
    pytest.param(
        {"intents": ["permit"], "spenders": [ROUTER], "max_permit_horizon_seconds": 0},
        "max_permit_horizon_seconds: must be an integer from 1 to 31622400 (366 days), got 0",
        id="horizon-zero",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "max_permit_horizon_seconds": 60},
        "max_permit_horizon_seconds: applies only to intents of kind 'permit', 'permit2_allowance',"
        " 'permit2_transfer'",
        id="horizon-without-permits",
    ),
    pytest.param(
        {"intents": ["safe_transaction"]},
        "safes: is required: intents names 'safe_transaction'",
        id="safe-without-safes",
    ),
    pytest.param(
        {"intents": ["safe_transaction"], "safes": [SAFE], "safe_operations": ["STATICCALL"]},
        "safe_operations: unknown operation 'STATICCALL'; allowed are 'CALL', 'DELEGATECALL'",
        id="operation-unknown",
    ),
    pytest.param(
        {"intents": ["safe_transaction"], "safes": [SAFE], "safe_operations": ["CALL", "DELEGATECALL"]},
        'delegatecall_targets: is required when safe_operations allows "DELEGATECALL"',
        id="delegatecall-without-targets",
    ),
    pytest.param(
        {
            "intents": ["safe_transaction"],
            "safes": [SAFE],
            "delegatecall_targets": [MULTISEND_CALL_ONLY, STRANGER],
        },
        'delegatecall_targets: lists contracts, but safe_operations does not allow "DELEGATECALL"',
        id="targets-without-delegatecall",
    ),
    pytest.param(
        {"safe_operations": ["CALL"]}, "safe_operations: judges intents", id="operations-without-intents"
    ),
    pytest.param({"allow_refund": True}, "allow_refund: judges intents", id="refund-without-intents"),
    pytest.param(
        {"intents": ["governor_propose"]},
        "governance_targets: is required: intents names 'governor_propose'",
        id="proposal-without-targets",
    ),
    pytest.param(
        {"typed_data": []},
        "typed_data: must list at least one { primary_type, ... } table",
        id="typed-data-empty",
    ),
    pytest.param(
        {"typed_data": [{"name": "Ether Mail"}]},
        "typed_data[0].primary_type: is required",
        id="typed-data-without-primary-type",
    ),
    pytest.param(
        {"typed_data": [{"primary_type": "Mail", "chainId": 1}]},
        "typed_data[0]: unknown key 'chainId'; allowed are 'chain_id', 'name', 'primary_type',"
        " 'verifying_contract', 'version'",
        id="typed-data-unknown-key",
    ),
    pytest.param(
        {"typed_data": [{"primary_type": "Mail", "chain_id": 0}]},
        "typed_data[0].chain_id: must be a chain id",
        id="typed-data-chain-zero",
    ),
    pytest.param(
        {"typed_data": [{"primary_type": "Mail"}, {"primary_type": "Mail"}]},
        "typed_data[1]: repeats typed_data[0]",
        id="typed-data-twice",
    ),
    pytest.param(
        {"kinds": ["transaction"], "typed_data": [{"primary_type": "Mail"}]},
        "typed_data: only typed data can match it, but kinds does not include 'typed_data'",
        id="typed-data-excluded-by-kinds",
    ),
    pytest.param(
        {"kinds": ["message"], "max_value_wei": 1},
        "max_value_wei: only transactions can match it, but kinds does not include 'transaction'",
        id="value-cap-excluded-by-kinds",
    ),
    pytest.param(
        {"kinds": ["typed_data"], "destinations": [SAFE]},
        "destinations: only transactions, and typed data in a rule that lists typed_data, can match it",
        id="destinations-excluded-by-kinds",
    ),
    pytest.param(
        {"text_only": False},
        "text_only: = false allows binary messages only in a rule whose intents also names 'binary_message'",
        id="binary-without-naming-it",
    ),
    pytest.param(
        {"intents": ["binary_message"]},
        "text_only: must be false in a rule whose intents names 'binary_message'",
        id="binary-named-but-text-only",
    ),
    pytest.param(
        {"allow_hash_like": True},
        "allow_hash_like: a hash-like message is binary, so it needs text_only = false",
        id="hash-like-text-only",
    ),
    pytest.param(
        {"intents": ["binary_message"], "text_only": False, "message_prefixes": ["Sign"]},
        "message_prefixes: a binary message has no text to match",
        id="prefixes-for-binary",
    ),
    pytest.param(
        {"message_prefixes": [""]},
        "message_prefixes: an empty prefix would allow every text",
        id="prefix-empty",
    ),
    pytest.param(
        {"max_message_bytes": 0},
        "max_message_bytes: must be an integer from 1 to 131072, got 0",
        id="message-bytes-zero",
    ),
    pytest.param(
        {"kinds": ["transaction"], "max_message_bytes": 10},
        "max_message_bytes: only messages can match it, but kinds does not include 'message'",
        id="message-excluded-by-kinds",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "token_velocity": {"token": USDC}},
        "token_velocity: must be a list of { token, window_seconds, max } tables, got a table",
        id="velocity-table",
    ),
    pytest.param(
        {"intents": ["erc20_transfer"], "token_velocity": [{"token": USDC, "window_seconds": 0, "max": 1}]},
        "token_velocity[0].window_seconds: must be an integer from 1 to 31622400",
        id="velocity-window",
    ),
    pytest.param(
        {
            "intents": ["erc20_transfer"],
            "token_velocity": [
                {"token": USDC, "window_seconds": 60, "max": 1},
                {"token": USDC, "window_seconds": 60, "max": 2},
            ],
        },
        f"token_velocity[1]: limits token {USDC} over 60 s twice",
        id="velocity-twice",
    ),
]


@pytest.mark.parametrize(("rule", "message"), PARSE_ERRORS)
def test_malformed_intent_conditions_are_refused_naming_file_rule_and_field(
    rule: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        policy(rule)
    assert refused.value.message.startswith(PREFIX + message), refused.value.message


# ------------------------------------------------------------------------------------------------------------
# Deny rules: what every rule refuses unless it says otherwise narrows the rules that sign, never a deny rule,
# which would otherwise hand its requests to the rules after it.


def test_a_deny_rule_matches_what_the_guards_would_refuse_so_later_rules_never_see_it() -> None:
    rules = policy(
        {"kinds": ["typed_data", "message"], "action": "deny"},
        {
            "kinds": ["typed_data"],
            "intents": ["typed_data", "permit"],
            "spenders": [STRANGER],
            "allow_unlimited_approval": True,
            "typed_data": [{"primary_type": "Mail"}, {"primary_type": "Permit"}],
        },
    )
    for request in (typed_data(mail()), typed_data(permit()), message(binary_message(size=32))):
        decision = rules.evaluate(request).decision
        assert (decision.action.value, decision.rule) == ("deny", "rule-0")
    # Nor must a deny rule list the spenders of the approvals it denies.
    approvals = policy({"intents": ["erc20_approve"], "action": "deny"})
    assert approvals.evaluate(transaction(erc20_approve())).decision.rule == "rule-0"


# ------------------------------------------------------------------------------------------------------------
# Deny rules: a condition on intents matches when SOME part of the request is what it lists, so a batch that
# hides one denied call among allowed ones is denied.


@pytest.mark.parametrize(
    ("deny_fields", "hidden"),
    [
        ({"intents": ["erc20_approve"]}, erc20_approve(amount=5)),
        ({"recipients": [STRANGER]}, native(to=STRANGER)),
        ({"intents": ["erc20_transfer"], "recipients": [STRANGER]}, erc20_transfer(to=STRANGER)),
        ({"spenders": [STRANGER]}, erc20_approve(amount=5)),
        ({"operators": [STRANGER]}, set_approval_for_all()),
        ({"tokens": [DAI]}, erc20_transfer(token=DAI)),
        ({"safes": [VAULT]}, safe_tx(native(), safe=VAULT)),
        ({"governance_targets": [STRANGER]}, propose(native(to=STRANGER))),
        (
            {"safe_operations": ["DELEGATECALL"], "delegatecall_targets": [STRANGER]},
            safe_tx(native(), delegate=STRANGER),
        ),
    ],
    ids=[
        "intents",
        "recipients",
        "intents+recipients",
        "spenders",
        "operators",
        "tokens",
        "safes",
        "targets",
        "delegatecall",
    ],
)
def test_a_deny_rule_matches_a_batch_when_one_inner_call_is_what_it_denies(
    deny_fields: dict[str, Any], hidden: Intent
) -> None:
    deny = {"action": "deny", **deny_fields}
    kinds = ["native_transfer", "erc20_transfer", "erc20_approve", "set_approval_for_all", "governor_propose"]
    allow = {"intents": [*kinds, "safe_transaction", "multisend"], "allow_unlimited_approval": True}
    allow |= {"recipients": [VAULT, STRANGER, SAFE], "spenders": [STRANGER], "operators": [STRANGER]}
    allow |= {"safes": [SAFE, VAULT], "governance_targets": [STRANGER, VAULT]}
    allow |= {
        "safe_operations": ["CALL", "DELEGATECALL"],
        "delegatecall_targets": [MULTISEND_CALL_ONLY, STRANGER],
    }
    rules = policy(deny, allow)
    batch = transaction(safe_tx(multisend(native(), erc20_transfer(), hidden), delegate=MULTISEND_CALL_ONLY))
    decision = rules.evaluate(batch).decision
    assert (decision.action.value, decision.rule) == ("deny", "rule-0")
    innocent = transaction(safe_tx(multisend(native(), erc20_transfer()), delegate=MULTISEND_CALL_ONLY))
    decision = rules.evaluate(innocent).decision
    assert (decision.action.value, decision.rule) == ("sign", "rule-1")


def test_a_deny_rule_on_delegatecall_without_targets_denies_every_delegatecall_and_nothing_else() -> None:
    rules = policy(
        {"action": "deny", "safe_operations": ["DELEGATECALL"]},
        {"intents": ["safe_transaction", "multisend", "native_transfer"], "safes": [SAFE]},
    )
    batch = transaction(safe_tx(multisend(native()), delegate=MULTISEND_CALL_ONLY))
    decision = rules.evaluate(batch).decision
    assert (decision.action.value, decision.rule) == ("deny", "rule-0")
    plain = rules.evaluate(transaction(safe_tx(native()))).decision
    assert (plain.action.value, plain.rule) == ("sign", "rule-1")


ON_ALLOWING_RULES = "set it on the rules that sign or ask for approval"
DENY_MESSAGES = "to deny binary messages, name binary_message in intents"


LIMIT = "is a limit on what a rule allows"
PERMISSION = "is a permission for rules that sign or ask for approval"


REFUSED_IN_DENY_RULES = [
    pytest.param("token_caps", [{"token": USDC, "max": "100"}], LIMIT, "to deny a token, list it in tokens"),
    pytest.param(
        "token_velocity",
        [{"token": USDC, "window_seconds": 60, "max": "100"}],
        LIMIT,
        "to deny a token, list it in tokens",
    ),
    pytest.param("max_permit_horizon_seconds", 100, LIMIT, "to deny permits, name their kinds in intents"),
    pytest.param("max_value_wei", str(ONE_ETHER), LIMIT, ON_ALLOWING_RULES),
    pytest.param("max_fee_wei", "10000000000000000", LIMIT, ON_ALLOWING_RULES),
    pytest.param("velocity", {"window_seconds": 3600, "max_count": 5}, LIMIT, ON_ALLOWING_RULES),
    pytest.param("max_message_bytes", 64, LIMIT, DENY_MESSAGES),
    pytest.param(
        "allow_unlimited_approval", False, PERMISSION, "to deny approvals, name their kinds in intents"
    ),
    pytest.param(
        "allow_unlimited_approval", True, PERMISSION, "to deny approvals, name their kinds in intents"
    ),
    pytest.param(
        "allow_refund", False, PERMISSION, "to deny Safe transactions, name safe_transaction in intents"
    ),
    pytest.param("allow_replacement", False, PERMISSION, "a deny rule matches replacements"),
    pytest.param("allow_replacement", True, PERMISSION, "a deny rule matches replacements"),
    pytest.param("text_only", True, PERMISSION, DENY_MESSAGES),
    pytest.param("allow_hash_like", False, PERMISSION, DENY_MESSAGES),
]


@pytest.mark.parametrize(("field", "value", "refused_as", "instead"), REFUSED_IN_DENY_RULES)
def test_a_limit_or_permission_in_a_deny_rule_is_refused_naming_the_field(
    field: str, value: Any, refused_as: str, instead: str
) -> None:
    # Within a limit is what the rule would match, so a deny rule with one would let through what exceeds it;
    # a deny rule is not narrowed by what signing rules refuse, and a permission "= false" would make it skip
    # exactly the unlimited approvals, refunds, replacements or hash-like messages, handing them on.
    intents = ["erc20_transfer", "erc20_approve", "permit", "safe_transaction"]
    with pytest.raises(ConfigurationError) as refused:
        policy({"action": "deny", "intents": intents, field: value})
    assert "rule-0" in refused.value.message
    assert f"{field}: {refused_as}" in refused.value.message
    assert instead in refused.value.message


# What a deny rule may use: each field names what the rule denies, and the rule matches what it names.
DENY_RULE_SELECTORS: dict[str, dict[str, Any]] = {
    "keys": {},
    "chain_ids": {"chain_ids": [1]},
    "kinds": {"kinds": ["transaction"]},
    "transaction_types": {"transaction_types": ["eip4844"]},
    "destinations": {"destinations": [STRANGER]},
    "contracts": {"contracts": [{"address": ROUTER, "selectors": ["0xa9059cbb"]}]},
    "intents": {"intents": ["erc20_transfer"]},
    "requires_intents": {"intents": ["erc20_transfer", "upgrade"], "requires_intents": ["upgrade"]},
    "tokens": {"tokens": [DAI]},
    "recipients": {"recipients": [STRANGER]},
    "spenders": {"spenders": [STRANGER]},
    "operators": {"operators": [STRANGER]},
    "safes": {"safes": [SAFE]},
    "safe_operations": {"safe_operations": ["DELEGATECALL"]},
    "delegatecall_targets": {"safe_operations": ["DELEGATECALL"], "delegatecall_targets": [STRANGER]},
    "governance_targets": {"governance_targets": [STRANGER]},
    "delegates": {"delegates": [STRANGER]},
    "typed_data": {"typed_data": [{"primary_type": "Mail"}]},
    "message_prefixes": {"message_prefixes": ["Transfer ownership"]},
}


@pytest.mark.parametrize("field", sorted(DENY_RULE_SELECTORS))
def test_a_selector_loads_in_a_deny_rule(field: str) -> None:
    policy({"action": "deny", **DENY_RULE_SELECTORS[field]})


def test_every_rule_field_is_either_a_deny_rule_selector_or_refused_in_deny_rules() -> None:
    # A new condition must decide which it is: one left out here could bring back "deny only within the limit".
    refused = {case.values[0] for case in REFUSED_IN_DENY_RULES} | {"any_chain"}
    every_field = {field for condition in CONDITION_TYPES for field in condition.TOML_FIELDS}
    assert not refused & set(DENY_RULE_SELECTORS)
    assert every_field == refused | set(DENY_RULE_SELECTORS)


def test_deny_rule_selectors_still_deny_what_they_name() -> None:
    # Keys, chains, kinds, destinations, contracts, tokens, parties, typed data and message prefixes name
    # what to deny, so they stay allowed in a deny rule and match what they name.
    rules = policy(
        {"action": "deny", "destinations": [STRANGER]},
        {"action": "deny", "tokens": [DAI]},
        {"action": "deny", "kinds": ["message"], "message_prefixes": ["Transfer ownership"]},
        {"action": "deny", "typed_data": [{"primary_type": "Mail"}]},
        {
            "intents": ["native_transfer", "erc20_transfer"],
            "recipients": [VAULT],
            "tokens": [USDC, DAI],
            "max_value_wei": str(10 * ONE_ETHER),
        },
        {"kinds": ["message"], "max_message_bytes": 64},
    )
    to_stranger = transaction(native(to=VAULT), to=STRANGER)
    assert rules.evaluate(to_stranger).decision.rule == "rule-0"
    assert rules.evaluate(transaction(erc20_transfer(token=DAI), to=DAI)).decision.rule == "rule-1"
    assert rules.evaluate(message(text_message("Transfer ownership to me"))).decision.rule == "rule-2"
    assert rules.evaluate(message(text_message("Sign in to example.org"))).decision.rule == "rule-5"
    assert rules.evaluate(transaction(erc20_transfer(), to=USDC)).decision.rule == "rule-4"


def test_a_deny_rule_denies_a_replacement_of_what_it_denies() -> None:
    # Replacements are refused by every signing rule that does not allow them, but a deny rule is not narrowed
    # by that: a fee bump of a transfer to a denied recipient must not slip past it to a rule that allows it.
    rules = policy(
        {"action": "deny", "recipients": [STRANGER]},
        {"intents": ["native_transfer"], "recipients": [VAULT, STRANGER], "allow_replacement": True},
    )
    bump = replace(transaction(native(to=STRANGER), to=STRANGER), replacement=True)
    decision = rules.evaluate(bump).decision
    assert (decision.action.value, decision.rule) == ("deny", "rule-0")
    allowed_bump = replace(transaction(native(to=VAULT), to=VAULT), replacement=True)
    decision = rules.evaluate(allowed_bump).decision
    assert (decision.action.value, decision.rule) == ("sign", "rule-1")


def test_a_deny_rule_naming_binary_messages_cannot_narrow_them_by_prefix() -> None:
    # Prefixes match text only, so the rule would deny text messages and let the binary ones it names through.
    with pytest.raises(ConfigurationError) as refused:
        policy({"action": "deny", "intents": ["binary_message"], "message_prefixes": ["0x"]})
    assert "message_prefixes: a binary message has no text to match" in refused.value.message
    rules = policy({"action": "deny", "intents": ["binary_message"]}, {"kinds": ["message"]})
    assert rules.evaluate(message(binary_message())).decision.rule == "rule-0"
    assert rules.evaluate(message(text_message())).decision.rule == "rule-1"

"""What the policy decides about a submission, and what follows: signed at once, denied with a reason that names
the condition, or waiting for a quorum; fee caps; velocity limits and the circuit breaker they trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rlp

from custody.domain.errors import InvalidInput, KeyFrozen, NotFound, PermissionDenied
from custody.domain.keys import KeyState
from custody.domain.principals import Principal
from custody.domain.requests import DecisionAction, PayloadKind, RequestState

from .conftest import (
    ADMIN,
    ALICE,
    BACKEND,
    CAROL,
    ONE_ETHER,
    App,
    AppFactory,
    assert_signed_by,
    assert_unsigned,
    transaction,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# The EIP-712 "Mail" example; the vector file names its source.
MAIL_TYPED_DATA = json.loads((Path(__file__).parents[1] / "vectors" / "eip712_mail.json").read_text())[
    "typed_data"
]
FEE_REASON = (
    "maximum fee 30000000000000000000000 wei (30000 ether) exceeds the cap of 50000000000000000 wei"
    " (0.05 ether)"
)
VELOCITY = "velocity = { window_seconds = 3600, max_count = 2, freeze_on_breach = true }\n"


def conditions(app: App, request_id: str, rule: str) -> dict[str, tuple[bool, str]]:
    """What `policy explain` shows for ``rule``: each condition's outcome and detail."""
    explained = app.custody.policy.explain(app.get(request_id))
    (trace,) = [traced for traced in explained.rules if traced.rule == rule]
    return {condition.condition: (condition.matched, condition.detail) for condition in trace.conditions}


def test_ops_transactions_typed_data_and_messages_are_signed_at_once(app: App) -> None:
    address = app.keys["ops"].address
    signed = app.submit_tx("ops")
    assert signed.decision.action is DecisionAction.SIGN
    assert signed.decision.rule == "ops-transactions"
    assert_signed_by(signed, address)
    legacy = app.submit(
        "ops",
        {
            "chainId": 1,
            "nonce": app.nonce(),
            "to": transaction(0)["to"],
            "value": 1,
            "gas": 21000,
            "gasPrice": 20 * 10**9,
        },
    )
    assert_signed_by(legacy, address)
    assert legacy.result is not None and legacy.result.signed_tx is not None
    assert legacy.result.signed_tx[0] >= 0xC0  # a legacy RLP list, not a typed envelope
    assert_signed_by(app.submit("ops", MAIL_TYPED_DATA, kind=PayloadKind.TYPED_DATA), address)
    assert_signed_by(
        app.submit("ops", b"I approve governance proposal 42.", kind=PayloadKind.MESSAGE), address
    )


@pytest.mark.parametrize(
    ("key", "fields"),
    [
        ("treasury", {"chainId": 5}),
        ("ops", {"value": 2 * ONE_ETHER}),
        ("ops", {"chainId": 5}),
        ("ops", {"type": 1, "gasPrice": 20 * 10**9, "accessList": []}),
    ],
    ids=["treasury-on-an-unlisted-chain", "over-the-value-cap", "unlisted-chain", "eip2930-not-allowed"],
)
def test_what_no_rule_allows_is_denied(app: App, key: str, fields: dict[str, object]) -> None:
    tx = transaction(app.nonce(), **fields)
    if tx["type"] == 1:
        del tx["maxFeePerGas"], tx["maxPriorityFeePerGas"]
    denied = app.submit(key, tx)
    assert denied.state is RequestState.DENIED
    assert denied.decision.rule is None
    assert "deny by default" in denied.decision.reason
    assert_unsigned(denied)
    assert [event.kind for event in app.events(request_id=denied.request_id)] == [
        "request.submitted",
        "request.denied",
    ]


def test_a_requester_signs_only_with_granted_keys(app: App) -> None:
    for caller in (CAROL, ADMIN, ALICE):
        with pytest.raises(PermissionDenied):
            app.submit("ops", transaction(app.nonce()), caller=caller)
    # A key that is not granted is not even looked up: the caller learns nothing about it.
    with pytest.raises(PermissionDenied):
        app.submit("nope", b"hi", kind=PayloadKind.MESSAGE)
    granted_but_missing = Principal(BACKEND.name, BACKEND.roles, frozenset({"missing"}))
    with pytest.raises(NotFound):
        app.submit("missing", b"hi", kind=PayloadKind.MESSAGE, caller=granted_but_missing)
    assert app.custody.signing.list(ADMIN) == []


def test_bad_input_is_refused_and_nothing_is_stored(app: App) -> None:
    broken_checksum = transaction(app.nonce(), to="0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    with pytest.raises(InvalidInput) as refused:
        app.submit("ops", broken_checksum)
    assert refused.value.field == "to"
    with pytest.raises(InvalidInput):
        app.submit("ops", b"{not json")
    with pytest.raises(InvalidInput, match="payload"):
        app.submit("ops", b"x" * (128 * 1024 + 1), kind=PayloadKind.MESSAGE)
    assert app.custody.signing.list(ADMIN) == []
    assert app.events(kind="request.submitted") == []


def test_a_fee_over_the_cap_is_denied_naming_the_fee(app: App) -> None:
    denied = app.submit_tx("ops", value=10**16, gas=30_000_000, maxFeePerGas=10**15)
    assert denied.state is RequestState.DENIED
    assert_unsigned(denied)
    assert "deny by default" in denied.decision.reason
    assert FEE_REASON in denied.decision.reason
    # The summary an approver or requester sees shows the same total that was capped.
    assert denied.summary["max_fee_wei"] == str(30_000 * ONE_ETHER)
    assert denied.summary["max_fee_ether"] == "30000"
    outcomes = conditions(app, denied.request_id, "ops-transactions")
    assert outcomes["max_fee_wei"] == (False, FEE_REASON)
    # Everything else about the transaction was allowed: the fee alone stopped it.
    assert all(matched for name, (matched, _) in outcomes.items() if name != "max_fee_wei")


def test_a_treasury_transaction_over_its_fee_cap_is_denied_without_asking_approvers(app: App) -> None:
    # 0.1 ether is the treasury cap: 1,000,000 gas at 100 gwei reaches it, one more gas exceeds it.
    over = app.submit_tx("treasury", gas=1_000_001, maxFeePerGas=10**11)
    assert over.state is RequestState.DENIED
    assert "maximum fee 100000100000000000 wei (0.1000001 ether) exceeds" in over.decision.reason
    at_cap = app.submit_tx("treasury", gas=1_000_000, maxFeePerGas=10**11)
    assert at_cap.state is RequestState.PENDING_APPROVAL
    assert at_cap.decision.rule == "treasury-transactions"


def test_an_ordinary_transaction_signs_with_the_fee_fields_it_was_judged_by(app: App) -> None:
    signed = app.submit_tx("ops", value=10**16)
    assert signed.summary["max_fee_ether"] == "0.00063"
    assert_signed_by(signed, app.keys["ops"].address)
    assert signed.result is not None and signed.result.signed_tx is not None
    assert signed.result.signed_tx[0] == 2
    fields = rlp.decode(bytes(signed.result.signed_tx[1:]))
    assert [int.from_bytes(fields[index], "big") for index in (2, 3, 4)] == [10**9, 30 * 10**9, 21000]
    # EIP-2: a low s.
    assert int.from_bytes(fields[-1], "big") <= SECP256K1_N // 2


def test_hitting_the_velocity_limit_denies_and_freezes_the_key(make_app: AppFactory) -> None:
    cap = 'max_value_wei = "1000000000000000000"  # 1 ether\n'
    app = make_app(policy=lambda document: document.replace(cap, cap + VELOCITY, 1))
    for _ in range(2):
        assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)

    third = app.submit_tx("ops")
    assert third.state is RequestState.DENIED
    assert_unsigned(third)
    assert app.custody.keys.get_key(ADMIN, "ops").state is KeyState.FROZEN
    velocity = [
        (matched, detail)
        for name, (matched, detail) in conditions(app, third.request_id, "ops-transactions").items()
        if name.startswith("velocity")
    ]
    assert velocity and not velocity[0][0]
    frozen = app.events(kind="key.frozen")
    assert [(event.actor, event.details["key"]) for event in frozen] == [("custody", "ops")]

    with pytest.raises(KeyFrozen, match="frozen"):
        app.submit_tx("ops")
    # The window slides: an hour later the key would have room again, but it stays frozen until the admin
    # quorum unfreezes it.
    app.clock.advance(3601)
    with pytest.raises(KeyFrozen):
        app.submit_tx("ops")


def test_requests_waiting_for_approval_count_towards_velocity(make_app: AppFactory) -> None:
    treasury_rule = 'quorum = [{ group = "treasury", threshold = 2 }]\nlifetime_seconds = 86400\n'
    limit = "velocity = { window_seconds = 3600, max_count = 1 }\n"
    app = make_app(policy=lambda document: document.replace(treasury_rule, treasury_rule + limit, 1))
    first = app.pending()
    second = app.submit_tx("treasury")
    assert second.state is RequestState.DENIED
    app.approve(first, "alice")
    assert_signed_by(app.approve(first, "bob"), app.keys["treasury"].address)

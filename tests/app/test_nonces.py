"""Nonce protection: one signed payload per (key, chain, nonce) unless the policy allows an explicit replacement;
the identical payload again returns the stored signature without a second HSM call."""

from __future__ import annotations

import logging

import pytest

from custody.domain.errors import FailedPrecondition, InvalidInput
from custody.domain.requests import RequestState, SigningRequest

from .conftest import BACKEND, App, AppFactory, assert_signed_by, transaction

# Fee bumps for ops: a replacement of an earlier ops transaction is signed at once. The rule goes first, so a
# plain request is still decided by the development policy's own rules.
FEE_BUMP_RULE = """
[[rules]]
name = "ops-fee-bumps"
keys = ["ops"]
kinds = ["transaction"]
max_value_wei = "1000000000000000000"
allow_replacement = true
action = "sign"
"""
# On chain 10, which the development policy does not name, ops signs only with two treasury approvals,
# replacements too: a replacement that waits for approvals and is then cancelled.
APPROVED_REPLACEMENT_RULE = """
[[rules]]
name = "ops-chain-10"
keys = ["ops"]
chain_ids = [10]
kinds = ["transaction"]
allow_replacement = true
action = "approve"
quorum = [{ group = "treasury", threshold = 2 }]
"""
OTHER_CHAIN = 10


def with_replacement_rules(document: str) -> str:
    first_rule = document.index("[[rules]]")
    rules = APPROVED_REPLACEMENT_RULE.lstrip() + "\n" + FEE_BUMP_RULE.lstrip() + "\n"
    return document[:first_rule] + rules + document[first_rule:]


@pytest.fixture
def app(make_app: AppFactory) -> App:
    return make_app(policy=with_replacement_rules)


class HsmSignatures:
    """Counts the log lines the signing path writes after each HSM signature, per request."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        caplog.set_level(logging.INFO, logger="custody.app.signing")

    def of(self, request: SigningRequest) -> int:
        line = f"request {request.request_id} signed with key"
        return sum(line in record.getMessage() for record in self._caplog.records)


@pytest.fixture
def hsm_signatures(caplog: pytest.LogCaptureFixture) -> HsmSignatures:
    return HsmSignatures(caplog)


def test_the_same_payload_again_returns_the_stored_signature(app: App, hsm_signatures: HsmSignatures) -> None:
    tx = transaction(app.nonce())
    first = app.submit("ops", tx)
    assert_signed_by(first, app.keys["ops"].address)
    again = app.submit("ops", tx)
    assert again.request_id == first.request_id
    assert again.result == first.result
    assert hsm_signatures.of(first) == 1


def test_a_different_payload_for_a_signed_nonce_is_refused_naming_the_earlier_request(app: App) -> None:
    nonce = app.nonce()
    first = app.submit("ops", transaction(nonce))
    with pytest.raises(FailedPrecondition, match=first.request_id):
        app.submit("ops", transaction(nonce, value=12345))
    # The same nonce on another chain is another nonce.
    assert_signed_by(app.submit("ops", transaction(nonce, value=12345, chainId=1)), app.keys["ops"].address)


def test_a_pending_request_holds_its_nonce_too(app: App) -> None:
    nonce = app.nonce()
    pending = app.submit("treasury", transaction(nonce))
    assert pending.state is RequestState.PENDING_APPROVAL
    with pytest.raises(FailedPrecondition, match=pending.request_id):
        app.submit("treasury", transaction(nonce, value=777))


def test_a_denied_request_does_not_hold_the_nonce(app: App) -> None:
    nonce = app.nonce()
    denied = app.submit("ops", transaction(nonce, value=5 * 10**18))
    assert denied.state is RequestState.DENIED
    assert_signed_by(app.submit("ops", transaction(nonce)), app.keys["ops"].address)


def test_an_explicit_replacement_allowed_by_policy_is_signed(app: App) -> None:
    nonce = app.nonce()
    original = app.submit("ops", transaction(nonce))
    bumped = transaction(nonce, maxFeePerGas=60 * 10**9, maxPriorityFeePerGas=2 * 10**9)
    replacement = app.submit("ops", bumped, replaces=original.request_id)
    assert replacement.replaces == original.request_id
    assert replacement.decision.rule == "ops-fee-bumps"
    assert_signed_by(replacement, app.keys["ops"].address)
    assert replacement.result != original.result

    # A replacement must name the request that holds the nonce, and differ from it.
    with pytest.raises(FailedPrecondition):
        app.submit("ops", transaction(nonce, value=99), replaces="req_" + "0" * 32)
    with pytest.raises(InvalidInput, match="identical"):
        app.submit("ops", bumped, replaces=replacement.request_id)


def test_a_replacement_without_a_rule_allowing_it_is_denied(app: App) -> None:
    nonce = app.nonce()
    pending = app.submit("treasury", transaction(nonce))
    replacement = app.submit("treasury", transaction(nonce, value=1), replaces=pending.request_id)
    assert replacement.state is RequestState.DENIED
    assert app.get(pending.request_id).state is RequestState.PENDING_APPROVAL


def test_a_cancelled_replacement_gives_the_nonce_back_to_the_signed_request(
    app: App, hsm_signatures: HsmSignatures
) -> None:
    nonce = app.nonce()
    tx = transaction(nonce, chainId=OTHER_CHAIN)
    original = app.submit("ops", tx)
    app.approve(original, "alice")
    signed = app.approve(original, "bob")
    assert_signed_by(signed, app.keys["ops"].address)

    bumped = transaction(nonce, chainId=OTHER_CHAIN, maxFeePerGas=60 * 10**9)
    replacement = app.submit("ops", bumped, replaces=original.request_id)
    assert replacement.state is RequestState.PENDING_APPROVAL
    app.custody.signing.cancel(BACKEND, replacement.request_id, "fee fell again")

    # A signature for the nonce exists: another payload for it is refused, naming the signed request, and the
    # signed payload again still returns its stored signature.
    with pytest.raises(FailedPrecondition, match=original.request_id):
        app.submit("ops", transaction(nonce, value=4321, chainId=OTHER_CHAIN))
    again = app.submit("ops", tx)
    assert again.request_id == original.request_id
    assert again.result == signed.result
    assert hsm_signatures.of(original) == 1

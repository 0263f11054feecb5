"""EIP-7702 authorizations and blob and set-code transactions through the use cases, on a real SoftHSM2 token
and a real SQLite file: denied by the development policy naming the missing rule, and with the README's example
rule pasted into it, exactly one delegate on one chain signed after the treasury's approval, each signature
recovered by eth-account and usable in a set-code transaction."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from custody.chains.evm import Transaction, parse_payload
from custody.chains.evm.signature import SECP256K1_HALF_N
from custody.domain.errors import FailedPrecondition, InvalidInput
from custody.domain.requests import PayloadKind, RequestState
from tests import evm_payloads as payloads

from .conftest import ADMIN, SEPOLIA, App, AppFactory, assert_signed_by, assert_unsigned, transaction

README = Path(__file__).parents[2] / "README.md"
DELEGATE = payloads.EXAMPLE_DELEGATE
OTHER_DELEGATE = payloads.ATTACKER
RECIPIENT = payloads.PAYEE


def example_rule() -> str:
    """The example delegation rule of the README, as an operator would copy it."""
    text = README.read_text()
    match = re.search(r"```toml\n(\[\[rules\]\]\nname = \"ops-delegation\".*?)```", text, re.DOTALL)
    assert match is not None, "the README lost its example delegation rule"
    return match.group(1)


def authorization(chain_id: int = SEPOLIA, delegate: str = DELEGATE, nonce: int = 0) -> dict[str, Any]:
    return {"chainId": chain_id, "address": delegate, "nonce": nonce}


def set_code_transaction(nonce: int, signed_tuple: dict[str, Any]) -> dict[str, Any]:
    return payloads.set_code_transaction(RECIPIENT, nonce, [signed_tuple], value=10**17)


def third_party_tuple() -> dict[str, Any]:
    return payloads.signed_authorization(SEPOLIA)


@pytest.mark.parametrize("key", ["ops", "treasury"])
def test_the_development_policy_denies_every_new_kind_and_type_naming_the_missing_rule(
    app: App, key: str
) -> None:
    denied = {
        "authorization": app.submit(key, authorization(), kind=PayloadKind.AUTHORIZATION),
        "authorization on every chain": app.submit(
            key, authorization(chain_id=0, nonce=1), kind=PayloadKind.AUTHORIZATION
        ),
        "blob transaction": app.submit(key, payloads.blob_transaction(RECIPIENT, app.nonce(), value=10**17)),
        "set-code transaction": app.submit(key, set_code_transaction(app.nonce(), third_party_tuple())),
    }
    for what, request in denied.items():
        assert request.state is RequestState.DENIED, what
        assert_unsigned(request)
        assert request.decision.rule is None, what
    assert "kind 'authorization' is not in" in denied["authorization"].decision.reason
    assert "'eip4844'" in denied["blob transaction"].decision.reason
    assert "'eip7702'" in denied["set-code transaction"].decision.reason
    # Stored with the decision, the summary shows the delegate and the warning.
    assert denied["authorization"].summary["delegate"] == DELEGATE
    assert "EVERY chain" in denied["authorization on every chain"].summary["chain"]


def test_the_readme_example_rule_signs_exactly_one_delegate_on_one_chain(make_app: AppFactory) -> None:
    app = make_app(policy=lambda document: document + "\n" + example_rule())
    ops = app.keys["ops"].address

    request = app.submit("ops", authorization(nonce=4), kind=PayloadKind.AUTHORIZATION)
    assert request.state is RequestState.PENDING_APPROVAL, request.decision.reason
    assert request.decision.rule == "ops-delegation"
    app.approve(request, "alice")
    signed = app.approve(request, "bob")
    assert signed.state is RequestState.SIGNED, signed.error
    assert signed.result is not None and signed.result.signed_tx is None

    # The answer is eth-account's signed authorization: r || s || y_parity, over keccak256(0x05 || rlp(...)).
    signature = signed.result.signature
    assert len(signature) == 65 and signature[64] in (0, 1)
    r, s, y_parity = (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )
    assert s <= SECP256K1_HALF_N
    assert Account._recover_hash(signed.digest, vrs=(27 + y_parity, r, s)) == ops

    # Carried by a set-code transaction, custody's parser recovers the ops key as the authority, independently
    # of the signing path, and eth-account encodes the tuple into a transaction.
    signed_tuple = {
        "chainId": SEPOLIA,
        "address": DELEGATE,
        "nonce": 4,
        "yParity": y_parity,
        "r": hex(r),
        "s": hex(s),
    }
    carrier = parse_payload(
        PayloadKind.TRANSACTION, json.dumps(set_code_transaction(0, signed_tuple)).encode()
    )
    assert isinstance(carrier, Transaction)
    assert carrier.authorization_list[0].authority == ops
    sponsor = Account.create()
    raw = Account.sign_transaction(
        {**set_code_transaction(0, {**signed_tuple, "r": r, "s": s})}, sponsor.key
    ).raw_transaction
    assert Account.recover_transaction(raw) == sponsor.address

    # Nothing else is allowed: another delegate, chain, every chain, another key, or a set-code transaction.
    refused = {
        "another delegate": app.submit(
            "ops", authorization(delegate=OTHER_DELEGATE, nonce=5), kind=PayloadKind.AUTHORIZATION
        ),
        "another chain": app.submit(
            "ops", authorization(chain_id=1, nonce=5), kind=PayloadKind.AUTHORIZATION
        ),
        "every chain": app.submit("ops", authorization(chain_id=0, nonce=5), kind=PayloadKind.AUTHORIZATION),
        "another key": app.submit("treasury", authorization(nonce=5), kind=PayloadKind.AUTHORIZATION),
        "a set-code transaction": app.submit("ops", set_code_transaction(app.nonce(), third_party_tuple())),
    }
    for what, denied in refused.items():
        assert denied.state is RequestState.DENIED, what
        assert_unsigned(denied)


def test_one_authorization_per_key_chain_and_nonce(make_app: AppFactory) -> None:
    app = make_app(policy=lambda document: document + "\n" + example_rule())
    first = app.submit("ops", authorization(nonce=7), kind=PayloadKind.AUTHORIZATION)
    assert first.state is RequestState.PENDING_APPROVAL
    with pytest.raises(FailedPrecondition, match=first.request_id):
        app.submit("ops", authorization(delegate=OTHER_DELEGATE, nonce=7), kind=PayloadKind.AUTHORIZATION)
    # The account's transaction nonce 7 is another slot: the development policy signs this transfer.
    assert_signed_by(app.submit("ops", transaction(7)), app.keys["ops"].address)


INVALID = json.loads(
    (Path(__file__).parents[1] / "vectors" / "invalid_blob_set_code_transactions.json").read_text()
)


BAD_AUTHORIZATIONS = [
    ({"chainId": "1", "address": DELEGATE, "nonce": 0, "yParity": 0}, "yParity"),
    ({"chainId": -1, "address": DELEGATE, "nonce": 0}, "chainId"),
    ({"chainId": 1, "address": DELEGATE.lower()[:-1], "nonce": 0}, "address"),
    ({"chainId": 1, "address": DELEGATE, "nonce": str(2**64 - 1)}, "nonce"),
]


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(app: App) -> None:
    before = app.head()
    requests_before = app.sql("SELECT COUNT(*) FROM requests")
    refused: list[tuple[str, str | None]] = []
    for case in INVALID["cases"]:
        with pytest.raises(InvalidInput) as error:
            app.submit("ops", payloads.apply_invalid_case(INVALID["bases"][case["base"]], case))
        assert error.value.field == case["field"], case["name"]
        refused.append((case["name"], error.value.field))
    for payload, field in BAD_AUTHORIZATIONS:
        with pytest.raises(InvalidInput) as error:
            app.submit("ops", payload, kind=PayloadKind.AUTHORIZATION)
        assert error.value.field == field
    assert len(refused) == len(INVALID["cases"])
    assert app.written_since(before) == []
    assert app.sql("SELECT COUNT(*) FROM requests") == requests_before
    assert app.sql("SELECT COUNT(*) FROM nonces") == [(0,)]


def test_an_authorization_cannot_replace_a_request_and_nothing_is_recorded(make_app: AppFactory) -> None:
    app = make_app(policy=lambda document: document + "\n" + example_rule())
    original = app.submit("ops", authorization(nonce=6), kind=PayloadKind.AUTHORIZATION)
    app.approve(original, "alice")
    signed = app.approve(original, "bob")
    assert signed.state is RequestState.SIGNED, signed.error
    pending_transaction = app.submit_tx("ops")
    before = {request.request_id for request in app.custody.signing.list(ADMIN)}

    # A second authorization for the same nonce would not revoke the signed one: both would stay valid.
    for replaced in (signed, pending_transaction):
        with pytest.raises(InvalidInput, match="only a transaction can replace a request") as refused:
            app.submit(
                "ops",
                authorization(delegate=OTHER_DELEGATE, nonce=6),
                kind=PayloadKind.AUTHORIZATION,
                replaces=replaced.request_id,
            )
        assert refused.value.field == "replaces"
    assert {request.request_id for request in app.custody.signing.list(ADMIN)} == before
    assert app.get(signed.request_id).state is RequestState.SIGNED

"""What CustodyAccount trusts of the daemon's answer to a transaction: nothing. The signed transaction must be
the one asked for in every field (an authorization list, blob hashes and blob fee, an access list as much as a
destination or value), and a call asked again is "the same call" only when every field but the gas and fees a
node fills in is equal.

The daemon's answers here are transactions eth-account signs itself, for a transaction that differs from the
asked one in one field: the check must refuse each.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account

from custody.client.account import SignatureMismatch, _check_transaction_fields, _transaction_identity
from tests import evm_payloads as payloads

SEPOLIA = 11155111
SIGNER = Account.from_key(b"\x11" * 32)
ACCESS_LIST = [{"address": payloads.USDC, "storageKeys": ["0x" + "00" * 31 + "01"]}]


def legacy() -> dict[str, Any]:
    return {
        "chainId": SEPOLIA,
        "nonce": 3,
        "gasPrice": 30 * 10**9,
        "gas": 21_000,
        "to": payloads.PAYEE,
        "value": 10**15,
        "data": "0x",
    }


def access_list() -> dict[str, Any]:
    return {**legacy(), "type": 1, "accessList": ACCESS_LIST}


def eip1559() -> dict[str, Any]:
    return {**payloads.transaction(payloads.PAYEE, 3, value=10**15), "chainId": SEPOLIA, "data": "0x"}


def blob() -> dict[str, Any]:
    return payloads.blob_transaction(payloads.PAYEE, 3, value=10**15)


def set_code() -> dict[str, Any]:
    carried = [payloads.signed_authorization(SEPOLIA, payloads.EXAMPLE_DELEGATE, 1)]
    return payloads.set_code_transaction(payloads.PAYEE, 3, carried, value=0)


def signed(transaction: dict[str, Any]) -> bytes:
    """The raw transaction as eth-account signs it, standing for the daemon's answer."""
    raw = bytes(Account.sign_transaction(transaction, SIGNER.key).raw_transaction)
    assert Account.recover_transaction(raw) == SIGNER.address
    return raw


OTHER_TUPLE = payloads.signed_authorization(SEPOLIA, payloads.ATTACKER, 1)
# For each transaction, the fields that say what it does, changed one at a time.
WHAT_IT_DOES: list[tuple[str, Any, str, Any]] = [
    ("legacy", legacy, "to", payloads.ATTACKER),
    ("legacy", legacy, "value", 10**18),
    ("legacy", legacy, "data", "0x00"),
    ("legacy", legacy, "nonce", 4),
    ("legacy", legacy, "chainId", 1),
    ("access list", access_list, "accessList", []),
    ("eip1559", eip1559, "to", payloads.ATTACKER),
    ("eip1559", eip1559, "accessList", ACCESS_LIST),
    ("eip1559", eip1559, "chainId", 1),
    ("blob", blob, "blobVersionedHashes", ["0x01" + "cd" * 31]),
    ("blob", blob, "maxFeePerBlobGas", 10**15),
    ("set-code", set_code, "authorizationList", [OTHER_TUPLE]),
    ("set-code", set_code, "authorizationList", [*set_code()["authorizationList"], OTHER_TUPLE]),
    ("set-code", set_code, "value", 1),
]
WHAT_IT_PAYS: list[tuple[str, Any, str, Any]] = [
    ("legacy", legacy, "gasPrice", 31 * 10**9),
    ("legacy", legacy, "gas", 30_000),
    ("eip1559", eip1559, "maxFeePerGas", 31 * 10**9),
    ("eip1559", eip1559, "maxPriorityFeePerGas", 2 * 10**9),
    ("blob", blob, "gas", 30_000),
    ("set-code", set_code, "maxFeePerGas", 31 * 10**9),
]


def ids(cases: list[tuple[str, Any, str, Any]]) -> list[str]:
    return [f"{name}-{field}-{index}" for index, (name, _, field, _) in enumerate(cases)]


@pytest.mark.parametrize("make", [legacy, access_list, eip1559, blob, set_code])
def test_the_transaction_asked_for_is_accepted(make: Any) -> None:
    _check_transaction_fields(signed(make()), make(), "req_1")
    _check_transaction_fields(signed(make()), make(), "req_1", check_fees=False)


@pytest.mark.parametrize(("name", "make", "field", "other"), WHAT_IT_DOES, ids=ids(WHAT_IT_DOES))
def test_a_signed_transaction_differing_in_what_it_does_is_refused(
    name: str, make: Any, field: str, other: Any
) -> None:
    raw = signed(make())
    asked = {**make(), field: other}
    for check_fees in (True, False):
        with pytest.raises(SignatureMismatch, match="is not the one asked for"):
            _check_transaction_fields(raw, asked, "req_1", check_fees=check_fees)
    assert _transaction_identity(asked) != _transaction_identity(make())


@pytest.mark.parametrize(("name", "make", "field", "other"), WHAT_IT_PAYS, ids=ids(WHAT_IT_PAYS))
def test_gas_and_fees_count_except_for_the_request_an_earlier_call_waited_for(
    name: str, make: Any, field: str, other: Any
) -> None:
    raw = signed(make())
    asked = {**make(), field: other}
    with pytest.raises(SignatureMismatch, match="is not the one asked for"):
        _check_transaction_fields(raw, asked, "req_1")
    _check_transaction_fields(raw, asked, "req_1", check_fees=False)
    # The node filled other fees in: still the same call, answered by the request it waited for.
    assert _transaction_identity(asked) == _transaction_identity(make())


def test_a_quantity_is_the_same_whichever_way_it_is_spelled() -> None:
    spelled = {**set_code(), "nonce": "0x3", "chainId": hex(SEPOLIA), "value": "0"}
    assert _transaction_identity(spelled) == _transaction_identity(set_code())
    _check_transaction_fields(signed(set_code()), spelled, "req_1")


def test_a_field_the_signed_transaction_cannot_have_is_refused() -> None:
    raw = signed(legacy())
    for extra in ({"accessList": ACCESS_LIST}, {"type": 2}, {"maxFeePerBlobGas": 1}):
        with pytest.raises(SignatureMismatch):
            _check_transaction_fields(raw, {**legacy(), **extra}, "req_1")
    with pytest.raises(SignatureMismatch):
        _check_transaction_fields(signed(eip1559()), {**eip1559(), "maxFeePerBlobGas": 1}, "req_1")

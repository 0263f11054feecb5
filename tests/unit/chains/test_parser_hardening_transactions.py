"""Transactions no chain would include, and chain ids custody cannot hold, are refused when parsed.

Three bounds, each refused with an error naming its field: a chain id above EIP-2294's bound (2**63 - 37),
which EIP-155's v and the store's BIGINT columns cannot hold; a gas limit times its price (plus the value)
above 2**256 - 1, which nodes refuse; and a gas limit below the intrinsic gas (21,000, plus calldata at 4 per
zero and 16 per non-zero byte after EIP-2028, plus 2,400 per access list address and 1,900 per storage key
after EIP-2930). The expected numbers are worked out by hand from those rules; every transaction that is
accepted is also signed by eth-account, and the signed bytes recover to the signer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from custody.chains.evm import PayloadKind, Transaction, TypedData, parse_payload
from custody.chains.evm.transactions import AccessListEntry, intrinsic_gas
from custody.chains.evm.values import MAX_CHAIN_ID
from custody.domain.errors import InvalidInput

UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1
GWEI = 10**9
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SIGNER = Account.from_key("0x" + "46" * 32)

LEGACY = {"chainId": 1, "nonce": 7, "to": RECIPIENT, "value": 0, "gas": 21000, "gasPrice": 20 * GWEI}
EIP2930 = {**LEGACY, "accessList": []}
EIP1559 = {
    "chainId": 1,
    "nonce": 7,
    "to": RECIPIENT,
    "value": 0,
    "gas": 21000,
    "maxFeePerGas": 30 * GWEI,
    "maxPriorityFeePerGas": GWEI,
}
BASES = {"legacy": LEGACY, "eip2930": EIP2930, "eip1559": EIP1559}
FEE_FIELDS = {"legacy": "gasPrice", "eip2930": "gasPrice", "eip1559": "maxFeePerGas"}

# An ERC-20 transfer(address,uint256) of 1,000,000 base units to RECIPIENT: a 4-byte selector (non-zero), the
# address padded to 32 bytes (12 zero bytes, then 20 bytes of which none is zero), and the amount 0x0f4240
# (29 zero bytes, then 3 non-zero ones).
ERC20_TRANSFER = (
    bytes.fromhex("a9059cbb") + bytes(12) + bytes.fromhex(RECIPIENT[2:]) + (1_000_000).to_bytes(32, "big")
)


def _parse(transaction: dict[str, Any]) -> Transaction:
    parsed = parse_payload(PayloadKind.TRANSACTION, json.dumps(transaction).encode())
    assert isinstance(parsed, Transaction)
    return parsed


def _refusal(transaction: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        _parse(transaction)
    return refused.value


def _assert_signs_and_recovers(transaction: dict[str, Any]) -> Transaction:
    """Parse, sign with eth-account, and check custody assembles the same bytes, which recover to the signer."""
    parsed = _parse(transaction)
    signed = SIGNER.sign_transaction(transaction)
    y_parity = signed.v - (2 * parsed.chain_id + 35) if parsed.transaction_type == "legacy" else signed.v
    assembled = parsed.assemble(signed.r, signed.s, y_parity)
    assert assembled.signed_tx == bytes(signed.raw_transaction)
    assert Account.recover_transaction(assembled.signed_tx) == SIGNER.address
    return parsed


# Chain ids.


def test_the_largest_chain_id_is_eip_2294s_bound() -> None:
    # floor((2**64 - 1) / 2) - 36, written out: EIP-155's v = chainId * 2 + 35 + y_parity then fits 64 bits.
    assert MAX_CHAIN_ID == 9_223_372_036_854_775_771 == 2**63 - 37
    assert MAX_CHAIN_ID * 2 + 35 + 1 <= UINT64_MAX


@pytest.mark.parametrize("transaction_type", list(BASES))
def test_a_transaction_at_the_largest_chain_id_signs_and_recovers(transaction_type: str) -> None:
    parsed = _assert_signs_and_recovers({**BASES[transaction_type], "chainId": MAX_CHAIN_ID})
    assert parsed.chain_id == MAX_CHAIN_ID


CHAIN_IDS_TOO_LARGE = [MAX_CHAIN_ID + 1, 2**63 - 1, 2**63, 2**63 + 12345, UINT64_MAX]
SPELLINGS = {"number": lambda n: n, "hex": hex, "decimal": str}


@pytest.mark.parametrize("transaction_type", list(BASES))
@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("chain_id", CHAIN_IDS_TOO_LARGE)
def test_a_transaction_chain_id_above_the_bound_is_refused_naming_chain_id(
    transaction_type: str, spelling: str, chain_id: int
) -> None:
    refused = _refusal({**BASES[transaction_type], "chainId": SPELLINGS[spelling](chain_id)})
    assert refused.field == "chainId"
    assert f"must be at most {MAX_CHAIN_ID}" in refused.message
    assert str(chain_id) in refused.message


def _typed_data(chain_id: Any) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
            "Note": [{"name": "text", "type": "string"}],
        },
        "primaryType": "Note",
        "domain": {"name": "Chain ids", "chainId": chain_id},
        "message": {"text": "the domain's chain id is recorded like a transaction's"},
    }


def test_typed_data_at_the_largest_chain_id_is_accepted_with_eth_accounts_digest() -> None:
    document = _typed_data(MAX_CHAIN_ID)
    parsed = parse_payload(PayloadKind.TYPED_DATA, json.dumps(document).encode())
    assert isinstance(parsed, TypedData)
    assert parsed.chain_id == MAX_CHAIN_ID
    signable = encode_typed_data(full_message=document)
    signed = SIGNER.sign_message(signable)
    assert parsed.digest == bytes(signed.message_hash)
    assert Account.recover_message(signable, signature=signed.signature) == SIGNER.address


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("chain_id", CHAIN_IDS_TOO_LARGE)
def test_a_typed_data_domain_chain_id_above_the_bound_is_refused_naming_chain_id(
    spelling: str, chain_id: int
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_payload(PayloadKind.TYPED_DATA, json.dumps(_typed_data(SPELLINGS[spelling](chain_id))).encode())
    assert refused.value.field == "domain.chainId"
    assert f"must be at most {MAX_CHAIN_ID}" in refused.value.message


# Gas times price, plus value.


def _with_price(transaction_type: str, gas: int, price: int, value: int = 0) -> dict[str, Any]:
    transaction = {**BASES[transaction_type], "gas": gas, "value": hex(value)}
    if transaction_type == "eip1559":
        transaction.update({"maxFeePerGas": hex(price), "maxPriorityFeePerGas": 0})
    else:
        transaction["gasPrice"] = hex(price)
    return transaction


@pytest.mark.parametrize("transaction_type", list(BASES))
def test_the_highest_price_whose_fee_fits_256_bits_signs_and_recovers(transaction_type: str) -> None:
    gas = UINT64_MAX
    price = UINT256_MAX // gas
    parsed = _assert_signs_and_recovers(_with_price(transaction_type, gas, price))
    assert parsed.max_fee_wei == gas * price <= UINT256_MAX


@pytest.mark.parametrize("transaction_type", list(BASES))
@pytest.mark.parametrize(
    "gas", [pytest.param(UINT64_MAX, id="gas-2**64-1"), pytest.param(21000, id="gas-21000")]
)
def test_gas_times_a_price_beyond_256_bits_is_refused_naming_the_fee_field(
    transaction_type: str, gas: int
) -> None:
    price = UINT256_MAX // gas + 1
    refused = _refusal(_with_price(transaction_type, gas, price))
    assert refused.field == FEE_FIELDS[transaction_type]
    assert str(gas * price) in refused.message
    assert "2**256 - 1" in refused.message


@pytest.mark.parametrize("transaction_type", list(BASES))
def test_a_value_that_with_the_fee_passes_256_bits_is_refused_naming_value(transaction_type: str) -> None:
    # 21,000 gas at 1 gwei is 21,000 gwei of fees; the value leaves room for all but one wei of them.
    fee = 21000 * GWEI
    refused = _refusal(_with_price(transaction_type, 21000, GWEI, value=UINT256_MAX - fee + 1))
    assert refused.field == "value"
    # One wei less and the total is exactly 2**256 - 1, which signs.
    _assert_signs_and_recovers(_with_price(transaction_type, 21000, GWEI, value=UINT256_MAX - fee))


# Intrinsic gas.

ONE_KEY = (bytes(31) + b"\x01",)
TWO_KEYS = (bytes(31) + b"\x03", bytes(31) + b"\x07")


@pytest.mark.parametrize(
    ("to", "data", "access_list", "expected"),
    [
        pytest.param(RECIPIENT, b"", (), 21000, id="plain-transfer"),
        # 27 non-zero bytes at 16 (EIP-2028) and 41 zero bytes at 4: 21,000 + 432 + 164.
        pytest.param(RECIPIENT, ERC20_TRANSFER, (), 21596, id="erc20-transfer"),
        pytest.param(RECIPIENT, bytes(100), (), 21400, id="100-zero-bytes"),
        # eth-account's 'al-non-empty-list' vector: six non-zero bytes, one address with one key (EIP-2930).
        pytest.param(
            RECIPIENT, b"abcdef", (AccessListEntry(RECIPIENT, ONE_KEY),), 25396, id="one-address-one-key"
        ),
        # EIP-2930's example access list: two addresses, two storage keys, and the same six bytes of data.
        pytest.param(
            RECIPIENT,
            b"abcdef",
            (AccessListEntry(RECIPIENT, TWO_KEYS), AccessListEntry(RECIPIENT, ())),
            21000 + 96 + 2 * 2400 + 2 * 1900,
            id="eip2930-example",
        ),
        # Contract creation costs 32,000 more (EIP-2), 53,000 in all with no initcode.
        pytest.param(None, b"", (), 53000, id="creation-empty"),
        # 33 non-zero bytes of initcode: 528 gas of calldata, and two 32-byte words at 2 each (EIP-3860).
        pytest.param(None, b"\x60" * 33, (), 53000 + 528 + 4, id="creation-33-bytes"),
        # The largest initcode EIP-3860 allows, 49,152 zero bytes: 1,536 words.
        pytest.param(None, bytes(49152), (), 53000 + 4 * 49152 + 2 * 1536, id="creation-max-initcode"),
    ],
)
def test_intrinsic_gas_matches_values_worked_out_from_the_eips(
    to: str | None, data: bytes, access_list: tuple[AccessListEntry, ...], expected: int
) -> None:
    assert intrinsic_gas(to, data, access_list) == expected


ACCESS_LIST = [
    {"address": RECIPIENT, "storageKeys": ["0x" + key.hex() for key in TWO_KEYS]},
    {"address": "0x0000000000000000000000000000000000000001", "storageKeys": []},
]
INTRINSIC_GAS_CASES = [
    # (transaction, its intrinsic gas)
    pytest.param(LEGACY, 21000, id="legacy-plain-transfer"),
    pytest.param(EIP1559, 21000, id="eip1559-plain-transfer"),
    pytest.param(
        {**EIP1559, "to": RECIPIENT, "data": "0x" + ERC20_TRANSFER.hex()}, 21596, id="erc20-transfer"
    ),
    pytest.param(
        {**EIP2930, "accessList": ACCESS_LIST}, 21000 + 2 * 2400 + 2 * 1900, id="eip2930-access-list"
    ),
    pytest.param(
        {**EIP1559, "data": "0x00ff00", "accessList": ACCESS_LIST},
        21000 + 4 + 16 + 4 + 2 * 2400 + 2 * 1900,
        id="eip1559-data-and-access-list",
    ),
]


@pytest.mark.parametrize(("transaction", "minimum"), INTRINSIC_GAS_CASES)
def test_gas_below_the_intrinsic_gas_is_refused_naming_gas_and_the_minimum(
    transaction: dict[str, Any], minimum: int
) -> None:
    for gas in (minimum - 1, 0):
        refused = _refusal({**transaction, "gas": gas})
        assert refused.field == "gas"
        assert f"intrinsic gas of {minimum}" in refused.message


@pytest.mark.parametrize(("transaction", "minimum"), INTRINSIC_GAS_CASES)
def test_gas_equal_to_the_intrinsic_gas_signs_and_recovers(transaction: dict[str, Any], minimum: int) -> None:
    parsed = _assert_signs_and_recovers({**transaction, "gas": minimum})
    assert parsed.gas == minimum

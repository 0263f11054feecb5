"""custody's transaction parser against eth-account, an independent implementation, on the same dicts.

Hypothesis draws transactions of all five types (legacy, EIP-2930, EIP-1559, EIP-4844 blob, EIP-7702 set-code)
as JSON, with every integer in one of the three spellings custody accepts, fields at their bounds, access
lists, blob hashes and signed authorizations. custody parses the JSON and its digest is signed with the key;
eth-account's public ``Account.sign_transaction`` signs the same dict. Both sign deterministically (RFC 6979),
so the two raw transactions are byte for byte equal exactly when custody encoded and hashed the transaction as
eth-account does; the signer is then recovered from custody's bytes and its s checked low.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.chains.evm import PayloadKind, Transaction, parse_payload
from custody.chains.evm.signature import SECP256K1_HALF_N
from custody.chains.evm.transactions import GAS_PER_BLOB
from custody.chains.evm.values import MAX_CHAIN_ID
from tests.fuzzing import cases

SIGNER = Account.from_key(b"\x11" * 32)
AUTHORITY = Account.from_key(b"\x22" * 32)
UINT256_MAX = 2**256 - 1
MAX_NONCE = 2**64 - 2

addresses = st.one_of(st.just(b"\x00" * 20), st.just(b"\xff" * 20), st.binary(min_size=20, max_size=20)).map(
    lambda raw: to_checksum_address("0x" + raw.hex())
)
access_lists = st.lists(
    st.fixed_dictionaries(
        {
            "address": addresses,
            "storageKeys": st.lists(
                st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()), max_size=3
            ),
        }
    ),
    max_size=3,
)


def bounded(low: int, high: int) -> st.SearchStrategy[int]:
    """An integer in [low, high], its bounds and small values drawn often."""
    return st.one_of(
        st.just(low), st.just(high), st.integers(low, min(high, low + 300)), st.integers(low, high)
    )


@st.composite
def spelled(draw: st.DrawFn, number: int) -> int | str:
    """``number`` as a JSON integer, a 0x-hex string or a decimal string, as custody accepts each."""
    return draw(st.sampled_from([number, hex(number), str(number)]))


@st.composite
def transactions(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(custody's JSON dict, eth-account's dict) for one transaction: the same transaction, custody's with its
    integers spelled in any accepted way."""
    type_number = draw(st.sampled_from([0, 1, 2, 3, 4]))
    chain_id = draw(bounded(1, MAX_CHAIN_ID))
    data = draw(st.one_of(st.just(b""), st.binary(max_size=60), st.binary(min_size=250, max_size=300)))
    fields: dict[str, Any] = {
        "type": type_number,
        "chainId": chain_id,
        "nonce": draw(bounded(0, MAX_NONCE)),
        "to": draw(addresses),
        "data": data,
    }
    if type_number >= 1:
        fields["accessList"] = draw(access_lists)
    if type_number == 4:
        authorizations = []
        for _ in range(draw(st.integers(1, 3))):
            signed = AUTHORITY.sign_authorization(
                {
                    "chainId": draw(st.sampled_from([0, chain_id])),
                    "address": draw(addresses),
                    "nonce": draw(bounded(0, MAX_NONCE)),
                }
            )
            authorizations.append(
                {
                    "chainId": signed.chain_id,
                    "address": to_checksum_address(signed.address),
                    "nonce": signed.nonce,
                    "yParity": signed.y_parity,
                    "r": signed.r,
                    "s": signed.s,
                }
            )
        fields["authorizationList"] = authorizations
    # Enough gas for the intrinsic cost, so that neither side refuses the transaction for it.
    zeros = data.count(0)
    intrinsic = (
        21_000 + 4 * zeros + 16 * (len(data) - zeros) + 25_000 * len(fields.get("authorizationList", []))
    )
    intrinsic += sum(2400 + 1900 * len(entry["storageKeys"]) for entry in fields.get("accessList", []))
    gas = draw(bounded(intrinsic, 2**64 - 1))
    fields["gas"] = gas
    # A blob transaction keeps half the 256-bit range for its blob fee, so that at least 1 wei per blob gas fits.
    budget = UINT256_MAX // 2 if type_number == 3 else UINT256_MAX
    price = draw(st.one_of(st.just(0), st.integers(0, budget // gas)))
    spent = gas * price
    if type_number <= 1:
        fields["gasPrice"] = price
    else:
        fields["maxFeePerGas"] = price
        fields["maxPriorityFeePerGas"] = draw(st.integers(0, price))
    if type_number == 3:
        blobs = draw(st.integers(1, 6))
        fields["blobVersionedHashes"] = [
            "0x01" + draw(st.binary(min_size=31, max_size=31)).hex() for _ in range(blobs)
        ]
        fields["maxFeePerBlobGas"] = draw(
            st.integers(1, max(1, (UINT256_MAX - spent) // (GAS_PER_BLOB * blobs)))
        )
        spent += GAS_PER_BLOB * blobs * fields["maxFeePerBlobGas"]
    fields["value"] = draw(
        st.one_of(st.just(0), st.just(UINT256_MAX - spent), st.integers(0, UINT256_MAX - spent))
    )

    quantities = ("chainId", "nonce", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value")
    custody = {**fields, "data": "0x" + data.hex()}
    for name in (*quantities, "maxFeePerBlobGas"):
        if name in custody:
            custody[name] = draw(spelled(custody[name]))
    if type_number == 0 and draw(st.booleans()):
        del custody["type"]  # custody infers a legacy transaction from gasPrice
    eth_account = dict(fields)
    if type_number == 0:
        del eth_account["type"]
    return custody, eth_account


@settings(max_examples=cases(2000), suppress_health_check=[HealthCheck.too_slow])
@given(transactions())
def test_custody_signs_every_transaction_type_byte_for_byte_as_eth_account(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    custody_fields, eth_account_fields = pair
    parsed = parse_payload(PayloadKind.TRANSACTION, json.dumps(custody_fields).encode())
    assert isinstance(parsed, Transaction)
    signature = Account.unsafe_sign_hash(parsed.digest, SIGNER.key)
    assert signature.s <= SECP256K1_HALF_N
    result = parsed.assemble(signature.r, signature.s, signature.v - 27)

    expected = Account.sign_transaction(eth_account_fields, SIGNER.key)
    assert result.signed_tx == bytes(expected.raw_transaction)
    assert result.tx_hash == bytes(expected.hash)
    assert Account.recover_transaction(result.signed_tx) == SIGNER.address


@settings(max_examples=cases(1000))
@given(
    chain_id=bounded(0, MAX_CHAIN_ID),
    delegate=addresses,
    nonce=st.one_of(st.sampled_from([0, 127, 128, MAX_NONCE]), bounded(0, MAX_NONCE)),
    spell=st.data(),
)
def test_custody_signs_authorizations_as_eth_account_and_recovers_their_tuples(
    chain_id: int, delegate: str, nonce: int, spell: st.DataObject
) -> None:
    payload = {
        "chainId": spell.draw(spelled(chain_id)),
        "address": delegate,
        "nonce": spell.draw(spelled(nonce)),
    }
    parsed = parse_payload(PayloadKind.AUTHORIZATION, json.dumps(payload).encode())
    expected = AUTHORITY.sign_authorization({"chainId": chain_id, "address": delegate, "nonce": nonce})
    assert parsed.digest == bytes(expected.authorization_hash)
    signature = Account.unsafe_sign_hash(parsed.digest, AUTHORITY.key)
    result = parsed.assemble(signature.r, signature.s, signature.v - 27)
    r, s = expected.r.to_bytes(32, "big"), expected.s.to_bytes(32, "big")
    assert result.signature == r + s + bytes([expected.y_parity])
    assert expected.s <= SECP256K1_HALF_N

    # The signed tuple, carried by a set-code transaction of its chain (or any, for chain id 0), names its signer.
    carried = {"chainId": chain_id, "address": delegate, "nonce": nonce}
    carried |= {"yParity": expected.y_parity, "r": expected.r, "s": expected.s}
    transaction = {
        "type": 4,
        "chainId": chain_id or 1,
        "nonce": 0,
        "to": delegate,
        "value": 0,
        "gas": 46_000,
        "maxFeePerGas": 1,
        "maxPriorityFeePerGas": 1,
        "authorizationList": [carried],
    }
    carrier = parse_payload(PayloadKind.TRANSACTION, json.dumps(transaction).encode())
    assert isinstance(carrier, Transaction)
    assert carrier.authorization_list[0].authority == AUTHORITY.address


def largest(type_number: int) -> dict[str, Any]:
    """A transaction of ``type_number`` with every field at the largest value custody accepts: the biggest chain
    id and nonce, 2**64-1 gas, 59,904 bytes of calldata (near the payload limit), and full access, blob and
    authorization lists."""
    data = bytes(range(256)) * 234
    fields: dict[str, Any] = {
        "chainId": MAX_CHAIN_ID,
        "nonce": MAX_NONCE,
        "to": "0x" + "00" * 20,
        "value": 0,
        "data": data,
        "gas": 2**64 - 1,
    }
    if type_number <= 1:
        fields["gasPrice"] = 0
    else:
        fields |= {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
    if type_number >= 1:
        fields["type"] = type_number
        fields["accessList"] = [
            {"address": to_checksum_address(f"0x{index:040x}"), "storageKeys": ["0x" + "00" * 32] * 8}
            for index in range(3)
        ]
    if type_number == 3:
        fields |= {"maxFeePerBlobGas": 1, "blobVersionedHashes": ["0x01" + "00" * 31] * 6}
    if type_number == 4:
        signed = AUTHORITY.sign_authorization({"chainId": 0, "address": "0x" + "00" * 20, "nonce": 0})
        carried = {"chainId": 0, "address": "0x" + "00" * 20, "nonce": 0}
        carried |= {"yParity": signed.y_parity, "r": signed.r, "s": signed.s}
        fields["authorizationList"] = [carried] * 32
    return fields


@pytest.mark.parametrize("type_number", [0, 1, 2, 3, 4])
def test_the_largest_transaction_of_each_type_is_signed_as_eth_account_signs_it(type_number: int) -> None:
    fields = largest(type_number)
    parsed = parse_payload(
        PayloadKind.TRANSACTION, json.dumps({**fields, "data": "0x" + fields["data"].hex()}).encode()
    )
    assert isinstance(parsed, Transaction)
    signature = Account.unsafe_sign_hash(parsed.digest, SIGNER.key)
    result = parsed.assemble(signature.r, signature.s, signature.v - 27)
    expected = Account.sign_transaction(fields, SIGNER.key)
    assert result.signed_tx == bytes(expected.raw_transaction)
    assert Account.recover_transaction(result.signed_tx) == SIGNER.address

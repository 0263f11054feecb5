"""The lean RLP encoder against eth-account, the oracle: random transactions of every type custody signs (legacy,
EIP-2930, EIP-1559, EIP-4844 and EIP-7702) must give byte-identical signing hashes and signed encodings both
ways."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account._utils.legacy_transactions import (
    encode_transaction,
    serializable_unsigned_transaction_from_dict,
)
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.chains.evm import rlp
from custody.chains.evm.authorizations import SignedAuthorization
from custody.chains.evm.transactions import AccessListEntry, Transaction
from custody.chains.evm.values import MAX_CHAIN_ID
from tests.fuzzing import cases

UINT256 = st.integers(min_value=0, max_value=2**256 - 1)
# Small values often, so that the one-byte, short and long encodings of integers all come up.
INTEGERS = st.one_of(st.integers(min_value=0, max_value=300), UINT256)
ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda raw: to_checksum_address("0x" + raw.hex()))
# Calldata across the short-string limit (55 bytes) and beyond a one-byte length (255 bytes).
DATA = st.one_of(st.binary(max_size=60), st.binary(min_size=250, max_size=600))
ACCESS_LISTS = st.lists(
    st.builds(
        AccessListEntry,
        address=ADDRESSES,
        storage_keys=st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple),
    ),
    max_size=3,
).map(tuple)


AUTHORIZATIONS = st.lists(
    st.builds(
        SignedAuthorization,
        chain_id=st.one_of(st.just(0), st.integers(1, MAX_CHAIN_ID)),
        delegate=ADDRESSES,
        nonce=st.integers(0, 2**64 - 1),
        y_parity=st.integers(0, 1),
        r=st.integers(1, 2**256 - 1),
        s=st.integers(1, 2**256 - 1),
        authority=ADDRESSES,
    ),
    min_size=1,
    max_size=3,
).map(tuple)
BLOB_HASHES = st.lists(
    st.binary(min_size=31, max_size=31).map(lambda rest: b"\x01" + rest), min_size=1, max_size=6
).map(tuple)


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    transaction_type = draw(st.sampled_from(["legacy", "eip2930", "eip1559", "eip4844", "eip7702"]))
    common: dict[str, Any] = {
        "transaction_type": transaction_type,
        "chain_id": draw(st.one_of(st.integers(1, 300), st.integers(1, MAX_CHAIN_ID))),
        "nonce": draw(st.one_of(st.integers(0, 300), st.integers(0, 2**64 - 2))),
        "to": draw(ADDRESSES),
        "value": draw(INTEGERS),
        "gas": draw(st.one_of(st.integers(21_000, 100_000), st.integers(0, 2**64 - 1))),
        "data": draw(DATA),
    }
    if transaction_type == "legacy":
        return Transaction(**common, gas_price=draw(INTEGERS))
    if transaction_type == "eip2930":
        return Transaction(**common, gas_price=draw(INTEGERS), access_list=draw(ACCESS_LISTS))
    fees = {
        "max_fee_per_gas": draw(INTEGERS),
        "max_priority_fee_per_gas": draw(INTEGERS),
        "access_list": draw(ACCESS_LISTS),
    }
    if transaction_type == "eip4844":
        return Transaction(
            **common,
            **fees,
            max_fee_per_blob_gas=draw(INTEGERS),
            blob_versioned_hashes=draw(BLOB_HASHES),
        )
    if transaction_type == "eip7702":
        return Transaction(**common, **fees, authorization_list=draw(AUTHORIZATIONS))
    return Transaction(**common, **fees)


def eth_account_unsigned(transaction: Transaction) -> Any:
    """The transaction as eth-account's dict, built here independently of custody's encoder."""
    fields: dict[str, Any] = {
        "chainId": transaction.chain_id,
        "nonce": transaction.nonce,
        "to": transaction.to,
        "value": transaction.value,
        "gas": transaction.gas,
        "data": transaction.data,
    }
    if transaction.transaction_type == "legacy":
        fields["gasPrice"] = transaction.gas_price
    else:
        fields["type"] = {"eip2930": 1, "eip1559": 2, "eip4844": 3, "eip7702": 4}[
            transaction.transaction_type
        ]
        fields["accessList"] = [
            {"address": entry.address, "storageKeys": ["0x" + key.hex() for key in entry.storage_keys]}
            for entry in transaction.access_list
        ]
        if transaction.transaction_type == "eip2930":
            fields["gasPrice"] = transaction.gas_price
        else:
            fields["maxFeePerGas"] = transaction.max_fee_per_gas
            fields["maxPriorityFeePerGas"] = transaction.max_priority_fee_per_gas
        if transaction.transaction_type == "eip4844":
            fields["maxFeePerBlobGas"] = transaction.max_fee_per_blob_gas
            fields["blobVersionedHashes"] = list(transaction.blob_versioned_hashes)
        if transaction.transaction_type == "eip7702":
            fields["authorizationList"] = [
                {
                    "chainId": authorization.chain_id,
                    "address": authorization.delegate,
                    "nonce": authorization.nonce,
                    "yParity": authorization.y_parity,
                    "r": authorization.r,
                    "s": authorization.s,
                }
                for authorization in transaction.authorization_list
            ]
    return serializable_unsigned_transaction_from_dict(fields)


@settings(
    max_examples=cases(3_000),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    transaction=transactions(),
    r=st.integers(1, 2**256 - 1),
    s=st.integers(1, 2**256 - 1),
    y_parity=st.integers(0, 1),
)
def test_hash_and_signed_encoding_equal_eth_accounts(
    transaction: Transaction, r: int, s: int, y_parity: int
) -> None:
    unsigned = eth_account_unsigned(transaction)
    assert rlp.signing_hash(transaction) == bytes(unsigned.hash())
    assert transaction.digest == bytes(unsigned.hash())
    v = transaction.chain_id * 2 + 35 + y_parity if transaction.transaction_type == "legacy" else y_parity
    assert rlp.signed_encoding(transaction, v, r, s) == bytes(encode_transaction(unsigned, (v, r, s)))


def test_a_really_signed_transaction_recovers_to_its_signer() -> None:
    account = Account.create()
    transaction = Transaction(
        transaction_type="eip1559",
        chain_id=11155111,
        nonce=7,
        to=to_checksum_address("0x" + "5a" * 20),
        value=10**15,
        gas=21_000,
        data=b"",
        max_fee_per_gas=30 * 10**9,
        max_priority_fee_per_gas=10**9,
    )
    signature = Account._sign_hash(rlp.signing_hash(transaction), account.key)
    result = transaction.assemble(signature.r, signature.s, signature.v - 27)
    assert Account.recover_transaction(result.signed_tx) == account.address
    assert signature.s <= 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2


@pytest.mark.parametrize(
    ("item", "encoded"),
    [
        # The yellow paper's and the Ethereum wiki's examples.
        (b"dog", b"\x83dog"),
        ([b"cat", b"dog"], b"\xc8\x83cat\x83dog"),
        (b"", b"\x80"),
        ([], b"\xc0"),
        (0, b"\x80"),
        (b"\x00", b"\x00"),
        (15, b"\x0f"),
        (1024, b"\x82\x04\x00"),
        ([[], [[]], [[], [[]]]], b"\xc7\xc0\xc1\xc0\xc3\xc0\xc1\xc0"),
        (
            b"Lorem ipsum dolor sit amet, consectetur adipisicing elit",
            b"\xb8\x38" + b"Lorem ipsum dolor sit amet, consectetur adipisicing elit",
        ),
    ],
)
def test_known_encodings(item: rlp.Item, encoded: bytes) -> None:
    assert rlp.encode(item) == encoded


def test_negative_integers_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        rlp.encode(-1)

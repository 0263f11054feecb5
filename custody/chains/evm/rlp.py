"""RLP encoding of the transactions custody signs: the signing hash and the signed encoding, directly.

eth-account builds both through its serializable transaction objects, which validate and convert every field
again through layers of formatters (about 0.35 ms of CPU per signed request; this module takes tens of
microseconds). Custody's parser has already checked every field (types, ranges, lengths), so what is left is
the encoding itself, which the Ethereum yellow paper (appendix B) and EIP-2718, EIP-2930, EIP-1559, EIP-4844
and EIP-7702 define:

- a byte string of one byte below 0x80 is itself; otherwise a length prefix (0x80 + length up to 55 bytes, or
  0xb7 + the length of the big-endian length, then the length) precedes it;
- a list is its encoded items concatenated, behind 0xc0 + length, or 0xf7 + the length of the length;
- an integer is its big-endian bytes without leading zeros (zero is the empty string);
- a typed transaction (EIP-2718) is its type byte followed by the RLP of its fields; a legacy one is the RLP
  alone, and its signing form appends ``chainId, 0, 0`` (EIP-155);
- a blob transaction is signed and returned without the network wrapper (blobs, commitments, proofs), as
  custody never holds blobs; a set-code transaction's authorizations are ``[chainId, address, nonce,
  yParity, r, s]`` each.

eth-account stays the oracle: tests encode thousands of random transactions both ways and require identical
bytes (tests/unit/chains/test_rlp.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from eth_utils.crypto import keccak

from custody.domain.errors import InternalError

if TYPE_CHECKING:
    from custody.chains.evm.transactions import Transaction

Item: TypeAlias = "bytes | int | list[Item]"

_TYPED_PREFIX = {"eip2930": b"\x01", "eip1559": b"\x02", "eip4844": b"\x03", "eip7702": b"\x04"}


def encode(item: Item) -> bytes:
    """The RLP encoding of a byte string, a non-negative integer or a (nested) list of them."""
    if isinstance(item, list):
        body = b"".join(encode(element) for element in item)
        return _length_prefix(len(body), 0xC0) + body
    if isinstance(item, int):
        if item < 0:
            raise ValueError("RLP encodes only non-negative integers")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if len(item) == 1 and item[0] < 0x80:
        return item
    return _length_prefix(len(item), 0x80) + item


def _length_prefix(length: int, offset: int) -> bytes:
    if length <= 55:
        return bytes([offset + length])
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(length_bytes)]) + length_bytes


def _address(checksummed: str) -> bytes:
    return bytes.fromhex(checksummed[2:])


def _fee(value: int | None, name: str) -> int:
    # The parser requires each fee its transaction type uses; a missing one here is a bug, never a zero.
    if value is None:
        raise InternalError(f"a transaction of this type needs {name}")
    return value


def _fields(transaction: Transaction) -> list[Item]:
    """The transaction's fields in their RLP order, without a signature."""
    to = _address(transaction.to)
    if transaction.transaction_type == "legacy":
        return [
            transaction.nonce,
            _fee(transaction.gas_price, "gasPrice"),
            transaction.gas,
            to,
            transaction.value,
            transaction.data,
        ]
    access_list: list[Item] = [
        [_address(entry.address), [*entry.storage_keys]] for entry in transaction.access_list
    ]
    fees: list[Item]
    if transaction.transaction_type == "eip2930":
        fees = [_fee(transaction.gas_price, "gasPrice")]
    else:
        fees = [
            _fee(transaction.max_priority_fee_per_gas, "maxPriorityFeePerGas"),
            _fee(transaction.max_fee_per_gas, "maxFeePerGas"),
        ]
    fields: list[Item] = [
        transaction.chain_id,
        transaction.nonce,
        *fees,
        transaction.gas,
        to,
        transaction.value,
        transaction.data,
        access_list,
    ]
    if transaction.transaction_type == "eip4844":
        fields += [
            _fee(transaction.max_fee_per_blob_gas, "maxFeePerBlobGas"),
            [*transaction.blob_versioned_hashes],
        ]
    elif transaction.transaction_type == "eip7702":
        fields.append(
            [
                [
                    authorization.chain_id,
                    _address(authorization.delegate),
                    authorization.nonce,
                    authorization.y_parity,
                    authorization.r,
                    authorization.s,
                ]
                for authorization in transaction.authorization_list
            ]
        )
    return fields


def signing_hash(transaction: Transaction) -> bytes:
    """The 32 bytes the signature is made over."""
    fields = _fields(transaction)
    if transaction.transaction_type == "legacy":
        # EIP-155: the chain id, then two zeros, stand where v, r and s will be.
        return keccak(encode([*fields, transaction.chain_id, 0, 0]))
    return keccak(_TYPED_PREFIX[transaction.transaction_type] + encode(fields))


def signed_encoding(transaction: Transaction, v: int, r: int, s: int) -> bytes:
    """The signed transaction as it is sent to a node (``eth_sendRawTransaction``)."""
    encoded = encode([*_fields(transaction), v, r, s])
    if transaction.transaction_type == "legacy":
        return encoded
    return _TYPED_PREFIX[transaction.transaction_type] + encoded

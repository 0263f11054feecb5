"""EIP-155 legacy, EIP-2930, EIP-1559, EIP-4844 blob and EIP-7702 set-code transactions: strict parsing, signing
hash and signed encoding.

Blob (type 3) transactions: custody signs the transaction, never the blobs. The signed output is the
transaction without the network wrapper (EIP-4844's ``rlp([tx_payload_body, blobs, commitments, proofs])`` that
a node's pool wants): the sender adds blobs, KZG commitments and proofs, which the signature does not cover
and which must match ``blobVersionedHashes``. Set-code (type 4) transactions carry an ``authorizationList`` of
tuples already signed by their authorities (custody/chains/evm/authorizations.py checks each and recovers its
signer).

The signing hash and the signed encoding are RLP written directly (custody/chains/evm/rlp.py), a tenth of the
cost of eth-account's serializers, on every signing path. eth-account, the reference most wallets agree with,
stays the oracle: tests/unit/chains/test_rlp.py requires identical bytes from both on thousands of random
transactions of every type, through its *private* helpers ``serializable_unsigned_transaction_from_dict`` and
``encode_transaction``, which is why pyproject.toml pins eth-account to ``>=0.14,<0.15``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from custody.chains.evm import rlp
from custody.chains.evm.address import checksum_address
from custody.chains.evm.authorizations import SignedAuthorization, parse_signed_authorization
from custody.chains.evm.values import (
    canonical_payload,
    format_ether,
    json_type_name,
    parse_chain_id,
    parse_hex_bytes,
    parse_integer,
    shorten_hex,
)
from custody.domain.errors import InternalError, InvalidInput
from custody.domain.requests import PayloadKind, SignatureResult

MAX_CALLDATA_BYTES = 64 * 1024
MAX_ACCESS_LIST_ENTRIES = 256
MAX_STORAGE_KEYS_PER_ENTRY = 256

UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1

# EIP-4844: a blob versioned hash is 32 bytes whose first byte is the commitment's version; 0x01 (KZG) is the
# only version defined, and a node refuses a transaction with any other.
VERSIONED_HASH_VERSION_KZG = 0x01
# EIP-7691 (Prague/Electra, "Pectra") raised the most blobs a block may hold to 9; a transaction cannot hold more
# than a block can. Chains whose later forks set a lower per-transaction cap refuse the excess themselves.
MAX_BLOBS_PER_TRANSACTION = 9
GAS_PER_BLOB = 2**17  # EIP-4844: blob gas one blob uses, whatever the fork
# EIP-4844's MIN_BASE_FEE_PER_BLOB_GAS: the blob base fee never falls below 1 wei, so a transaction offering
# less is never included, yet signing it would use up its nonce.
MIN_BLOB_GAS_PRICE = 1

# How many authorizations one set-code transaction may carry. The protocol sets no number (each costs 25,000
# gas), but every one hands an account to a contract and approvers must read each, so the list is kept short.
MAX_AUTHORIZATIONS = 32

LEGACY = "legacy"
EIP2930 = "eip2930"
EIP1559 = "eip1559"
EIP4844 = "eip4844"
EIP7702 = "eip7702"
_TYPE_NUMBERS = {LEGACY: 0, EIP2930: 1, EIP1559: 2, EIP4844: 3, EIP7702: 4}
# The types whose fee is maxFeePerGas and maxPriorityFeePerGas (EIP-1559's fee market) rather than gasPrice.
_DYNAMIC_FEE_TYPES = frozenset({EIP1559, EIP4844, EIP7702})
_TYPE_DESCRIPTIONS = {
    LEGACY: "legacy (type 0)",
    EIP2930: "EIP-2930 (type 1)",
    EIP1559: "EIP-1559 (type 2)",
    EIP4844: "EIP-4844 blob (type 3)",
    EIP7702: "EIP-7702 set-code (type 4)",
}
_TYPES_BY_NUMBER = {number: name for name, number in _TYPE_NUMBERS.items()}

_ALLOWED_FIELDS = frozenset(
    {
        "type",
        "chainId",
        "nonce",
        "to",
        "value",
        "gas",
        "gasPrice",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
        "data",
        "accessList",
        "maxFeePerBlobGas",
        "blobVersionedHashes",
        "authorizationList",
    }
)
_BLOB_FIELDS = ("maxFeePerBlobGas", "blobVersionedHashes")
_ACCESS_LIST_ENTRY_FIELDS = frozenset({"address", "storageKeys"})

# EIP-155: v = chain_id * 2 + 35 + y_parity for replay-protected legacy transactions.
_EIP155_V_OFFSET = 35

# Intrinsic gas: what a transaction is charged before any of its code runs. A transaction whose gas limit is
# below it is invalid and no block includes it, yet signing it would use up its nonce; so it is refused.
# The costs are those every chain has charged since Shanghai, and on older chains the true minimum is only
# higher (a non-zero calldata byte cost 68 before EIP-2028), so what is refused here no chain includes.
# EIP-7623 (Prague) adds a further floor for calldata-heavy transactions on the chains that adopted it; it is
# not applied here, since a transaction below that floor is still valid on chains without it.
TRANSACTION_BASE_GAS = 21_000  # G_transaction, the Yellow Paper's cost of any transaction
ZERO_CALLDATA_BYTE_GAS = 4  # G_txdatazero
NONZERO_CALLDATA_BYTE_GAS = 16  # EIP-2028 lowered G_txdatanonzero from 68 to 16
ACCESS_LIST_ADDRESS_GAS = 2_400  # EIP-2930
ACCESS_LIST_STORAGE_KEY_GAS = 1_900  # EIP-2930
CONTRACT_CREATION_GAS = 32_000  # G_txcreate (EIP-2)
INITCODE_WORD_GAS = 2  # EIP-3860, per 32-byte word of initcode, rounded up
# EIP-7702's PER_EMPTY_ACCOUNT_COST, charged up front per authorization (part is refunded when the account exists).
PER_AUTHORIZATION_GAS = 25_000


@dataclass(frozen=True)
class AccessListEntry:
    address: str
    storage_keys: tuple[bytes, ...]


@dataclass(frozen=True)
class Transaction:
    """A transaction custody may sign: always replay-protected, never a contract creation."""

    transaction_type: str
    chain_id: int
    nonce: int
    to: str
    value: int
    gas: int
    data: bytes
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    access_list: tuple[AccessListEntry, ...] = ()
    max_fee_per_blob_gas: int | None = None  # EIP-4844 only
    blob_versioned_hashes: tuple[bytes, ...] = ()  # EIP-4844 only
    authorization_list: tuple[SignedAuthorization, ...] = ()  # EIP-7702 only
    digest: bytes = field(init=False)
    canonical: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "canonical", canonical_payload(self._json_fields()))
        object.__setattr__(self, "digest", rlp.signing_hash(self))

    @property
    def kind(self) -> PayloadKind:
        return PayloadKind.TRANSACTION

    @property
    def selector(self) -> bytes | None:
        return self.data[:4] if len(self.data) >= 4 else None

    @property
    def nonce_slot(self) -> tuple[str, int] | None:
        return ("account", self.nonce)

    @property
    def max_price_per_gas(self) -> int:
        """The highest price per unit of gas the transaction offers: maxFeePerGas for EIP-1559 and the types
        built on it (blob, set-code), else gasPrice."""
        price = self.max_fee_per_gas if self.transaction_type in _DYNAMIC_FEE_TYPES else self.gas_price
        if price is None:
            # parse_transaction requires the fee field of the transaction's type, so this is a programming error.
            raise InternalError(f"a {self.transaction_type} transaction was built without its fee field")
        return price

    @property
    def max_fee_wei(self) -> int:
        """The most wei the transaction can pay in fees: all its gas at its highest price.

        What is actually charged is usually less (unused gas is refunded, and under EIP-1559 the price is the
        base fee plus the tip), but the whole amount can go, and a block builder keeps what it is paid; so this
        bound, not an estimate, is what the policy caps and the approver is shown. A blob transaction also pays
        for its blob gas (GAS_PER_BLOB per blob) at up to maxFeePerBlobGas, which is burned in full.
        """
        return self.gas * self.max_price_per_gas + self.blob_gas * (self.max_fee_per_blob_gas or 0)

    @property
    def blob_gas(self) -> int:
        """The blob gas an EIP-4844 transaction uses (GAS_PER_BLOB per blob); 0 for other types."""
        return GAS_PER_BLOB * len(self.blob_versioned_hashes)

    def _json_fields(self) -> dict[str, Any]:
        """The eth-account-style dict of this transaction, quantities as 0x-hex (the JSON-RPC convention)."""
        fields: dict[str, Any] = {
            "type": hex(_TYPE_NUMBERS[self.transaction_type]),
            "chainId": hex(self.chain_id),
            "nonce": hex(self.nonce),
            "to": self.to,
            "value": hex(self.value),
            "gas": hex(self.gas),
            "data": "0x" + self.data.hex(),
        }
        if self.gas_price is not None:
            fields["gasPrice"] = hex(self.gas_price)
        if self.max_fee_per_gas is not None:
            fields["maxFeePerGas"] = hex(self.max_fee_per_gas)
        if self.max_priority_fee_per_gas is not None:
            fields["maxPriorityFeePerGas"] = hex(self.max_priority_fee_per_gas)
        if self.transaction_type != LEGACY:
            fields["accessList"] = [
                {"address": entry.address, "storageKeys": ["0x" + key.hex() for key in entry.storage_keys]}
                for entry in self.access_list
            ]
        if self.max_fee_per_blob_gas is not None:
            fields["maxFeePerBlobGas"] = hex(self.max_fee_per_blob_gas)
            fields["blobVersionedHashes"] = [
                "0x" + blob_hash.hex() for blob_hash in self.blob_versioned_hashes
            ]
        if self.transaction_type == EIP7702:
            fields["authorizationList"] = [
                authorization.json_fields() for authorization in self.authorization_list
            ]
        return fields

    def summary(self) -> dict[str, str]:
        summary = {
            "type": self.transaction_type,
            "chain_id": str(self.chain_id),
            "nonce": str(self.nonce),
            "to": self.to,
            "value_wei": str(self.value),
            "value_ether": format_ether(self.value),
            "gas": str(self.gas),
            "data": shorten_hex(self.data),
            "data_length": str(len(self.data)),
        }
        if len(self.data) >= 4:
            summary["selector"] = "0x" + self.data[:4].hex()
        if self.gas_price is not None:
            summary["gas_price_wei"] = str(self.gas_price)
        if self.max_fee_per_gas is not None:
            summary["max_fee_per_gas_wei"] = str(self.max_fee_per_gas)
        if self.max_priority_fee_per_gas is not None:
            summary["max_priority_fee_per_gas_wei"] = str(self.max_priority_fee_per_gas)
        summary["max_fee_wei"] = str(self.max_fee_wei)
        summary["max_fee_ether"] = format_ether(self.max_fee_wei)
        if self.transaction_type != LEGACY:
            summary["access_list_entries"] = str(len(self.access_list))
        if self.max_fee_per_blob_gas is not None:
            summary["max_fee_per_blob_gas_wei"] = str(self.max_fee_per_blob_gas)
            summary["blob_count"] = str(len(self.blob_versioned_hashes))
            summary["blob_gas"] = str(self.blob_gas)
            for index, blob_hash in enumerate(self.blob_versioned_hashes):
                summary[f"blob_versioned_hashes[{index}]"] = "0x" + blob_hash.hex()
        if self.transaction_type == EIP7702:
            summary["authorization_count"] = str(len(self.authorization_list))
            for index, authorization in enumerate(self.authorization_list):
                where = f"authorization_list[{index}]"
                summary[f"{where}.authority"] = authorization.authority
                summary[f"{where}.delegate"] = authorization.delegate
                summary[f"{where}.chain_id"] = str(authorization.chain_id)
                summary[f"{where}.nonce"] = str(authorization.nonce)
        return summary

    def assemble(self, r: int, s: int, y_parity: int) -> SignatureResult:
        if y_parity not in (0, 1):
            raise InternalError(f"a y-parity must be 0 or 1, got {y_parity}")
        # Legacy transactions carry the chain id in v (EIP-155); typed transactions carry the bare y-parity.
        v = self.chain_id * 2 + _EIP155_V_OFFSET + y_parity if self.transaction_type == LEGACY else y_parity
        signed_tx = rlp.signed_encoding(self, v, r, s)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])
        return SignatureResult(signature=signature, signed_tx=signed_tx, tx_hash=bytes(keccak(signed_tx)))


def intrinsic_gas(
    to: str | None, data: bytes, access_list: Sequence[AccessListEntry], authorization_count: int = 0
) -> int:
    """The least gas a transaction with this destination, calldata, access list and number of EIP-7702
    authorizations can be given.

    ``to`` of None is a contract creation, whose calldata is its initcode. parse_transaction refuses those,
    but the function states the whole rule so that its known values can be checked against other sources.
    """
    zero_bytes = data.count(0)
    gas = (
        TRANSACTION_BASE_GAS
        + ZERO_CALLDATA_BYTE_GAS * zero_bytes
        + NONZERO_CALLDATA_BYTE_GAS * (len(data) - zero_bytes)
    )
    gas += sum(
        ACCESS_LIST_ADDRESS_GAS + ACCESS_LIST_STORAGE_KEY_GAS * len(entry.storage_keys)
        for entry in access_list
    )
    gas += PER_AUTHORIZATION_GAS * authorization_count
    if to is None:
        gas += CONTRACT_CREATION_GAS + INITCODE_WORD_GAS * ((len(data) + 31) // 32)
    return gas


def parse_transaction(obj: Mapping[str, Any]) -> Transaction:
    """Parse an eth-account-style transaction dict strictly; raises InvalidInput naming the field.

    Integers may be JSON numbers, 0x-hex strings or decimal strings (see ``values``). ``value`` defaults to 0,
    ``data`` to empty and ``accessList`` to empty; every other field this version uses is required. The chain
    id is at most MAX_CHAIN_ID, ``gas`` at least the intrinsic gas, and gas times the price (plus blob gas
    times the blob gas price) plus the value at most 2**256 - 1: a transaction outside these bounds could not
    be recorded or would never be included. Blob transactions need 1 to MAX_BLOBS_PER_TRANSACTION versioned
    hashes, set-code transactions 1 to MAX_AUTHORIZATIONS authorizations.
    """
    unknown = sorted(set(obj) - _ALLOWED_FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown transaction field; allowed fields are {', '.join(sorted(_ALLOWED_FIELDS))}",
            field=unknown[0],
        )
    transaction_type = _transaction_type(obj)

    if "chainId" not in obj or obj["chainId"] is None:
        # Without a chain id a signature is valid on every EVM chain (pre-EIP-155 replay), so it is refused.
        raise InvalidInput("is required: custody signs only replay-protected transactions", field="chainId")
    chain_id = parse_chain_id(obj["chainId"], "chainId")
    # EIP-2681 caps the nonce at 2**64 - 2: an account whose nonce reached 2**64 - 1 can send nothing more.
    nonce = parse_integer(_required(obj, "nonce"), "nonce", minimum=0, maximum=UINT64_MAX - 1)
    gas = parse_integer(_required(obj, "gas"), "gas", minimum=0, maximum=UINT64_MAX)
    value = parse_integer(obj.get("value", 0), "value", minimum=0, maximum=UINT256_MAX)
    to = _destination(obj)
    data = parse_hex_bytes(obj.get("data", "0x"), "data", max_length=MAX_CALLDATA_BYTES)

    gas_price = max_fee = max_priority_fee = None
    if transaction_type in _DYNAMIC_FEE_TYPES:
        max_fee = parse_integer(
            _required(obj, "maxFeePerGas"), "maxFeePerGas", minimum=0, maximum=UINT256_MAX
        )
        max_priority_fee = parse_integer(
            _required(obj, "maxPriorityFeePerGas"), "maxPriorityFeePerGas", minimum=0, maximum=UINT256_MAX
        )
        if max_priority_fee > max_fee:
            # Nodes reject such a transaction (the tip cannot exceed the fee cap); refuse it before signing.
            raise InvalidInput(
                f"({max_priority_fee}) must not exceed maxFeePerGas ({max_fee})", field="maxPriorityFeePerGas"
            )
        fee_field, price = "maxFeePerGas", max_fee
    else:
        gas_price = parse_integer(_required(obj, "gasPrice"), "gasPrice", minimum=0, maximum=UINT256_MAX)
        fee_field, price = "gasPrice", gas_price

    access_list: tuple[AccessListEntry, ...] = ()
    if "accessList" in obj:
        if transaction_type == LEGACY:
            raise InvalidInput("is not allowed in a legacy (type 0) transaction", field="accessList")
        access_list = _access_list(obj["accessList"])

    max_fee_per_blob_gas = None
    blob_versioned_hashes: tuple[bytes, ...] = ()
    if transaction_type == EIP4844:
        max_fee_per_blob_gas = parse_integer(
            _required(obj, "maxFeePerBlobGas"),
            "maxFeePerBlobGas",
            minimum=MIN_BLOB_GAS_PRICE,
            maximum=UINT256_MAX,
        )
        blob_versioned_hashes = _blob_versioned_hashes(_required(obj, "blobVersionedHashes"))
    authorization_list: tuple[SignedAuthorization, ...] = ()
    if transaction_type == EIP7702:
        authorization_list = _authorization_list(_required(obj, "authorizationList"), chain_id)

    _check_gas(
        gas,
        value,
        fee_field=fee_field,
        price=price,
        minimum=intrinsic_gas(to, data, access_list, len(authorization_list)),
        blob_gas=GAS_PER_BLOB * len(blob_versioned_hashes),
        blob_gas_price=max_fee_per_blob_gas or 0,
    )
    return Transaction(
        transaction_type=transaction_type,
        chain_id=chain_id,
        nonce=nonce,
        to=to,
        value=value,
        gas=gas,
        data=data,
        gas_price=gas_price,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=max_priority_fee,
        access_list=access_list,
        max_fee_per_blob_gas=max_fee_per_blob_gas,
        blob_versioned_hashes=blob_versioned_hashes,
        authorization_list=authorization_list,
    )


def _check_gas(
    gas: int, value: int, *, fee_field: str, price: int, minimum: int, blob_gas: int, blob_gas_price: int
) -> None:
    """Refuse a gas limit below the intrinsic gas, and fees or a total cost beyond 256 bits."""
    if gas < minimum:
        raise InvalidInput(
            f"is {gas}, below this transaction's intrinsic gas of {minimum} (21,000, plus 4 per zero and 16"
            " per non-zero byte of data, plus 2,400 per access list address and 1,900 per storage key, plus"
            " 25,000 per authorization); no chain would include it",
            field="gas",
        )
    # A node charges gas * price (plus the value) up front and does that arithmetic in 256 bits: a transaction
    # whose total overflows is refused by every node ("required balance exceeds 256 bits" in go-ethereum), and
    # the store and the policy hold fees as 256-bit amounts.
    max_fee = gas * price
    if max_fee > UINT256_MAX:
        raise InvalidInput(
            f"times gas ({gas}) is {max_fee} wei, more than 2**256 - 1: no chain can charge it",
            field=fee_field,
        )
    max_fee += blob_gas * blob_gas_price
    if max_fee > UINT256_MAX:
        raise InvalidInput(
            f"times the blob gas ({blob_gas}), with the other fees, is {max_fee} wei, more than 2**256 - 1:"
            " no chain can charge it",
            field="maxFeePerBlobGas",
        )
    if max_fee + value > UINT256_MAX:
        raise InvalidInput(
            f"plus the most the fees can cost ({max_fee} wei) is more than 2**256 - 1 wei: no chain can"
            " charge it",
            field="value",
        )


def _required(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidInput("is required", field=name)
    return obj[name]


def _transaction_type(obj: Mapping[str, Any]) -> str:
    """The declared type, checked against the fee and type-specific fields, or the type those fields imply (as
    eth-account infers it)."""
    has_gas_price = "gasPrice" in obj
    has_dynamic_fee = "maxFeePerGas" in obj or "maxPriorityFeePerGas" in obj
    blob_field = next((name for name in _BLOB_FIELDS if name in obj), None)
    has_authorizations = "authorizationList" in obj
    if has_gas_price and has_dynamic_fee:
        raise InvalidInput(
            "cannot be combined with maxFeePerGas/maxPriorityFeePerGas: give one fee style", field="gasPrice"
        )
    if blob_field is not None and has_authorizations:
        raise InvalidInput(
            f"cannot be combined with {blob_field}: a transaction is either a blob (type 3) or a set-code"
            " (type 4) transaction",
            field="authorizationList",
        )
    if "type" in obj:
        number = parse_integer(obj["type"], "type", minimum=0, maximum=UINT64_MAX)
        if number not in _TYPES_BY_NUMBER:
            raise InvalidInput(
                "must be 0 (legacy), 1 (EIP-2930), 2 (EIP-1559), 3 (EIP-4844 blob) or 4 (EIP-7702 set-code),"
                f" got {number}",
                field="type",
            )
        declared = _TYPES_BY_NUMBER[number]
    elif blob_field is not None:
        declared = EIP4844
    elif has_authorizations:
        declared = EIP7702
    elif has_dynamic_fee:
        return EIP1559
    elif has_gas_price:
        return EIP2930 if "accessList" in obj else LEGACY
    else:
        raise InvalidInput(
            "no fee given: set gasPrice (legacy, EIP-2930) or maxFeePerGas and maxPriorityFeePerGas (EIP-1559,"
            " EIP-4844, EIP-7702)",
            field="gasPrice",
        )
    description = _TYPE_DESCRIPTIONS[declared]
    if blob_field is not None and declared != EIP4844:
        raise InvalidInput(
            f"is only used by EIP-4844 blob (type 3) transactions, not {description}", field=blob_field
        )
    if has_authorizations and declared != EIP7702:
        raise InvalidInput(
            f"is only used by EIP-7702 set-code (type 4) transactions, not {description}",
            field="authorizationList",
        )
    if declared in _DYNAMIC_FEE_TYPES:
        if has_gas_price:
            raise InvalidInput(
                f"is not used by {description} transactions; give maxFeePerGas", field="gasPrice"
            )
        if not has_dynamic_fee:
            raise InvalidInput("is required (no fee given)", field="maxFeePerGas")
    else:
        if has_dynamic_fee:
            field_name = "maxFeePerGas" if "maxFeePerGas" in obj else "maxPriorityFeePerGas"
            raise InvalidInput(
                f"is only used by EIP-1559 and later typed transactions (type 2, 3, 4), not {declared}",
                field=field_name,
            )
        if not has_gas_price:
            raise InvalidInput("is required (no fee given)", field="gasPrice")
    return declared


def _destination(obj: Mapping[str, Any]) -> str:
    to = obj.get("to")
    if to is None or to in ("", "0x"):
        # Contract creation is refused in this version: its effect is code that approvers cannot review from
        # a summary, and the policy model (destination and selector allowlists) has nothing to match it on.
        # Blob and set-code transactions cannot create contracts at all (EIP-4844, EIP-7702).
        raise InvalidInput(
            "is required: contract creation (a transaction without a destination) is not supported",
            field="to",
        )
    return checksum_address(to, "to")


def _access_list(value: object) -> tuple[AccessListEntry, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"must be an array, got {json_type_name(value)}", field="accessList")
    if len(value) > MAX_ACCESS_LIST_ENTRIES:
        raise InvalidInput(
            f"has {len(value)} entries, more than the limit of {MAX_ACCESS_LIST_ENTRIES}", field="accessList"
        )
    entries = []
    for index, entry in enumerate(value):
        where = f"accessList[{index}]"
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"must be an object, got {json_type_name(entry)}", field=where)
        unknown = sorted(set(entry) - _ACCESS_LIST_ENTRY_FIELDS)
        if unknown:
            raise InvalidInput(
                "unknown field; an entry has address and storageKeys", field=f"{where}.{unknown[0]}"
            )
        if "address" not in entry:
            raise InvalidInput("is required", field=f"{where}.address")
        address = checksum_address(entry["address"], f"{where}.address")
        keys = entry.get("storageKeys", [])
        if not isinstance(keys, list | tuple):
            raise InvalidInput(f"must be an array, got {json_type_name(keys)}", field=f"{where}.storageKeys")
        if len(keys) > MAX_STORAGE_KEYS_PER_ENTRY:
            raise InvalidInput(
                f"has {len(keys)} keys, more than the limit of {MAX_STORAGE_KEYS_PER_ENTRY}",
                field=f"{where}.storageKeys",
            )
        storage_keys = tuple(
            parse_hex_bytes(key, f"{where}.storageKeys[{key_index}]", max_length=32, exact_length=32)
            for key_index, key in enumerate(keys)
        )
        entries.append(AccessListEntry(address=address, storage_keys=storage_keys))
    return tuple(entries)


def _blob_versioned_hashes(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"must be an array, got {json_type_name(value)}", field="blobVersionedHashes")
    if not value:
        raise InvalidInput(
            "must hold at least one hash: a blob transaction carries a blob", field="blobVersionedHashes"
        )
    if len(value) > MAX_BLOBS_PER_TRANSACTION:
        raise InvalidInput(
            f"has {len(value)} hashes, more than the {MAX_BLOBS_PER_TRANSACTION} blobs a block may hold (EIP-7691)",
            field="blobVersionedHashes",
        )
    hashes = []
    for index, item in enumerate(value):
        where = f"blobVersionedHashes[{index}]"
        blob_hash = parse_hex_bytes(item, where, max_length=32, exact_length=32)
        if blob_hash[0] != VERSIONED_HASH_VERSION_KZG:
            raise InvalidInput(
                f"has version byte 0x{blob_hash[0]:02x}; the only version is 0x01 (KZG, EIP-4844)",
                field=where,
            )
        hashes.append(blob_hash)
    return tuple(hashes)


def _authorization_list(value: object, chain_id: int) -> tuple[SignedAuthorization, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"must be an array, got {json_type_name(value)}", field="authorizationList")
    if not value:
        # EIP-7702 makes a set-code transaction with an empty list invalid.
        raise InvalidInput("must hold at least one authorization", field="authorizationList")
    if len(value) > MAX_AUTHORIZATIONS:
        raise InvalidInput(
            f"has {len(value)} authorizations, more than the limit of {MAX_AUTHORIZATIONS}",
            field="authorizationList",
        )
    return tuple(
        parse_signed_authorization(entry, f"authorizationList[{index}]", transaction_chain_id=chain_id)
        for index, entry in enumerate(value)
    )

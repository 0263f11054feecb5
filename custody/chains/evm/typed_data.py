"""EIP-712 typed structured data (the ``eth_signTypedData_v4`` form): strict parsing and hashing.

The hashing (encodeType, typeHash, encodeData, hashStruct, the domain separator and the ``"\\x19\\x01"``
prefix) is written out here instead of delegated, so that each rule custody enforces is visible in one place
and the tests can check it against eth-account's independent implementation. Custody is stricter than the EIP
in a few places, each because a looser reading lets two tools disagree about what was signed: every struct
member must be present and no others, recursive types are refused, ``uint``/``int`` without a size are refused
(their type hash would differ between tools), ``bytesN`` values must have exactly N bytes, and EIP712Domain
may use only the five fields the EIP defines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from custody.chains.evm.address import checksum_address
from custody.chains.evm.signature import rsv_signature
from custody.chains.evm.values import (
    MAX_PAYLOAD_BYTES,
    canonical_payload,
    format_ether,
    json_type_name,
    parse_chain_id,
    parse_hex_bytes,
    parse_integer,
    shorten_hex,
)
from custody.domain.errors import InvalidInput
from custody.domain.requests import PayloadKind, SignatureResult

MAX_TYPE_DEPTH = 16
MAX_ARRAY_LENGTH = 1024
MAX_SUMMARY_MESSAGE_CHARS = 4000

DOMAIN_TYPE = "EIP712Domain"
# The fields EIP-712 defines for the domain, with the only type each may have.
DOMAIN_FIELD_TYPES = {
    "name": "string",
    "version": "string",
    "chainId": "uint256",
    "verifyingContract": "address",
    "salt": "bytes32",
}
_TOP_LEVEL_FIELDS = ("types", "primaryType", "domain", "message")

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_ARRAY_SUFFIX = re.compile(r"\[(0|[1-9][0-9]{0,5})?\]\Z")
_INTEGER_TYPE = re.compile(r"(u?)int([1-9][0-9]{0,2})")
_FIXED_BYTES_TYPE = re.compile(r"bytes([1-9][0-9]?)")
_PLAIN_ATOMIC_TYPES = frozenset({"address", "bool", "string", "bytes"})

_SAFE_OPERATIONS = {0: "CALL", 1: "DELEGATECALL"}


@dataclass(frozen=True)
class Member:
    name: str
    type: str


def _split_array(type_name: str) -> tuple[str, int | None] | None:
    """For an array type, ``(element type, fixed length or None)``; None for a non-array type."""
    match = _ARRAY_SUFFIX.search(type_name)
    if match is None:
        return None
    length = match.group(1)
    return type_name[: match.start()], int(length) if length is not None else None


def _base_type(type_name: str) -> str:
    while (split := _split_array(type_name)) is not None:
        type_name = split[0]
    return type_name


def _is_atomic(type_name: str) -> bool:
    if type_name in _PLAIN_ATOMIC_TYPES:
        return True
    if (integer := _INTEGER_TYPE.fullmatch(type_name)) is not None:
        bits = int(integer.group(2))
        return bits % 8 == 0 and 8 <= bits <= 256
    if (fixed := _FIXED_BYTES_TYPE.fullmatch(type_name)) is not None:
        return 1 <= int(fixed.group(1)) <= 32
    return False


def _looks_atomic(type_name: str) -> bool:
    """True for names in the atomic families, valid or not, so they cannot be declared as struct names."""
    return (
        type_name in _PLAIN_ATOMIC_TYPES
        or type_name in ("int", "uint")
        or _INTEGER_TYPE.fullmatch(type_name) is not None
        or _FIXED_BYTES_TYPE.fullmatch(type_name) is not None
    )


class StructTypes:
    """The validated ``types`` section: struct definitions free of undeclared and recursive types."""

    def __init__(self, raw: object) -> None:
        if not isinstance(raw, Mapping):
            raise InvalidInput(
                f"must be an object of struct definitions, got {json_type_name(raw)}", field="types"
            )
        self.structs: dict[str, tuple[Member, ...]] = {
            name: self._parse_struct(name, members) for name, members in raw.items()
        }
        self._type_hashes: dict[str, bytes] = {}
        depths: dict[str, int] = {}
        for name in self.structs:
            self._check_struct_depth(name, depths, ())

    @staticmethod
    def _parse_struct(name: object, members: object) -> tuple[Member, ...]:
        where = f"types.{name}"
        if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
            raise InvalidInput("is not a valid type name (letters, digits, _ and $)", field=where)
        if _looks_atomic(name):
            raise InvalidInput("is an atomic type name and cannot name a struct", field=where)
        if not isinstance(members, list):
            raise InvalidInput(
                f"must be an array of {{name, type}} members, got {json_type_name(members)}", field=where
            )
        parsed: list[Member] = []
        seen: set[str] = set()
        for index, member in enumerate(members):
            member_where = f"{where}[{index}]"
            if not isinstance(member, Mapping) or set(member) != {"name", "type"}:
                raise InvalidInput(
                    "must be an object with exactly the keys name and type", field=member_where
                )
            member_name, member_type = member["name"], member["type"]
            if not isinstance(member_name, str) or not _IDENTIFIER.fullmatch(member_name):
                raise InvalidInput(
                    "has an invalid member name (letters, digits, _ and $)", field=member_where
                )
            if member_name in seen:
                raise InvalidInput(f"declares the member {member_name!r} twice", field=member_where)
            if not isinstance(member_type, str) or not member_type:
                raise InvalidInput("must have a type string", field=member_where)
            seen.add(member_name)
            parsed.append(Member(member_name, member_type))
        return tuple(parsed)

    def _check_struct_depth(self, name: str, depths: dict[str, int], path: tuple[str, ...]) -> int:
        """Depth of struct ``name``; refuses undeclared member types, recursion and excessive nesting."""
        if name in depths:
            return depths[name]
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise InvalidInput(
                f"is recursive ({cycle}); custody refuses recursive types", field=f"types.{name}"
            )
        deepest = 0
        for index, member in enumerate(self.structs[name]):
            deepest = max(
                deepest, self._type_depth(member.type, f"types.{name}[{index}]", depths, (*path, name))
            )
        depth = 1 + deepest
        if depth > MAX_TYPE_DEPTH:
            raise InvalidInput(f"nests more than {MAX_TYPE_DEPTH} levels deep", field=f"types.{name}")
        depths[name] = depth
        return depth

    def _type_depth(self, type_name: str, where: str, depths: dict[str, int], path: tuple[str, ...]) -> int:
        dimensions = 0
        while (split := _split_array(type_name)) is not None:
            element, length = split
            if length is not None and not 1 <= length <= MAX_ARRAY_LENGTH:
                raise InvalidInput(f"has a fixed array length outside 1..{MAX_ARRAY_LENGTH}", field=where)
            dimensions += 1
            type_name = element
        if _is_atomic(type_name):
            return dimensions
        if type_name in ("int", "uint"):
            raise InvalidInput(f"uses {type_name!r}; write the size, e.g. {type_name}256", field=where)
        if type_name not in self.structs:
            raise InvalidInput(f"uses the undeclared type {type_name!r}", field=where)
        return dimensions + self._check_struct_depth(type_name, depths, path)

    def encode_type(self, primary: str) -> str:
        """encodeType: the primary struct, then every struct it references, sorted by name."""
        dependencies: set[str] = set()
        pending = [primary]
        while pending:
            for member in self.structs[pending.pop()]:
                base = _base_type(member.type)
                if base in self.structs and base != primary and base not in dependencies:
                    dependencies.add(base)
                    pending.append(base)
        return "".join(
            f"{name}({','.join(f'{member.type} {member.name}' for member in self.structs[name])})"
            for name in (primary, *sorted(dependencies))
        )

    def type_hash(self, name: str) -> bytes:
        if name not in self._type_hashes:
            self._type_hashes[name] = keccak(text=self.encode_type(name))
        return self._type_hashes[name]

    def hash_struct(self, name: str, value: object, where: str) -> bytes:
        """hashStruct: keccak(typeHash || encodeData); every member must be present and nothing else."""
        if not isinstance(value, Mapping):
            raise InvalidInput(f"must be an object of type {name}, got {json_type_name(value)}", field=where)
        members = self.structs[name]
        declared = {member.name for member in members}
        extra = sorted(key for key in value if key not in declared)
        if extra:
            raise InvalidInput(f"is not a member of type {name}", field=f"{where}.{extra[0]}")
        encoded = [self.type_hash(name)]
        for member in members:
            if member.name not in value:
                raise InvalidInput(f"is required by type {name}", field=f"{where}.{member.name}")
            encoded.append(self.encode_value(member.type, value[member.name], f"{where}.{member.name}"))
        return keccak(b"".join(encoded))

    def encode_value(self, type_name: str, value: object, where: str) -> bytes:
        """encodeData of one member: 32 bytes, dynamic and composite values as their hash."""
        split = _split_array(type_name)
        if split is not None:
            element, length = split
            if not isinstance(value, list):
                raise InvalidInput(
                    f"must be an array ({type_name}), got {json_type_name(value)}", field=where
                )
            if length is not None and len(value) != length:
                raise InvalidInput(
                    f"must have exactly {length} elements ({type_name}), got {len(value)}", field=where
                )
            if len(value) > MAX_ARRAY_LENGTH:
                raise InvalidInput(
                    f"has {len(value)} elements, more than the limit of {MAX_ARRAY_LENGTH}", field=where
                )
            return keccak(
                b"".join(
                    self.encode_value(element, item, f"{where}[{index}]") for index, item in enumerate(value)
                )
            )
        if type_name in self.structs:
            return self.hash_struct(type_name, value, where)
        return _encode_atomic(type_name, value, where)


def _encode_atomic(type_name: str, value: object, where: str) -> bytes:
    if type_name == "string":
        if not isinstance(value, str):
            raise InvalidInput(f"must be a string, got {json_type_name(value)}", field=where)
        try:
            return keccak(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidInput(
                "contains a lone UTF-16 surrogate, which is not valid text", field=where
            ) from None
    if type_name == "bytes":
        return keccak(parse_hex_bytes(value, where, max_length=MAX_PAYLOAD_BYTES))
    if type_name == "bool":
        if not isinstance(value, bool):
            raise InvalidInput(f"must be true or false, got {json_type_name(value)}", field=where)
        return int(value).to_bytes(32, "big")
    if type_name == "address":
        return bytes.fromhex(checksum_address(value, where)[2:]).rjust(32, b"\0")
    if (fixed := _FIXED_BYTES_TYPE.fullmatch(type_name)) is not None:
        size = int(fixed.group(1))
        return parse_hex_bytes(value, where, max_length=size, exact_length=size).ljust(32, b"\0")
    integer = _INTEGER_TYPE.fullmatch(type_name)
    if integer is None:
        raise AssertionError(f"type {type_name!r} passed validation but is not atomic")
    bits = int(integer.group(2))
    if integer.group(1) == "u":
        number = parse_integer(value, where, minimum=0, maximum=2**bits - 1)
    else:
        number = parse_integer(value, where, minimum=-(2 ** (bits - 1)), maximum=2 ** (bits - 1) - 1)
    # Two's complement over 256 bits, as the ABI encodes signed integers.
    return (number % 2**256).to_bytes(32, "big")


@dataclass(frozen=True)
class TypedData:
    primary_type: str
    domain: Mapping[str, Any]
    message: Mapping[str, Any]
    chain_id: int | None
    to: str | None
    canonical: bytes
    digest: bytes
    domain_separator: bytes
    message_hash: bytes
    transaction_type: str | None = field(default=None, init=False)
    value: int = field(default=0, init=False)
    selector: bytes | None = field(default=None, init=False)
    max_fee_wei: int | None = field(default=None, init=False)
    nonce_slot: tuple[str, int] | None = field(default=None, init=False)

    @property
    def kind(self) -> PayloadKind:
        return PayloadKind.TYPED_DATA

    def summary(self) -> dict[str, str]:
        summary = {"primary_type": self.primary_type}
        for name in ("name", "version"):
            if name in self.domain:
                summary[f"domain_{name}"] = str(self.domain[name])
        if self.chain_id is not None:
            summary["domain_chain_id"] = str(self.chain_id)
        if self.to is not None:
            summary["domain_verifying_contract"] = self.to
        if "salt" in self.domain:
            summary["domain_salt"] = str(self.domain["salt"]).lower()
        message = canonical_payload(self.message).decode("utf-8")
        if len(message) > MAX_SUMMARY_MESSAGE_CHARS:
            message = message[:MAX_SUMMARY_MESSAGE_CHARS] + "..."
        summary["message"] = message
        summary.update(_safe_transaction_summary(self.primary_type, self.message))
        return summary

    def assemble(self, r: int, s: int, y_parity: int) -> SignatureResult:
        return SignatureResult(signature=rsv_signature(r, s, y_parity))


def _safe_transaction_summary(primary_type: str, message: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a Safe (Gnosis Safe) SafeTx that approvers must see, DELEGATECALL above all."""
    if primary_type != "SafeTx":
        return {}
    summary: dict[str, str] = {}
    if isinstance(message.get("to"), str):
        summary["safe_to"] = checksum_address(message["to"], "message.to")
    if "value" in message:
        value = parse_integer(message["value"], "message.value", minimum=0, maximum=2**256 - 1)
        summary["safe_value_wei"] = str(value)
        summary["safe_value_ether"] = format_ether(value)
    if "operation" in message:
        operation = parse_integer(message["operation"], "message.operation", minimum=0, maximum=255)
        summary["safe_operation"] = _SAFE_OPERATIONS.get(operation, f"UNKNOWN({operation})")
    if isinstance(message.get("data"), str):
        data = parse_hex_bytes(message["data"], "message.data", max_length=MAX_PAYLOAD_BYTES)
        summary["safe_data"] = shorten_hex(data)
        if len(data) >= 4:
            summary["safe_selector"] = "0x" + data[:4].hex()
    if "nonce" in message:
        summary["safe_nonce"] = str(
            parse_integer(message["nonce"], "message.nonce", minimum=0, maximum=2**256 - 1)
        )
    return summary


def parse_typed_data(obj: Mapping[str, Any]) -> TypedData:
    """Parse ``eth_signTypedData_v4`` JSON strictly and compute its EIP-712 digest."""
    unknown = sorted(key for key in obj if key not in _TOP_LEVEL_FIELDS)
    if unknown:
        raise InvalidInput(
            "unknown field; typed data has types, primaryType, domain and message", field=str(unknown[0])
        )
    for name in _TOP_LEVEL_FIELDS:
        if name not in obj:
            raise InvalidInput("is required", field=name)
    types = StructTypes(obj["types"])
    if DOMAIN_TYPE not in types.structs:
        raise InvalidInput(
            "is missing: typed data must declare its domain type", field=f"types.{DOMAIN_TYPE}"
        )
    for index, member in enumerate(types.structs[DOMAIN_TYPE]):
        expected = DOMAIN_FIELD_TYPES.get(member.name)
        if expected is None:
            raise InvalidInput(
                f"declares {member.name!r}; the domain may only have {', '.join(DOMAIN_FIELD_TYPES)}",
                field=f"types.{DOMAIN_TYPE}[{index}]",
            )
        if member.type != expected:
            raise InvalidInput(
                f"declares {member.name} as {member.type!r}; it must be {expected!r}",
                field=f"types.{DOMAIN_TYPE}[{index}]",
            )

    primary_type = obj["primaryType"]
    if not isinstance(primary_type, str) or primary_type not in types.structs:
        raise InvalidInput(
            f"names a type that is not declared in types: {str(primary_type)[:60]!r}", field="primaryType"
        )
    if primary_type == DOMAIN_TYPE:
        # Signing a bare domain has no message for approvers to review, so custody does not offer it.
        raise InvalidInput("must be a message type, not EIP712Domain", field="primaryType")

    domain, message = obj["domain"], obj["message"]
    domain_separator = types.hash_struct(DOMAIN_TYPE, domain, "domain")
    message_hash = types.hash_struct(primary_type, message, "message")
    chain_id = None
    if "chainId" in domain:
        # The domain encodes chainId as a uint256, but the request records it and the policy matches it as a
        # chain id, so it is held to the same bound as a transaction's.
        chain_id = parse_chain_id(domain["chainId"], "domain.chainId")
    to = (
        checksum_address(domain["verifyingContract"], "domain.verifyingContract")
        if ("verifyingContract" in domain)
        else None
    )
    # The summary reads SafeTx fields; parsing them here means a malformed Safe message fails at submit time.
    _safe_transaction_summary(primary_type, message)
    return TypedData(
        primary_type=primary_type,
        domain=domain,
        message=message,
        chain_id=chain_id,
        to=to,
        canonical=canonical_payload(dict(obj)),
        digest=keccak(b"\x19\x01" + domain_separator + message_hash),
        domain_separator=domain_separator,
        message_hash=message_hash,
    )

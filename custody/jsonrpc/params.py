"""Strict reading of JSON-RPC parameters into what custody's use cases take.

Every problem is an InvalidInput naming the parameter (``params[1]``) or the transaction field (``gas``), so a
caller learns which value was wrong; nothing is submitted before all of a call's parameters were read. The
payload parsers (custody.chains.evm) check the transaction, typed data or message in full afterwards: this
module only translates JSON-RPC's spellings into theirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from custody.chains.evm.address import checksum_address
from custody.chains.evm.values import MAX_PAYLOAD_BYTES, parse_hex_bytes, parse_integer
from custody.domain.errors import InvalidInput

# The JSON-RPC transaction object's fields (execution-apis' GenericTransaction) that custody signs, with the
# name custody's transaction payload gives each. JSON-RPC tools send both `input` (the specification's name)
# and `data` (web3.py's, ethers'), and `gas` or `gasLimit`.
_TRANSACTION_FIELD_NAMES = {
    "type": "type",
    "chainId": "chainId",
    "nonce": "nonce",
    "to": "to",
    "value": "value",
    "gas": "gas",
    "gasLimit": "gas",
    "gasPrice": "gasPrice",
    "maxFeePerGas": "maxFeePerGas",
    "maxPriorityFeePerGas": "maxPriorityFeePerGas",
    "data": "data",
    "input": "data",
    "accessList": "accessList",
    "maxFeePerBlobGas": "maxFeePerBlobGas",
    "blobVersionedHashes": "blobVersionedHashes",
    "authorizationList": "authorizationList",
}
_ALLOWED_TRANSACTION_FIELDS = frozenset({"from", *_TRANSACTION_FIELD_NAMES})


@dataclass(frozen=True)
class RpcTransaction:
    """A transaction as a JSON-RPC caller sent it: the sender's address, and the fields in the names of
    custody's transaction payload, some of which (nonce, gas, fees, chain id) may still be missing."""

    sender: str
    fields: dict[str, Any]

    def missing(self, name: str) -> bool:
        return name not in self.fields


def positional(
    params: list[Any] | dict[str, Any], method: str, names: tuple[str, ...], required: int
) -> list[Any]:
    """The parameters of a method that takes an array, ``required`` of them at least and ``len(names)`` at most.

    ``names`` describes the parameters in the message (e.g. ``personal_sign takes [data, address]``).
    """
    shape = f"{method} takes [{', '.join(names)}]"
    if not isinstance(params, list):
        raise InvalidInput(f"must be an array: {shape}", field="params")
    if not required <= len(params) <= len(names):
        count = f"{len(params)} parameter{'s' if len(params) != 1 else ''}"
        raise InvalidInput(f"{shape}; got {count}", field="params")
    return params


def address(value: Any, field: str) -> str:
    return checksum_address(value, field)


def hex_data(value: Any, field: str) -> bytes:
    return parse_hex_bytes(value, field, max_length=MAX_PAYLOAD_BYTES)


def looks_like_address(value: Any) -> bool:
    try:
        checksum_address(value, "")
    except InvalidInput:
        return False
    return True


def message_and_address(
    params: list[Any] | dict[str, Any], method: str, *, address_first: bool
) -> tuple[bytes, str]:
    """The message bytes and the signer of eth_sign ([address, data]) or personal_sign ([data, address]).

    The two orders are a classic mix-up; a call whose "data" is an address and whose "address" is not one was
    written in the other order and is refused as such, rather than signing the address as a message.
    """
    names = ("address", "data") if address_first else ("data", "address")
    if not address_first and isinstance(params, list) and len(params) == 3:
        # geth's personal_sign took an account password third; custody's keys have none to give.
        raise InvalidInput(f"{method} takes [data, address]; a password is never accepted", field="params[2]")
    values = positional(params, method, names, required=2)
    address_index, data_index = (0, 1) if address_first else (1, 0)
    raw_address, raw_data = values[address_index], values[data_index]
    if looks_like_address(raw_data) and not looks_like_address(raw_address):
        raise InvalidInput(
            f"{method} takes [{', '.join(names)}]; these parameters look like [{', '.join(reversed(names))}]",
            field="params",
        )
    signer = address(raw_address, f"params[{address_index}]")
    data = hex_data(raw_data, f"params[{data_index}]")
    return data, signer


def typed_data_and_address(params: list[Any] | dict[str, Any], method: str) -> tuple[bytes, str]:
    """The typed data payload (UTF-8 JSON) and the signer of eth_signTypedData, _v3 and _v4
    ([address, typed data], the typed data as an object or as a JSON string)."""
    values = positional(params, method, ("address", "typedData"), required=2)
    if looks_like_address(values[1]) and not looks_like_address(values[0]):
        raise InvalidInput(
            f"{method} takes [address, typedData]; these parameters look like [typedData, address]",
            field="params",
        )
    signer = address(values[0], "params[0]")
    raw = values[1]
    if isinstance(raw, str):
        payload = raw.encode("utf-8")
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            # The payload parser names what is wrong with it, with the same words for every client.
            document = None
    elif isinstance(raw, dict):
        document = raw
        payload = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    elif isinstance(raw, list):
        raise InvalidInput(
            "is an array, the legacy typed data form (eth_signTypedData v1), which custody does not sign;"
            " send EIP-712 typed data (types, primaryType, domain, message)",
            field="params[1]",
        )
    else:
        raise InvalidInput("must be EIP-712 typed data, as a JSON object or a JSON string", field="params[1]")
    if method == "eth_signTypedData_v3" and isinstance(document, dict) and _declares_arrays(document):
        raise InvalidInput(
            "declares an array type, which eth_signTypedData_v3 does not encode; use eth_signTypedData_v4",
            field="params[1]",
        )
    return payload, signer


def _declares_arrays(document: dict[str, Any]) -> bool:
    types = document.get("types")
    if not isinstance(types, dict):
        return False
    return any(
        isinstance(member, dict) and isinstance(member.get("type"), str) and member["type"].endswith("]")
        for members in types.values()
        if isinstance(members, list)
        for member in members
    )


def transaction(params: list[Any] | dict[str, Any], method: str) -> RpcTransaction:
    """The transaction object of eth_signTransaction or eth_sendTransaction ([transaction])."""
    values = positional(params, method, ("transaction",), required=1)
    raw = values[0]
    if not isinstance(raw, dict):
        raise InvalidInput("must be a transaction object", field="params[0]")
    unknown = sorted(set(raw) - _ALLOWED_TRANSACTION_FIELDS)
    if unknown:
        raise InvalidInput(
            "is not a transaction field custody signs; allowed: "
            + ", ".join(sorted(_ALLOWED_TRANSACTION_FIELDS)),
            field=unknown[0],
        )
    if raw.get("from") is None:
        raise InvalidInput("is required: it names the key that signs", field="from")
    sender = address(raw["from"], "from")
    fields: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for name, value in raw.items():
        # JSON-RPC tools send null for what they leave to the node; null means "not given".
        if name == "from" or value is None:
            continue
        custody_name = _TRANSACTION_FIELD_NAMES[name]
        if custody_name in fields and not _same_value(custody_name, fields[custody_name], value):
            raise InvalidInput(
                f"differs from {given_as[custody_name]}; give one of them, or the same value in both",
                field=name,
            )
        fields[custody_name] = value
        given_as[custody_name] = name
    return RpcTransaction(sender=sender, fields=fields)


def _same_value(name: str, first: Any, second: Any) -> bool:
    if name == "data":
        return bool(hex_data(first, "data") == hex_data(second, "input"))
    return parse_integer(first, name, minimum=0, maximum=2**256 - 1) == parse_integer(
        second, name, minimum=0, maximum=2**256 - 1
    )


def request_id(params: list[Any] | dict[str, Any], method: str, *, with_timeout: bool) -> tuple[str, float]:
    """The request id of custody_getRequest ([request_id]) or custody_waitRequest ([request_id,
    timeout_seconds]); the timeout is 0 when not given."""
    names = ("request_id", "timeout_seconds") if with_timeout else ("request_id",)
    values = positional(params, method, names, required=1)
    if not isinstance(values[0], str):
        raise InvalidInput("must be a request id string", field="params[0]")
    timeout = 0.0
    if with_timeout and len(values) > 1:
        raw = values[1]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 10**6:
            raise InvalidInput("must be a number of seconds, at least 0", field="params[1]")
        timeout = float(raw)
    return values[0], timeout

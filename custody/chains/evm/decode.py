"""Calldata decoding for approvers: what a transaction will call, in words a person can check.

The functions known are those of custody/chains/evm/knowledge/functions.json (token transfers and allowances,
NFT operators, Permit2, Safe, Governor, TimelockController, ownership, roles, upgrades), the same knowledge the
intent decoder (custody/chains/evm/intents/) uses. Anything else is shown raw and marked unknown, because a
wrong guess about what a transaction does is worse than none.

Decoding is strict: the calldata must be exactly the canonical ABI encoding of the decoded arguments (checked
by encoding them again), so trailing bytes, non-zero padding or odd offsets never hide behind a tidy summary.
Calldata that a known selector cannot explain is reported as undecodable, never guessed at. The calls that a
Safe transaction and a MultiSend batch make are decoded to a bounded depth and count, so a hostile payload
cannot make the approver's CLI do unbounded work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from custody.chains.evm.intents.abi import strict_abi_decode, value_text
from custody.chains.evm.intents.common import MAX_BATCH_CALLS, MAX_NESTING_DEPTH
from custody.chains.evm.knowledge import FUNCTIONS_BY_SELECTOR, KNOWN_FUNCTIONS, SELECTOR_BYTES
from custody.chains.evm.values import MAX_PAYLOAD_BYTES
from custody.domain.errors import InvalidInput

__all__ = ["MAX_NESTING_DEPTH", "SELECTOR_BYTES"]  # re-exported; everything defined here is public as usual

# A MultiSend batch with more calls than this is not decoded call by call: no approver reviews that many.
MAX_MULTISEND_CALLS = MAX_BATCH_CALLS

_WORD_BYTES = 32
_ADDRESS_BYTES = 20
# A MultiSend entry: operation (1 byte), to (20), value (32), data length (32), then the data itself.
_MULTISEND_HEADER_BYTES = 1 + _ADDRESS_BYTES + _WORD_BYTES + _WORD_BYTES

UNLIMITED_AMOUNT = 2**256 - 1

SAFE_OPERATIONS = {0: "CALL", 1: "DELEGATECALL"}


@dataclass(frozen=True)
class DecodedArgument:
    name: str
    abi_type: str
    # Addresses EIP-55 checksummed, integers in decimal, bytes as 0x hex, booleans as "true"/"false".
    value: str


@dataclass(frozen=True)
class InnerCall:
    """A call made on the outer call's behalf, e.g. by a Safe executing a transaction."""

    operation: str  # "CALL", "DELEGATECALL" or "UNKNOWN(n)"
    value: int  # wei sent with the call
    call: DecodedCall


@dataclass(frozen=True)
class DecodedCall:
    """What calldata ``data`` sent to ``to`` does, as far as custody can tell.

    ``known`` is true when the selector belongs to a function custody knows (or there is no calldata at all:
    a plain ether transfer); ``problem`` is set when the calldata could not be decoded as that function, or
    nested calls were not decoded, and then the approver has to check the raw bytes.
    """

    to: str | None
    data: bytes
    selector: str | None  # "0x" and 8 hex digits; None when the calldata is empty
    function: str | None  # e.g. "transfer(address,uint256)"; None when unknown or empty
    known: bool
    arguments: tuple[DecodedArgument, ...] = ()
    calls: tuple[InnerCall, ...] = ()
    problem: str | None = None

    @property
    def is_plain_transfer(self) -> bool:
        return not self.data

    @property
    def name(self) -> str | None:
        """The function name without its parameter types, e.g. "transfer"."""
        return self.function.split("(", 1)[0] if self.function else None


_EXEC_TRANSACTION = (
    "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)"
)
_MULTISEND = "multiSend(bytes)"


def known_function_signatures() -> tuple[str, ...]:
    """The signatures of every function ``decode_calldata`` decodes."""
    return tuple(function.signature for function in KNOWN_FUNCTIONS)


def safe_operation_name(operation: int) -> str:
    return SAFE_OPERATIONS.get(operation, f"UNKNOWN({operation})")


def decode_calldata(data: bytes, to: str | None) -> DecodedCall:
    """Decode ``data`` sent to ``to`` for display; raises InvalidInput only for calldata over the size limit."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            f"calldata of {len(data)} bytes is larger than the limit of {MAX_PAYLOAD_BYTES} bytes",
            field="data",
        )
    return _decode(data, to, depth=0)


def _decode(data: bytes, to: str | None, depth: int) -> DecodedCall:
    if not data:
        return DecodedCall(to=to, data=data, selector=None, function=None, known=True)
    if len(data) < SELECTOR_BYTES:
        return DecodedCall(
            to=to,
            data=data,
            selector=None,
            function=None,
            known=False,
            problem=f"the calldata is {len(data)} bytes, shorter than a 4-byte function selector",
        )
    selector = "0x" + data[:SELECTOR_BYTES].hex()
    function = FUNCTIONS_BY_SELECTOR.get(data[:SELECTOR_BYTES])
    if function is None:
        return DecodedCall(to=to, data=data, selector=selector, function=None, known=False)
    undecodable = DecodedCall(to=to, data=data, selector=selector, function=function.signature, known=True)
    values = strict_abi_decode(function.parameter_types, data[SELECTOR_BYTES:])
    if values is None:
        return _with_problem(
            undecodable,
            f"the calldata is not a valid encoding of {function.signature}; check the raw bytes yourself",
        )
    arguments = tuple(
        DecodedArgument(
            name=parameter.name, abi_type=parameter.abi_type, value=value_text(parameter.abi_type, value)
        )
        for parameter, value in zip(function.parameters, values, strict=True)
    )
    decoded = DecodedCall(
        to=to, data=data, selector=selector, function=function.signature, known=True, arguments=arguments
    )
    if function.signature == _EXEC_TRANSACTION:
        return _with_inner_calls(decoded, lambda: [_safe_inner_call(values, depth)], depth)
    if function.signature == _MULTISEND:
        return _with_inner_calls(decoded, lambda: _multisend_inner_calls(values[0], depth), depth)
    return decoded


def _with_problem(call: DecodedCall, problem: str) -> DecodedCall:
    return DecodedCall(
        to=call.to,
        data=call.data,
        selector=call.selector,
        function=call.function,
        known=call.known,
        arguments=call.arguments,
        calls=call.calls,
        problem=problem,
    )


def _with_inner_calls(
    call: DecodedCall, inner_calls: Callable[[], Iterable[InnerCall]], depth: int
) -> DecodedCall:
    if depth + 1 > MAX_NESTING_DEPTH:
        return _with_problem(
            call, f"calls nested deeper than {MAX_NESTING_DEPTH} levels are not decoded; check them yourself"
        )
    try:
        calls = tuple(inner_calls())
    except _MalformedBatch as error:
        return _with_problem(call, str(error))
    return DecodedCall(
        to=call.to,
        data=call.data,
        selector=call.selector,
        function=call.function,
        known=call.known,
        arguments=call.arguments,
        calls=calls,
    )


def _safe_inner_call(values: Sequence[Any], depth: int) -> InnerCall:
    to, value, data, operation = values[0], values[1], values[2], values[3]
    return InnerCall(
        operation=safe_operation_name(operation),
        value=value,
        call=_decode(bytes(data), to_checksum_address(to), depth + 1),
    )


class _MalformedBatch(Exception):
    """A MultiSend batch whose packed encoding does not add up; the message says where."""


def _multisend_inner_calls(packed: bytes, depth: int) -> list[InnerCall]:
    """The calls of a MultiSend batch: each one packed as operation, to, value, data length, data."""
    calls: list[InnerCall] = []
    offset = 0
    while offset < len(packed):
        if len(calls) == MAX_MULTISEND_CALLS:
            raise _MalformedBatch(
                f"the batch has more than {MAX_MULTISEND_CALLS} calls, too many to show; check it yourself"
            )
        number = len(calls) + 1
        if len(packed) - offset < _MULTISEND_HEADER_BYTES:
            raise _MalformedBatch(f"call {number} of the batch is cut short; check the raw bytes yourself")
        operation = packed[offset]
        to = to_checksum_address(packed[offset + 1 : offset + 1 + _ADDRESS_BYTES])
        value_start = offset + 1 + _ADDRESS_BYTES
        value = int.from_bytes(packed[value_start : value_start + _WORD_BYTES], "big")
        length_start = value_start + _WORD_BYTES
        length = int.from_bytes(packed[length_start : length_start + _WORD_BYTES], "big")
        data_start = length_start + _WORD_BYTES
        if length > len(packed) - data_start:
            raise _MalformedBatch(
                f"call {number} of the batch claims {length} bytes of calldata but only"
                f" {len(packed) - data_start} remain; check the raw bytes yourself"
            )
        data = packed[data_start : data_start + length]
        calls.append(
            InnerCall(
                operation=safe_operation_name(operation), value=value, call=_decode(data, to, depth + 1)
            )
        )
        offset = data_start + length
    return calls

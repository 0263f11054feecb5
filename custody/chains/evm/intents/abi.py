"""Strict ABI decoding of calldata arguments, and their display as labelled fields.

Decoding accepts only the canonical encoding: the values are encoded again and must give back the same bytes,
so trailing bytes, non-zero padding and odd offsets never hide behind a tidy reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_utils.address import to_checksum_address

from custody.chains.evm.knowledge import Parameter

Field = tuple[str, str]


def strict_abi_decode(types: Sequence[str], encoded: bytes) -> tuple[Any, ...] | None:
    """The decoded values, or None unless ``encoded`` is exactly their canonical ABI encoding."""
    try:
        values = abi_decode(list(types), encoded)
        canonical = abi_encode(list(types), values)
    except (DecodingError, EncodingError, OverflowError, ValueError, TypeError):
        return None
    return tuple(values) if canonical == encoded else None


def atomic_text(abi_type: str, value: Any) -> str:
    """One decoded atomic value as approvers read it: EIP-55 addresses, decimal integers, 0x hex bytes."""
    if abi_type == "address":
        return str(to_checksum_address(value))
    if abi_type == "bool":
        return "true" if value else "false"
    if abi_type == "string":
        return str(value)
    if abi_type.startswith("bytes"):
        return "0x" + bytes(value).hex()
    return str(int(value))


def value_text(abi_type: str, value: Any) -> str:
    """A decoded value of any ABI type on one line: arrays as [a, b], tuples as (a, b)."""
    if abi_type.endswith("]"):
        element = abi_type[: abi_type.rindex("[")]
        return "[" + ", ".join(value_text(element, item) for item in value) + "]"
    if abi_type.startswith("("):
        return (
            "("
            + ", ".join(value_text(t, v) for t, v in zip(_tuple_types(abi_type), value, strict=True))
            + ")"
        )
    return atomic_text(abi_type, value)


def _tuple_types(abi_type: str) -> list[str]:
    """The member types of a tuple type such as ``(address,(uint8,bytes)[])``."""
    inner = abi_type[1:-1]
    types, depth, start = [], 0, 0
    for index, character in enumerate(inner):
        if character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
        elif character == "," and depth == 0:
            types.append(inner[start:index])
            start = index + 1
    if inner:
        types.append(inner[start:])
    return types


def argument_fields(parameters: Sequence[Parameter], values: Sequence[Any]) -> list[Field]:
    """Every decoded argument as (label, value) fields, nested values flattened with their path."""
    fields: list[Field] = []
    for parameter, value in zip(parameters, values, strict=True):
        _flatten(parameter.label, parameter, parameter.type, value, fields)
    return fields


def _flatten(label: str, parameter: Parameter, json_type: str, value: Any, fields: list[Field]) -> None:
    if json_type.endswith("]"):
        if not value:
            fields.append((label, "[] (none)"))
        element = json_type[: json_type.rindex("[")]
        for index, item in enumerate(value):
            _flatten(f"{label}[{index}]", parameter, element, item, fields)
    elif json_type == "tuple":
        for component, item in zip(parameter.components, value, strict=True):
            _flatten(f"{label}.{component.label}", component, component.type, item, fields)
    else:
        fields.append((label, atomic_text(json_type, value)))

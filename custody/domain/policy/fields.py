"""Readers for the values policy documents share (lists of names, wei amounts, addresses) and the words their
error messages use, so every field accepts one spelling and every message reads alike.

Each reader reports a problem through ``fail(field, problem)``, which the caller builds to name where the
field is (the file, and the rule or approver), so a reader never needs to know its context.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from custody.domain.errors import ConfigurationError, InvalidInput
from custody.domain.evm_notation import checksum_address, format_ether

# Transactions encode chain ids and values as 256-bit unsigned integers, so nothing outside that range can
# ever be a request's chain id or value.
UINT256_MAX = 2**256 - 1

_DECIMAL_PATTERN = re.compile(r"-?[0-9]+")
# A decimal string longer than this cannot be below 2**256 (78 digits), and refusing it early keeps int()
# from being handed arbitrarily long input.
_MAX_DECIMAL_DIGITS = 100


class FailFactory(Protocol):
    """Builds the error for a problem with ``field``; the message names where the field is."""

    def __call__(self, field: str, problem: str) -> ConfigurationError: ...


def is_int(value: Any) -> bool:
    # TOML booleans arrive as Python bools, which are ints; a policy that says `version = true` is a mistake.
    return isinstance(value, int) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def quoted_list(items: Sequence[str]) -> str:
    return ", ".join(repr(item) for item in items)


def wei_text(wei: int) -> str:
    return f"{wei} wei ({format_ether(wei)} ether)"


def parse_string_set(value: Any, field: str, what: str, fail: FailFactory) -> frozenset[str]:
    """A non-empty list of distinct strings, read from the field ``field``."""
    if not isinstance(value, list):
        raise fail(field, f"must be a list of {what}, got {type_name(value)}")
    if not value:
        raise fail(field, f"must list at least one of the {what}, got an empty list")
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise fail(field, f"must be a list of {what} (strings), got {item!r}")
        if item in seen:
            raise fail(field, f"lists {item!r} twice")
        seen.add(item)
    return frozenset(seen)


def parse_wei(value: Any, field: str, fail: FailFactory) -> int:
    # Accepting decimal strings matters because TOML integers stop at 2**63-1 (about 9.2 ether), which is
    # below many sensible caps.
    if is_int(value):
        amount = int(value)
    elif isinstance(value, str):
        if len(value) > _MAX_DECIMAL_DIGITS or not _DECIMAL_PATTERN.fullmatch(value):
            raise fail(field, f"must be an integer or a string of decimal digits, got {value[:40]!r}")
        amount = int(value)
    else:
        raise fail(field, f"must be an integer or a string of decimal digits, got {value!r}")
    if not 0 <= amount <= UINT256_MAX:
        raise fail(field, f"must be between 0 and 2**256-1, got {amount}")
    return amount


def parse_address(value: Any, field: str, fail: FailFactory) -> str:
    """An address in EIP-55 checksummed form; a mixed-case spelling must carry the right checksum."""
    try:
        return checksum_address(value, field)
    except InvalidInput as error:
        # checksum_address names the field itself; the policy's message names the rule before it.
        raise fail(field, error.message.removeprefix(f"{field}: ")) from None

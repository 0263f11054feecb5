"""How Ethereum writes addresses and amounts: strict EIP-55 address parsing and exact ether and gwei text.

The policy needs both (allowlisted addresses, fee caps an approver reads) and the chain adapters need them to
parse payloads and summarize them. They live in the domain so the policy does not import the chain adapters:
``custody.chains.evm.address`` and ``custody.chains.evm.values`` re-export them for the adapters' callers.
Nothing here does I/O.
"""

from __future__ import annotations

import re

from eth_utils.address import to_checksum_address

from custody.domain.errors import InvalidInput

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

_WEI_PER_ETHER = 10**18
_WEI_PER_GWEI = 10**9


def checksum_address(value: object, field: str) -> str:
    """Parse a ``0x`` address strictly and return it EIP-55 checksummed.

    All-lowercase and all-uppercase hex carry no checksum and are accepted as such; any mixed-case spelling
    must match its EIP-55 checksum exactly, because a mistyped mixed-case address is the error EIP-55 exists
    to catch.
    """
    if not isinstance(value, str):
        raise InvalidInput("must be a 0x-prefixed address string", field=field)
    if not _ADDRESS.fullmatch(value):
        raise InvalidInput(
            f"must be 0x followed by 40 hex digits (20 bytes), got {value[:50]!r}", field=field
        )
    checksummed = to_checksum_address(value)
    digits = value[2:]
    if digits not in (digits.lower(), digits.upper()) and value != checksummed:
        raise InvalidInput(f"has a wrong EIP-55 checksum: {value} (did you mean {checksummed}?)", field=field)
    return checksummed


def format_ether(wei: int) -> str:
    """Exact decimal ether for a wei amount, without exponent or trailing zeros (``1500000000000000000`` ->
    ``"1.5"``), because approvers compare these digits by eye."""
    return _exact_decimal(wei, _WEI_PER_ETHER, 18)


def format_gwei(wei: int) -> str:
    """Exact decimal gwei for a wei amount, as ``format_ether`` does ether (``1500000000`` -> ``"1.5"``)."""
    return _exact_decimal(wei, _WEI_PER_GWEI, 9)


def _exact_decimal(wei: int, unit: int, digits: int) -> str:
    whole, fraction = divmod(wei, unit)
    if fraction == 0:
        return str(whole)
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")

"""Ethereum addresses: derivation from a public key and strict EIP-55 parsing."""

from __future__ import annotations

import re

from cryptography.hazmat.primitives.asymmetric import ec
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from custody.domain.errors import InvalidInput

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_UNCOMPRESSED_POINT_LENGTH = 65


def address_from_public_point(point: bytes) -> str:
    """The EIP-55 address of an uncompressed secp256k1 point (65 bytes, ``0x04 || x || y``).

    The point is checked to lie on the curve, so a corrupted public key read back from an HSM or a database
    cannot silently yield an address nobody controls.
    """
    if len(point) != _UNCOMPRESSED_POINT_LENGTH or point[0] != 0x04:
        raise InvalidInput(
            "must be a 65-byte uncompressed secp256k1 point starting with 0x04", field="public_key"
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), point)
    except ValueError:
        raise InvalidInput("is not a point on the secp256k1 curve", field="public_key") from None
    return to_checksum_address(keccak(point[1:])[-20:])


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

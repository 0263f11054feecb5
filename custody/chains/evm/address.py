"""Ethereum addresses: derivation from a public key and strict EIP-55 parsing."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from custody.domain.errors import InvalidInput

# The policy parses addresses too, and the domain must not import the chain adapters, so strict parsing lives
# in the domain and is re-exported here for the adapters and their callers.
from custody.domain.evm_notation import checksum_address

__all__ = ["address_from_public_point", "checksum_address"]

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

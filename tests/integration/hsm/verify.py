"""Independent verification of raw ECDSA signatures from the HSM, with eth-account and eth-utils only.

custody's own chain code (low-s normalization, recovery id) is not used here on purpose: these helpers are
the second path that checks the adapter's output.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

# The order of the secp256k1 group (SEC 2, section 2.4.1).
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def address_of_point(point: bytes) -> str:
    assert len(point) == 65 and point[0] == 0x04
    return to_checksum_address(keccak(point[1:])[-20:])


@dataclass(frozen=True)
class Verified:
    recovery_id: int
    s_was_high: bool


def verify_raw_signature(digest: bytes, signature: bytes, point: bytes) -> Verified:
    """Assert that r||s over ``digest`` recovers to the address of ``point`` for recovery id 0 or 1."""
    assert len(signature) == 64, f"expected 64 bytes r||s, got {len(signature)}"
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    assert 0 < r < SECP256K1_ORDER and 0 < s < SECP256K1_ORDER
    s_was_high = s > SECP256K1_ORDER // 2
    low_s = min(s, SECP256K1_ORDER - s)
    expected = address_of_point(point)
    for recovery_id in (0, 1):
        if Account._recover_hash(digest, vrs=(27 + recovery_id, r, low_s)) == expected:
            return Verified(recovery_id=recovery_id, s_was_high=s_was_high)
    raise AssertionError(
        f"signature {signature.hex()} does not recover to {expected} with either recovery id"
    )

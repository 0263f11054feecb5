"""Turning an HSM's raw ECDSA output into a recoverable Ethereum signature.

CKM_ECDSA returns ``r || s`` with no recovery id, and ``s`` may lie in the upper half of the group order.
Ethereum refuses high ``s`` (EIP-2), so ``s`` is normalized, and the y-parity is found by trying both values
against the key's known public point. If neither recovers the key, the signature is not over this digest by
this key, and nothing may leave the daemon.
"""

from __future__ import annotations

from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature

from custody.domain.errors import InternalError

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2


class SignatureMismatch(InternalError):
    """The HSM's signature does not verify against the key's public point for this digest."""


def recoverable_signature(rs: bytes, digest: bytes, public_point: bytes) -> tuple[int, int, int]:
    """Return ``(r, s, y_parity)`` with low ``s`` for the HSM output ``rs`` over ``digest``.

    Raises SignatureMismatch when ``rs`` is malformed or recovers to a key other than ``public_point``.
    """
    if len(rs) != 64 or len(digest) != 32 or len(public_point) != 65 or public_point[0] != 0x04:
        raise SignatureMismatch("the HSM returned a signature of unexpected shape")
    r = int.from_bytes(rs[:32], "big")
    s = int.from_bytes(rs[32:], "big")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise SignatureMismatch("the HSM returned a signature with r or s out of range")
    if s > SECP256K1_HALF_N:
        # (r, n - s) is the same signature with the point's y mirrored; Ethereum accepts only this form.
        s = SECP256K1_N - s
    expected = public_point[1:]
    for y_parity in (0, 1):
        try:
            recovered = Signature(vrs=(y_parity, r, s)).recover_public_key_from_msg_hash(digest)
        except BadSignature:
            continue
        if recovered.to_bytes() == expected:
            return r, s, y_parity
    raise SignatureMismatch("the HSM signature does not match the key's public key for this digest")


def rsv_signature(r: int, s: int, y_parity: int) -> bytes:
    """The 65-byte ``r || s || v`` signature with v = 27 + y_parity, the form ecrecover and wallets expect for
    typed data and messages."""
    if y_parity not in (0, 1):
        raise InternalError(f"a y-parity must be 0 or 1, got {y_parity}")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + y_parity])

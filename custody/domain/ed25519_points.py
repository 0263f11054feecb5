"""Ed25519 point arithmetic (RFC 8032), only to tell whether 32 bytes are a usable approver public key.

Approvers' public keys come from the policy document, and a bad one is worse than useless: a key that is not
the encoding of a curve point can verify nothing, and a key of small order (the identity, for one) lets anyone
forge "signatures" that verify, which would let anyone approve as that approver. cryptography's
``Ed25519PublicKey.from_public_bytes`` accepts any 32 bytes, so the policy parser decodes the point here
itself and checks that it lies in the curve's prime-order subgroup. This is pure integer arithmetic, without
I/O, so the domain can refuse such a key while it reads the document. It checks public data only; no secret
ever passes through it, so its running time need not be constant.
"""

from __future__ import annotations

_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = (0, 1)


def ed25519_public_key_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a usable Ed25519 public key, or None when it is one.

    Usable means a canonical encoding of a point on the curve that lies in the prime-order subgroup and is not
    the identity, which is what every honestly generated key is.
    """
    if len(raw) != 32:
        return f"an Ed25519 public key is 32 bytes, got {len(raw)}"
    point = _decode_point(raw)
    if point is None:
        return "is not the encoding of a point on the Ed25519 curve"
    if point == _IDENTITY or _multiply(_GROUP_ORDER, point) != _IDENTITY:
        return "is a weak Ed25519 key (of low order or outside the curve's prime-order group)"
    return None


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x_is_odd = raw[31] >> 7
    if y >= _P:
        return None
    x_squared = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    if x_squared == 0:
        return None if x_is_odd else (0, y)
    x = pow(x_squared, (_P + 3) // 8, _P)
    if (x * x - x_squared) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - x_squared) % _P:
        return None
    if x & 1 != x_is_odd:
        x = _P - x
    return x, y


def _add(first: tuple[int, int], second: tuple[int, int]) -> tuple[int, int]:
    # The affine twisted Edwards addition law is complete on Ed25519 (d is not a square), so no special cases.
    (x1, y1), (x2, y2) = first, second
    cross = _D * x1 * x2 * y1 * y2 % _P
    x = (x1 * y2 + x2 * y1) * pow(1 + cross, -1, _P) % _P
    y = (y1 * y2 + x1 * x2) * pow(1 - cross, -1, _P) % _P
    return x, y


def _multiply(scalar: int, point: tuple[int, int]) -> tuple[int, int]:
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result

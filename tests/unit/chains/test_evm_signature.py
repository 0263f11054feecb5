"""Low-s normalization, y-parity by trial, address derivation and EIP-55 parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_utils import keccak

from custody.chains.evm import (
    PayloadKind,
    SignatureMismatch,
    address_from_public_point,
    checksum_address,
    parse_payload,
    recoverable_signature,
)
from custody.chains.evm.signature import SECP256K1_HALF_N, SECP256K1_N
from custody.domain.errors import InternalError, InvalidInput

VECTORS = Path(__file__).parents[2] / "vectors"
EIP55 = json.loads((VECTORS / "eip55.json").read_text())


def _key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256K1())
    return key, key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _raw_sign(key: ec.EllipticCurvePrivateKey, digest: bytes) -> tuple[int, int]:
    r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))))
    return r, s


def _rs(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize("force_high_s", [False, True], ids=["as-signed", "forced-high-s"])
def test_signature_is_normalized_and_recovers_the_address(force_high_s: bool) -> None:
    for index in range(8):
        key, point = _key()
        digest = keccak(f"digest {index}".encode())
        r, s = _raw_sign(key, digest)
        low_s = min(s, SECP256K1_N - s)
        given_s = SECP256K1_N - low_s if force_high_s else s
        got_r, got_s, y_parity = recoverable_signature(_rs(r, given_s), digest, point)
        assert got_r == r
        assert got_s == low_s <= SECP256K1_HALF_N
        assert y_parity in (0, 1)
        recovered = Account._recover_hash(digest, vrs=(27 + y_parity, got_r, got_s))
        assert recovered == address_from_public_point(point)


def test_y_parity_takes_both_values() -> None:
    parities = set()
    for index in range(40):
        key, point = _key()
        digest = keccak(index.to_bytes(4, "big"))
        r, s = _raw_sign(key, digest)
        parities.add(recoverable_signature(_rs(r, s), digest, point)[2])
    assert parities == {0, 1}


def test_signed_transaction_through_the_hsm_path_recovers() -> None:
    key, point = _key()
    tx = {
        "chainId": 1,
        "nonce": 0,
        "to": "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "gas": 21000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "value": 1,
    }
    parsed = parse_payload(PayloadKind.TRANSACTION, json.dumps(tx).encode())
    r, s = _raw_sign(key, parsed.digest)
    result = parsed.assemble(
        *recoverable_signature(_rs(r, SECP256K1_N - min(s, SECP256K1_N - s)), parsed.digest, point)
    )
    assert result.signed_tx is not None
    assert Account.recover_transaction(result.signed_tx) == address_from_public_point(point)


def test_wrong_public_key_raises_signature_mismatch() -> None:
    key, _ = _key()
    _, other_point = _key()
    digest = keccak(b"payload")
    r, s = _raw_sign(key, digest)
    with pytest.raises(SignatureMismatch):
        recoverable_signature(_rs(r, s), digest, other_point)
    assert issubclass(SignatureMismatch, InternalError)


def test_wrong_digest_raises_signature_mismatch() -> None:
    key, point = _key()
    r, s = _raw_sign(key, keccak(b"signed this"))
    with pytest.raises(SignatureMismatch):
        recoverable_signature(_rs(r, s), keccak(b"but asked for this"), point)


@pytest.mark.parametrize(
    "rs",
    [b"\x01" * 63, _rs(0, 1), _rs(1, 0), _rs(SECP256K1_N, 1), _rs(1, SECP256K1_N)],
    ids=["short", "r-zero", "s-zero", "r-n", "s-n"],
)
def test_malformed_hsm_output_raises_signature_mismatch(rs: bytes) -> None:
    _, point = _key()
    with pytest.raises(SignatureMismatch):
        recoverable_signature(rs, keccak(b"x"), point)


def test_address_from_public_point_matches_eth_account() -> None:
    account = Account.from_key("0x" + "46" * 32)
    private = ec.derive_private_key(int("46" * 32, 16), ec.SECP256K1())
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert address_from_public_point(point) == account.address == "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"


@pytest.mark.parametrize(
    "point",
    [b"\x04" + b"\x00" * 64, b"\x04" + b"\x01" * 63, b"\x02" + b"\x01" * 64],
    ids=["not-on-curve", "short", "compressed-prefix"],
)
def test_bad_public_points_are_refused(point: bytes) -> None:
    with pytest.raises(InvalidInput) as refused:
        address_from_public_point(point)
    assert refused.value.field == "public_key"


@pytest.mark.parametrize("address", EIP55["normal"] + EIP55["all_caps"] + EIP55["all_lower"])
def test_eip55_valid_addresses(address: str) -> None:
    assert checksum_address(address, "to") == address
    assert checksum_address(address.lower(), "to") == address
    assert checksum_address("0x" + address[2:].upper(), "to") == address


@pytest.mark.parametrize("address", EIP55["wrong_checksum"])
def test_eip55_wrong_checksum_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match="checksum") as refused:
        checksum_address(address, "message.wallet")
    assert refused.value.field == "message.wallet"


@pytest.mark.parametrize(
    "address",
    ["0x" + "ab" * 19, "0x" + "ab" * 21, "ab" * 20, "0X" + "ab" * 20, "0x" + "zz" * 20, "", None, 5],
)
def test_malformed_addresses_are_refused(address: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        checksum_address(address, "to")
    assert refused.value.field == "to"

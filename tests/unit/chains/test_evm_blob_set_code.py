"""Blob (EIP-4844) and set-code (EIP-7702) transactions and EIP-7702 authorizations: known answers from
eth-account, digests recomputed by hand from the EIPs, every signature recovered independently, and refusals
naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak, to_canonical_address

from custody.chains.evm import Authorization, PayloadKind, Transaction, parse_payload
from custody.chains.evm.signature import SECP256K1_HALF_N
from custody.chains.evm.transactions import GAS_PER_BLOB, MAX_BLOBS_PER_TRANSACTION, PER_AUTHORIZATION_GAS
from custody.domain.errors import InvalidInput
from tests import evm_payloads as payloads

VECTORS = Path(__file__).parents[2] / "vectors"
BLOBS = json.loads((VECTORS / "signed_blob_transactions.json").read_text())
AUTHORIZATIONS = json.loads((VECTORS / "eip7702_authorizations.json").read_text())
INVALID = json.loads((VECTORS / "invalid_blob_set_code_transactions.json").read_text())

# Keys made up for these tests; each signs as an authority or a sender.
SENDER_KEY = "0x" + "11" * 32
AUTHORITY_KEY = payloads.OUTSIDE_AUTHORITY_KEY
DELEGATE = payloads.EXAMPLE_DELEGATE


def _int(text: str | int) -> int:
    return text if isinstance(text, int) else int(text, 0)


def _parse(transaction: dict[str, Any]) -> Transaction:
    parsed = parse_payload(PayloadKind.TRANSACTION, json.dumps(transaction).encode())
    assert isinstance(parsed, Transaction)
    return parsed


def _sign(digest: bytes, private_key: str) -> tuple[int, int, int]:
    """(r, s, y_parity) of a signature over ``digest``: eth-keys signs, independently of custody's HSM path."""
    signature = keys.PrivateKey(bytes.fromhex(private_key[2:])).sign_msg_hash(digest)
    return signature.r, signature.s, signature.v


def _recovered(digest: bytes, r: int, s: int, y_parity: int) -> str:
    return Account._recover_hash(digest, vrs=(27 + y_parity, r, s))


# Blob transactions.


@pytest.mark.parametrize("vector", BLOBS["vectors"], ids=[v["name"] for v in BLOBS["vectors"]])
def test_blob_transaction_hash_and_signed_bytes_match_eth_account_vectors(vector: dict[str, Any]) -> None:
    parsed = _parse(vector["transaction"])
    assert parsed.transaction_type == "eip4844"
    assert parsed.digest == bytes.fromhex(vector["signing_hash"][2:])

    signature = vector["signature"]
    r, s, y_parity = _int(signature["r"]), _int(signature["s"]), signature["y_parity"]
    result = parsed.assemble(r, s, y_parity)
    # The signed output is the bare transaction (0x03 || rlp(...)), never the network wrapper with blobs.
    assert result.signed_tx == bytes.fromhex(vector["signed_tx"][2:])
    assert result.signed_tx[0] == 3
    assert result.tx_hash == keccak(result.signed_tx)
    assert s <= SECP256K1_HALF_N
    assert Account.recover_transaction(result.signed_tx) == _recovered(parsed.digest, r, s, y_parity)


@pytest.mark.parametrize("vector", BLOBS["vectors"], ids=[v["name"] for v in BLOBS["vectors"]])
def test_blob_transaction_canonical_form_parses_to_the_same_digest(vector: dict[str, Any]) -> None:
    parsed = _parse(vector["transaction"])
    again = parse_payload(PayloadKind.TRANSACTION, parsed.canonical)
    assert again.digest == parsed.digest
    assert again.canonical == parsed.canonical


def test_blob_transaction_digest_is_the_eip_4844_preimage_recomputed_by_hand() -> None:
    transaction = BLOBS["vectors"][1]["transaction"]
    parsed = _parse(transaction)
    access_list = [
        [to_canonical_address(entry["address"]), [bytes.fromhex(key[2:]) for key in entry["storageKeys"]]]
        for entry in transaction["accessList"]
    ]
    # EIP-4844: keccak256(0x03 || rlp([chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas, gas_limit,
    # to, value, data, access_list, max_fee_per_blob_gas, blob_versioned_hashes])).
    preimage = rlp.encode(
        [
            _int(transaction["chainId"]),
            _int(transaction["nonce"]),
            _int(transaction["maxPriorityFeePerGas"]),
            _int(transaction["maxFeePerGas"]),
            _int(transaction["gas"]),
            to_canonical_address(transaction["to"]),
            _int(transaction["value"]),
            bytes.fromhex(transaction["data"][2:]),
            access_list,
            _int(transaction["maxFeePerBlobGas"]),
            [bytes.fromhex(blob_hash[2:]) for blob_hash in transaction["blobVersionedHashes"]],
        ]
    )
    assert parsed.digest == keccak(b"\x03" + preimage)


def test_blob_transaction_signed_by_a_known_key_matches_eth_account() -> None:
    transaction = {
        **BLOBS["vectors"][0]["transaction"],
        "blobVersionedHashes": ["0x01" + "ab" * 31, "0x01" + "cd" * 31],
    }
    parsed = _parse(transaction)
    r, s, y_parity = _sign(parsed.digest, SENDER_KEY)
    result = parsed.assemble(r, s, y_parity)
    reference = Account.sign_transaction(transaction, SENDER_KEY)
    assert result.signed_tx == bytes(reference.raw_transaction)
    assert Account.recover_transaction(result.signed_tx) == Account.from_key(SENDER_KEY).address


def test_max_fee_includes_the_blob_gas_at_its_highest_price() -> None:
    transaction = {**BLOBS["vectors"][0]["transaction"], "blobVersionedHashes": ["0x01" + "ab" * 31] * 3}
    parsed = _parse(transaction)
    assert parsed.blob_gas == 3 * 2**17 == 3 * GAS_PER_BLOB
    assert parsed.max_fee_wei == 100000 * 2000000000 + 3 * 2**17 * 2000000000
    summary = parsed.summary()
    assert summary["max_fee_wei"] == str(parsed.max_fee_wei)
    assert summary["blob_count"] == "3"
    assert summary["blob_versioned_hashes[2]"] == "0x01" + "ab" * 31


def test_blob_transaction_with_the_most_blobs_a_block_holds_is_accepted() -> None:
    hashes = ["0x01" + f"{index:02x}" * 31 for index in range(MAX_BLOBS_PER_TRANSACTION)]
    parsed = _parse({**BLOBS["vectors"][0]["transaction"], "blobVersionedHashes": hashes})
    assert len(parsed.blob_versioned_hashes) == MAX_BLOBS_PER_TRANSACTION == 9


def test_blob_fields_imply_type_3_as_in_eth_account() -> None:
    transaction = dict(BLOBS["vectors"][0]["transaction"])
    del transaction["type"]
    assert _parse(transaction).transaction_type == "eip4844"


# Authorizations.


@pytest.mark.parametrize(
    "vector", AUTHORIZATIONS["vectors"], ids=[v["name"] for v in AUTHORIZATIONS["vectors"]]
)
def test_authorization_digest_and_signature_match_eth_account(vector: dict[str, Any]) -> None:
    parsed = parse_payload(PayloadKind.AUTHORIZATION, json.dumps(vector["authorization"]).encode())
    assert isinstance(parsed, Authorization)
    assert parsed.kind is PayloadKind.AUTHORIZATION
    assert parsed.digest == bytes.fromhex(vector["authorization_hash"][2:])
    # EIP-7702, recomputed by hand: keccak256(0x05 || rlp([chain_id, address, nonce])).
    authorization = vector["authorization"]
    preimage = rlp.encode(
        [authorization["chainId"], to_canonical_address(authorization["address"]), authorization["nonce"]]
    )
    assert parsed.digest == keccak(b"\x05" + preimage)

    r, s, y_parity = _sign(parsed.digest, vector["signer_private_key"])
    assert (r, s, y_parity) == (int(vector["r"]), int(vector["s"]), vector["y_parity"])
    result = parsed.assemble(r, s, y_parity)
    assert result.signature == bytes.fromhex(vector["signature"][2:])
    assert result.signed_tx is None

    reference = Account.sign_authorization(authorization, vector["signer_private_key"])
    assert (reference.y_parity, reference.r, reference.s) == (y_parity, r, s)
    assert bytes(reference.authorization_hash) == parsed.digest
    assert _recovered(parsed.digest, r, s, y_parity) == Account.from_key(vector["signer_private_key"]).address
    assert s <= SECP256K1_HALF_N


def test_authorization_for_every_chain_is_parsed_and_says_so() -> None:
    parsed = parse_payload(
        PayloadKind.AUTHORIZATION, json.dumps({"chainId": 0, "address": DELEGATE, "nonce": 7}).encode()
    )
    assert isinstance(parsed, Authorization)
    assert parsed.chain_id == 0
    assert parsed.nonce_slot == ("authorization", 7)
    summary = parsed.summary()
    assert "EVERY chain" in summary["chain"]
    assert DELEGATE in summary["warning"]
    reference = Account.sign_authorization({"chainId": 0, "address": DELEGATE, "nonce": 7}, AUTHORITY_KEY)
    assert bytes(reference.authorization_hash) == parsed.digest
    again = parse_payload(PayloadKind.AUTHORIZATION, parsed.canonical)
    assert again.digest == parsed.digest


@pytest.mark.parametrize(
    ("authorization", "field"),
    [
        ({"address": DELEGATE, "nonce": 0}, "chainId"),
        ({"chainId": -1, "address": DELEGATE, "nonce": 0}, "chainId"),
        ({"chainId": str(2**63), "address": DELEGATE, "nonce": 0}, "chainId"),
        ({"chainId": True, "address": DELEGATE, "nonce": 0}, "chainId"),
        ({"chainId": 1, "nonce": 0}, "address"),
        ({"chainId": 1, "address": DELEGATE.lower()[:-2], "nonce": 0}, "address"),
        ({"chainId": 1, "address": "0x63C0c19a282a1B52b07dD5a65b58948A07DAE32B", "nonce": 0}, "address"),
        ({"chainId": 1, "address": DELEGATE}, "nonce"),
        ({"chainId": 1, "address": DELEGATE, "nonce": str(2**64 - 1)}, "nonce"),
        ({"chainId": 1, "address": DELEGATE, "nonce": 1.5}, "nonce"),
        ({"chainId": 1, "address": DELEGATE, "nonce": 0, "yParity": 0}, "yParity"),
    ],
)
def test_malformed_authorizations_are_refused_naming_the_field(
    authorization: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_payload(PayloadKind.AUTHORIZATION, json.dumps(authorization).encode())
    assert refused.value.field == field


# Set-code transactions.


def _set_code_transaction(authorizations: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    return {
        "type": 4,
        "chainId": 1337,
        "nonce": 3,
        "to": "0x09616C3d61b3331fc4109a9E41a8BDB7d9776609",
        "value": 0,
        "gas": 100000,
        "maxFeePerGas": 2000000000,
        "maxPriorityFeePerGas": 1000000000,
        "data": "0x252dba42",
        "accessList": [],
        "authorizationList": authorizations,
        **overrides,
    }


def _signed_tuple(chain_id: int, nonce: int) -> dict[str, Any]:
    return payloads.signed_authorization(chain_id, DELEGATE, nonce, AUTHORITY_KEY)


def test_set_code_transaction_matches_eth_account_and_shows_each_authority() -> None:
    published = AUTHORIZATIONS["vectors"][0]
    published_tuple = {
        **published["authorization"],
        "yParity": published["y_parity"],
        "r": published["r"],
        "s": published["s"],
    }
    authorizations = [published_tuple, _signed_tuple(0, 5)]
    transaction = _set_code_transaction(authorizations)
    parsed = _parse(transaction)
    assert parsed.transaction_type == "eip7702"

    authorities = [item.authority for item in parsed.authorization_list]
    assert authorities == [
        Account.from_key(published["signer_private_key"]).address,
        Account.from_key(AUTHORITY_KEY).address,
    ]
    summary = parsed.summary()
    assert summary["authorization_count"] == "2"
    assert summary["authorization_list[1].authority"] == Account.from_key(AUTHORITY_KEY).address
    assert summary["authorization_list[1].chain_id"] == "0"

    r, s, y_parity = _sign(parsed.digest, SENDER_KEY)
    result = parsed.assemble(r, s, y_parity)
    reference_tuples = [{**item, "r": _int(item["r"]), "s": _int(item["s"])} for item in authorizations]
    reference = Account.sign_transaction({**transaction, "authorizationList": reference_tuples}, SENDER_KEY)
    assert result.signed_tx == bytes(reference.raw_transaction)
    assert result.signed_tx[0] == 4
    assert Account.recover_transaction(result.signed_tx) == Account.from_key(SENDER_KEY).address
    again = parse_payload(PayloadKind.TRANSACTION, parsed.canonical)
    assert again.digest == parsed.digest


def test_set_code_transaction_digest_is_the_eip_7702_preimage_recomputed_by_hand() -> None:
    authorization = _signed_tuple(1337, 9)
    transaction = _set_code_transaction([authorization])
    parsed = _parse(transaction)
    tuple_fields = [
        1337,
        to_canonical_address(DELEGATE),
        9,
        authorization["yParity"],
        _int(authorization["r"]),
        _int(authorization["s"]),
    ]
    preimage = rlp.encode(
        [
            1337,
            3,
            1000000000,
            2000000000,
            100000,
            to_canonical_address(transaction["to"]),
            0,
            bytes.fromhex("252dba42"),
            [],
            [tuple_fields],
        ]
    )
    assert parsed.digest == keccak(b"\x04" + preimage)


def test_intrinsic_gas_of_a_set_code_transaction_counts_25000_per_authorization() -> None:
    authorizations = [_signed_tuple(1337, nonce) for nonce in range(3)]
    calldata_gas = 4 * 16  # 0x252dba42: four non-zero bytes
    minimum = 21000 + calldata_gas + 3 * PER_AUTHORIZATION_GAS
    assert _parse(_set_code_transaction(authorizations, gas=minimum)).gas == minimum
    with pytest.raises(InvalidInput) as refused:
        _parse(_set_code_transaction(authorizations, gas=minimum - 1))
    assert refused.value.field == "gas"


# Refusals.


def test_invalid_vector_bases_are_valid() -> None:
    assert _parse(INVALID["bases"]["blob"]).transaction_type == "eip4844"
    assert _parse(INVALID["bases"]["set_code"]).transaction_type == "eip7702"


@pytest.mark.parametrize("case", INVALID["cases"], ids=[c["name"] for c in INVALID["cases"]])
def test_invalid_blob_and_set_code_transactions_are_refused_naming_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as refused:
        _parse(payloads.apply_invalid_case(INVALID["bases"][case["base"]], case))
    assert refused.value.field == case["field"]
    assert str(refused.value).startswith(f"{case['field']}: ")

"""Transactions: known-answer vectors from EIP-155 and eth-account, strict parsing and refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from custody.chains.evm import PayloadKind, Transaction, parse_payload, parse_transaction
from custody.chains.evm.transactions import MAX_ACCESS_LIST_ENTRIES, MAX_CALLDATA_BYTES
from custody.domain.errors import InvalidInput

VECTORS = Path(__file__).parents[2] / "vectors"
SIGNED = json.loads((VECTORS / "signed_transactions.json").read_text())
INVALID = json.loads((VECTORS / "invalid_transactions.json").read_text())


def _int(text: str | int) -> int:
    return text if isinstance(text, int) else int(text, 0)


def _parse(transaction: dict[str, Any]) -> Transaction:
    parsed = parse_payload(PayloadKind.TRANSACTION, json.dumps(transaction).encode())
    assert isinstance(parsed, Transaction)
    return parsed


@pytest.mark.parametrize("vector", SIGNED["vectors"], ids=[v["name"] for v in SIGNED["vectors"]])
def test_signing_hash_and_signed_bytes_match_public_vectors(vector: dict[str, Any]) -> None:
    parsed = _parse(vector["transaction"])
    assert parsed.transaction_type == vector["transaction_type"]
    assert parsed.digest == bytes.fromhex(vector["signing_hash"][2:])

    signature = vector["signature"]
    r, s, y_parity = _int(signature["r"]), _int(signature["s"]), signature["y_parity"]
    result = parsed.assemble(r, s, y_parity)
    assert result.signed_tx == bytes.fromhex(vector["signed_tx"][2:])
    assert result.tx_hash == keccak(result.signed_tx)
    assert result.signature == r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])

    # Independent paths: eth-account recovers the sender from the signed bytes alone, and from our digest
    # with the vector's signature; both must agree (and match the key, where the vector publishes one).
    sender = Account.recover_transaction(result.signed_tx)
    assert sender == Account._recover_hash(parsed.digest, vrs=(27 + y_parity, r, s))
    if "signer_private_key" in vector:
        assert sender == Account.from_key(vector["signer_private_key"]).address


@pytest.mark.parametrize("vector", SIGNED["vectors"], ids=[v["name"] for v in SIGNED["vectors"]])
def test_canonical_form_parses_to_the_same_digest(vector: dict[str, Any]) -> None:
    parsed = _parse(vector["transaction"])
    again = parse_payload(PayloadKind.TRANSACTION, parsed.canonical)
    assert again.digest == parsed.digest
    assert again.canonical == parsed.canonical
    assert json.loads(parsed.canonical) == json.loads(again.canonical)


def test_eth_account_signs_what_we_hash_for_every_type() -> None:
    account = Account.from_key("0x" + "11" * 32)
    common = {
        "chainId": 11155111,
        "nonce": 7,
        "to": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "gas": 60000,
        "value": 12345,
        "data": "0xa9059cbb" + "00" * 64,
    }
    cases = [
        ({"gasPrice": 3 * 10**9}, "legacy"),
        (
            {
                "gasPrice": 3 * 10**9,
                "accessList": [
                    {
                        "address": "0x0000000000000000000000000000000000000001",
                        "storageKeys": ["0x" + "00" * 31 + "07"],
                    }
                ],
            },
            "eip2930",
        ),
        ({"maxFeePerGas": 5 * 10**9, "maxPriorityFeePerGas": 10**9}, "eip1559"),
    ]
    for fees, expected_type in cases:
        transaction = {**common, **fees}
        signed = account.sign_transaction(transaction)
        parsed = _parse(transaction)
        assert parsed.transaction_type == expected_type
        y_parity = signed.v - (2 * 11155111 + 35) if expected_type == "legacy" else signed.v
        result = parsed.assemble(signed.r, signed.s, y_parity)
        assert result.signed_tx == bytes(signed.raw_transaction)
        assert result.tx_hash == bytes(signed.hash)
        assert Account.recover_transaction(result.signed_tx) == account.address


def test_integer_spellings_are_equivalent() -> None:
    base = INVALID["base"]
    spellings = [
        {"nonce": 26, "gas": 21000, "value": 10**18},
        {"nonce": "0x1a", "gas": "0x5208", "value": "0xDE0B6B3A7640000"},
        {"nonce": "26", "gas": "21000", "value": "1000000000000000000"},
    ]
    digests = {_parse({**base, **spelling}).digest for spelling in spellings}
    assert len(digests) == 1


@pytest.mark.parametrize(
    ("field", "spelling"),
    [("nonce", "026"), ("value", "00"), ("gas", "021000"), ("value", "-0"), ("nonce", "-00")],
)
def test_a_decimal_string_with_a_leading_zero_or_a_signed_zero_is_refused_naming_the_field(
    field: str, spelling: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        _parse({**INVALID["base"], field: spelling})
    assert refused.value.field == field
    assert "no leading zero and no sign on zero" in str(refused.value)
    # Zero itself, in each spelling, is still zero.
    for zero in ("0", "0x0", 0):
        assert _parse({**INVALID["base"], "value": zero}).value == 0


def test_type_is_inferred_from_fee_fields() -> None:
    legacy = dict(INVALID["legacy_base"])
    assert _parse(legacy).transaction_type == "legacy"
    assert _parse({**legacy, "accessList": []}).transaction_type == "eip2930"
    dynamic = {k: v for k, v in INVALID["base"].items() if k != "type"}
    assert _parse(dynamic).transaction_type == "eip1559"
    assert _parse({**legacy, "type": "0x0"}).transaction_type == "legacy"
    assert _parse({**legacy, "type": 1}).transaction_type == "eip2930"


def test_summary_shows_what_an_approver_needs() -> None:
    transaction = {
        **INVALID["base"],
        "value": "1500000000000000001",
        "gas": 60000,
        "data": "0xa9059cbb" + "00" * 12 + "11" * 20 + "00" * 31 + "01",
    }
    summary = _parse(transaction).summary()
    assert summary["type"] == "eip1559"
    assert summary["chain_id"] == "1"
    assert summary["to"] == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert summary["value_wei"] == "1500000000000000001"
    assert summary["value_ether"] == "1.500000000000000001"
    assert summary["selector"] == "0xa9059cbb"
    assert summary["max_fee_per_gas_wei"] == str(0x77359400)
    assert summary["max_priority_fee_per_gas_wei"] == str(0x3B9ACA00)
    assert summary["data_length"] == "68"


def test_lowercase_destination_is_returned_checksummed() -> None:
    parsed = _parse({**INVALID["base"], "to": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"})
    assert parsed.to == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert parsed.value == 10**18
    assert parsed.chain_id == 1


def _apply(case: dict[str, Any]) -> dict[str, Any]:
    transaction = copy.deepcopy(INVALID[case.get("base", "base")])
    for name in case.get("remove", []):
        del transaction[name]
    transaction.update(case.get("set", {}))
    return transaction


def test_invalid_vector_bases_are_valid() -> None:
    _parse(INVALID["base"])
    _parse(INVALID["legacy_base"])


@pytest.mark.parametrize("case", INVALID["cases"], ids=[c["name"] for c in INVALID["cases"]])
def test_invalid_transactions_are_refused_naming_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as refused:
        _parse(_apply(case))
    assert refused.value.field == case["field"]
    assert str(refused.value).startswith(f"{case['field']}: ")


def test_contract_creation_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidInput, match="contract creation"):
        parse_transaction({k: v for k, v in INVALID["base"].items() if k != "to"})


def test_calldata_limit() -> None:
    # The gas covers the intrinsic cost of the calldata: 21,000 plus 16 per non-zero byte.
    at_limit = {
        **INVALID["base"],
        "gas": 21000 + 16 * MAX_CALLDATA_BYTES,
        "data": "0x" + "ab" * MAX_CALLDATA_BYTES,
    }
    assert len(parse_transaction(at_limit).data) == MAX_CALLDATA_BYTES
    with pytest.raises(InvalidInput) as refused:
        parse_transaction({**INVALID["base"], "data": "0x" + "ab" * (MAX_CALLDATA_BYTES + 1)})
    assert refused.value.field == "data"


def test_access_list_limits() -> None:
    entry = {"address": "0x0000000000000000000000000000000000000001", "storageKeys": []}
    with pytest.raises(InvalidInput) as refused:
        parse_transaction({**INVALID["base"], "accessList": [entry] * (MAX_ACCESS_LIST_ENTRIES + 1)})
    assert refused.value.field == "accessList"
    many_keys = {"address": entry["address"], "storageKeys": ["0x" + "00" * 32] * 257}
    with pytest.raises(InvalidInput) as refused:
        parse_transaction({**INVALID["base"], "accessList": [many_keys]})
    assert refused.value.field == "accessList[0].storageKeys"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"\xff\xfe", "payload"),
        (b"[1, 2]", "payload"),
        (b'{"nonce": 1,', "payload"),
        (b'{"nonce": NaN}', "payload"),
        (b'{"nonce": 1, "nonce": 2}', "nonce"),
        (b" " * (128 * 1024 + 1), "payload"),
        (b"[" * 100000, "payload"),
        (b'{"nonce": ' + b"9" * 5000 + b"}", "payload"),
    ],
    ids=[
        "not-utf8",
        "array",
        "truncated",
        "nan",
        "duplicate-key",
        "too-large",
        "deep-nesting",
        "huge-number",
    ],
)
def test_malformed_json_is_refused(payload: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_payload(PayloadKind.TRANSACTION, payload)
    assert refused.value.field == field

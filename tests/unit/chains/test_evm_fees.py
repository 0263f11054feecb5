"""The most a transaction can pay in fees, as the parser reports it to the policy and the approver.

The expected amounts are worked out by hand from the fee rules (EIP-1559: gas times maxFeePerGas; legacy and
EIP-2930: gas times gasPrice), not copied from the code's output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account

from custody.chains.evm import Message, PayloadKind, Transaction, TypedData, parse_payload
from custody.chains.evm.values import format_ether, format_gwei

RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
GWEI = 10**9
UINT256_MAX = str(2**256 - 1)
COMMON = {"chainId": 11155111, "nonce": 3, "to": RECIPIENT, "value": 10**16}


def _transaction(fields: dict[str, Any]) -> Transaction:
    parsed = parse_payload(PayloadKind.TRANSACTION, json.dumps({**COMMON, **fields}).encode())
    assert isinstance(parsed, Transaction)
    return parsed


FEE_CASES = [
    # (fee fields, type, price per gas, most it can pay in wei, in ether)
    pytest.param(
        {"gas": 21000, "maxFeePerGas": 30 * GWEI, "maxPriorityFeePerGas": GWEI},
        "eip1559",
        30 * GWEI,
        630_000_000_000_000,
        "0.00063",
        id="eip1559-plain-transfer",
    ),
    pytest.param(
        {"gas": 21000, "gasPrice": 20 * GWEI},
        "legacy",
        20 * GWEI,
        420_000_000_000_000,
        "0.00042",
        id="legacy",
    ),
    pytest.param(
        {"gas": 50000, "gasPrice": "0x3b9aca00", "accessList": []},
        "eip2930",
        GWEI,
        50_000_000_000_000,
        "0.00005",
        id="eip2930-hex-price",
    ),
    pytest.param(
        # The reviewers' transaction: a small value and a fee of 30,000 ether.
        {"gas": 30_000_000, "maxFeePerGas": 10**15, "maxPriorityFeePerGas": 10**15},
        "eip1559",
        10**15,
        30_000 * 10**18,
        "30000",
        id="eip1559-enormous-fee",
    ),
    pytest.param(
        {"gas": 21000, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0},
        "eip1559",
        0,
        0,
        "0",
        id="no-fee",
    ),
    pytest.param(
        # The priority fee is a tip within maxFeePerGas, not on top of it, so it does not raise the bound.
        {"gas": 100_000, "maxFeePerGas": 7 * GWEI, "maxPriorityFeePerGas": 7 * GWEI},
        "eip1559",
        7 * GWEI,
        700_000_000_000_000,
        "0.0007",
        id="tip-equal-to-fee-cap",
    ),
]


@pytest.mark.parametrize(("fees", "transaction_type", "price", "wei", "ether"), FEE_CASES)
def test_the_maximum_fee_is_all_the_gas_at_the_highest_price(
    fees: dict[str, Any], transaction_type: str, price: int, wei: int, ether: str
) -> None:
    parsed = _transaction(fees)
    assert parsed.transaction_type == transaction_type
    assert parsed.max_price_per_gas == price
    assert parsed.max_fee_wei == wei
    summary = parsed.summary()
    assert summary["max_fee_wei"] == str(wei)
    assert summary["max_fee_ether"] == ether
    # The fee bound must describe the transaction that is signed: eth-account signs the same fields, and the
    # signed bytes recover to its signer.
    account = Account.from_key("0x" + "44" * 32)
    signed = account.sign_transaction({**COMMON, **fees})
    assert parsed.assemble(signed.r, signed.s, _y_parity(parsed, signed.v)).signed_tx == bytes(
        signed.raw_transaction
    )
    assert Account.recover_transaction(signed.raw_transaction) == account.address


def _y_parity(parsed: Transaction, v: int) -> int:
    return v - (2 * parsed.chain_id + 35) if parsed.transaction_type == "legacy" else v


def test_typed_data_and_messages_pay_no_fee() -> None:
    typed_data = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
            "Note": [{"name": "text", "type": "string"}],
        },
        "primaryType": "Note",
        "domain": {"name": "Fees", "chainId": 1},
        "message": {"text": "no gas here"},
    }
    parsed_typed_data = parse_payload(PayloadKind.TYPED_DATA, json.dumps(typed_data).encode())
    assert isinstance(parsed_typed_data, TypedData)
    message = parse_payload(PayloadKind.MESSAGE, b"hello")
    assert isinstance(message, Message)
    for parsed in (parsed_typed_data, message):
        assert parsed.max_fee_wei is None
        assert not {"max_fee_wei", "max_fee_ether"} & set(parsed.summary())


@pytest.mark.parametrize(
    ("wei", "ether", "gwei"),
    [
        pytest.param(0, "0", "0", id="zero"),
        pytest.param(1, "0.000000000000000001", "0.000000001", id="one-wei"),
        pytest.param(30 * GWEI, "0.00000003", "30", id="30-gwei"),
        pytest.param(1_500_000_000, "0.0000000015", "1.5", id="1.5-gwei"),
        pytest.param(10**18, "1", "1000000000", id="one-ether"),
        # 2**256 - 1 ends in an odd digit, so its exact decimal has no trailing zero to strip.
        pytest.param(
            2**256 - 1,
            f"{UINT256_MAX[:-18]}.{UINT256_MAX[-18:]}",
            f"{UINT256_MAX[:-9]}.{UINT256_MAX[-9:]}",
            id="uint256-max",
        ),
    ],
)
def test_amounts_are_written_exactly(wei: int, ether: str, gwei: str) -> None:
    assert format_ether(wei) == ether
    assert format_gwei(wei) == gwei

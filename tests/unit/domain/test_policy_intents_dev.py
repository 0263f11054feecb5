"""The development policy (``custody dev init``'s policy.toml) on real payloads: each payload is built with an
independent encoder (eth_abi, hand-packed MultiSend batches, typed data written out as JSON), parsed and decoded
into intents by custody, and judged by the policy text the development environment writes.

What it must decide, from the policy's description: ``ops`` signs at once plain ether transfers of at most 1
ether on chains 1 and 11155111, the EIP-712 Mail example of its own domain and printable text messages of at
most 1 KiB, and nothing else (no Permit or Permit2, no SafeTx, no binary messages, no token approvals);
``treasury`` needs 2 of the treasury group for transfers and for CALL-only Safe transactions of the example
Safe, and the admin quorum for Safe configuration changes and ownership, role and upgrade intents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_abi.abi import encode

from custody.app.integrity import request_facts
from custody.chains.evm import parse_payload
from custody.domain.intents import UNLIMITED, UNLIMITED_UINT160
from custody.domain.policy import Policy, RequestFacts
from custody.domain.requests import DecisionAction, PayloadKind, QuorumTerm
from custody.policy_file import DEV_APPROVERS, dev_policy_toml, parse_policy_text
from tests import evm_payloads as payloads

VECTORS = Path(__file__).parents[2] / "vectors"
# Selectors from the vector file, not from custody's own data file.
SELECTORS: dict[str, str] = json.loads((VECTORS / "intents_selectors.json").read_text())["selectors"]
SAFE_TX_TYPES = json.loads((VECTORS / "safe_tx_types.json").read_text())["types"]
MAIL = json.loads((VECTORS / "eip712_mail.json").read_text())["typed_data"]

# The example Safe the development policy names (an EIP-55 example address), and Safe's MultiSendCallOnly.
EXAMPLE_SAFE = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
OTHER_SAFE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
RECIPIENT = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
ATTACKER = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"
OWNER = "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"
ZERO = "0x" + "00" * 20
ONE_ETHER = 10**18
NOW = 1_750_000_000

TREASURY_QUORUM = (QuorumTerm("treasury", 2),)
ADMIN_QUORUM = (QuorumTerm("admins", 2),)


@pytest.fixture(scope="module")
def dev_policy() -> Policy:
    keys = {
        name: Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex() for name in DEV_APPROVERS
    }
    return parse_policy_text(dev_policy_toml(keys), "policy.toml")


def facts(key: str, kind: PayloadKind, payload: bytes | dict[str, Any]) -> RequestFacts:
    """The facts the daemon derives from a payload, its intents decoded by custody."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request_facts(
        key, parse_payload(kind, raw), replacement=False, now=datetime.fromtimestamp(NOW, tz=UTC)
    )


def call(signature: str, types: list[str], values: list[Any]) -> bytes:
    return bytes.fromhex(SELECTORS[signature][2:]) + encode(types, values)


def tx(key: str, to: str, data: bytes = b"", value: int = 0, chain_id: int = 11155111) -> RequestFacts:
    document = {
        "type": 2,
        "chainId": chain_id,
        "nonce": 0,
        "to": to,
        "value": value,
        "gas": 200_000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x" + data.hex(),
    }
    return facts(key, PayloadKind.TRANSACTION, document)


def transfer(to: str = RECIPIENT, amount: int = 10**6) -> bytes:
    return call("transfer(address,uint256)", ["address", "uint256"], [to, amount])


def approve(spender: str = ATTACKER, amount: int = UNLIMITED) -> bytes:
    return call("approve(address,uint256)", ["address", "uint256"], [spender, amount])


def exec_transaction(to: str, data: bytes, operation: int = 0, value: int = 0) -> bytes:
    return call(
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        [
            "address",
            "uint256",
            "bytes",
            "uint8",
            "uint256",
            "uint256",
            "uint256",
            "address",
            "address",
            "bytes",
        ],
        [to, value, data, operation, 0, 0, 0, ZERO, ZERO, b"\x01" * 65],
    )


def multisend(*calls: tuple[int, str, int, bytes]) -> bytes:
    # MultiSend.sol: abi.encodePacked(uint8 operation, address to, uint256 value, uint256 dataLength, bytes data).
    packed = b"".join(
        bytes([operation])
        + bytes.fromhex(to[2:])
        + value.to_bytes(32, "big")
        + len(data).to_bytes(32, "big")
        + data
        for operation, to, value, data in calls
    )
    return call("multiSend(bytes)", ["bytes"], [packed])


def safe_tx(
    to: str, data: bytes = b"", operation: int = 0, value: int = 0, safe: str = EXAMPLE_SAFE
) -> dict[str, Any]:
    return {
        "types": SAFE_TX_TYPES,
        "primaryType": "SafeTx",
        "domain": {"chainId": 1, "verifyingContract": safe},
        "message": {
            "to": to,
            "value": value,
            "data": "0x" + data.hex(),
            "operation": operation,
            "safeTxGas": 0,
            "baseGas": 0,
            "gasPrice": 0,
            "gasToken": ZERO,
            "refundReceiver": ZERO,
            "nonce": 7,
        },
    }


def eip2612_permit(spender: str = ATTACKER) -> dict[str, Any]:
    """A permit of every USDC, valid for ever."""
    return payloads.eip2612_permit(spender, UNLIMITED, UNLIMITED, owner=OWNER)


def permit2_single(spender: str = ATTACKER) -> dict[str, Any]:
    """An unlimited Permit2 allowance of USDC for a day."""
    return payloads.permit2_single(spender, UNLIMITED_UINT160, NOW + 86400)


def decide(
    policy: Policy, request: RequestFacts
) -> tuple[DecisionAction, str | None, tuple[QuorumTerm, ...]]:
    decision = policy.evaluate(request).decision
    return decision.action, decision.rule, decision.quorum


# ------------------------------------------------------------------------------------------------------------
# ops: what it signs at once, and the attacks it used to sign.


def test_ops_signs_plain_ether_transfers_of_at_most_one_ether(dev_policy: Policy) -> None:
    assert decide(dev_policy, tx("ops", RECIPIENT, value=ONE_ETHER))[:2] == (
        DecisionAction.SIGN,
        "ops-transactions",
    )
    assert decide(dev_policy, tx("ops", RECIPIENT, value=ONE_ETHER, chain_id=1))[0] is DecisionAction.SIGN
    assert decide(dev_policy, tx("ops", RECIPIENT, value=ONE_ETHER + 1))[0] is DecisionAction.DENY
    assert decide(dev_policy, tx("ops", RECIPIENT, value=1, chain_id=137))[0] is DecisionAction.DENY


def test_ops_signs_the_mail_example_of_its_own_domain_only(dev_policy: Policy) -> None:
    assert decide(dev_policy, facts("ops", PayloadKind.TYPED_DATA, MAIL))[:2] == (
        DecisionAction.SIGN,
        "ops-mail",
    )
    for field, value in (
        ("name", "Evil Mail"),
        ("verifyingContract", ATTACKER),
        ("chainId", 10),
        ("version", "2"),
    ):
        other = {**MAIL, "domain": {**MAIL["domain"], field: value}}
        assert decide(dev_policy, facts("ops", PayloadKind.TYPED_DATA, other))[0] is DecisionAction.DENY, (
            field
        )


def test_ops_signs_printable_text_messages_of_at_most_one_kib(dev_policy: Policy) -> None:
    assert decide(dev_policy, facts("ops", PayloadKind.MESSAGE, b"I approve proposal 42."))[:2] == (
        DecisionAction.SIGN,
        "ops-messages",
    )
    assert decide(dev_policy, facts("ops", PayloadKind.MESSAGE, b"x" * 1024))[0] is DecisionAction.SIGN
    assert decide(dev_policy, facts("ops", PayloadKind.MESSAGE, b"x" * 1025))[0] is DecisionAction.DENY
    # A zero-width space makes a text that looks like another: shown and judged as bytes.
    assert (
        decide(dev_policy, facts("ops", PayloadKind.MESSAGE, "pay\u200bme".encode()))[0]
        is DecisionAction.DENY
    )


ATTACKS: dict[str, tuple[PayloadKind, Any, str]] = {
    "eip2612-permit-for-everything-to-a-stranger": (PayloadKind.TYPED_DATA, eip2612_permit(), "permit"),
    "permit2-permit-single": (PayloadKind.TYPED_DATA, permit2_single(), "PermitSingle"),
    "safe-tx-by-delegatecall": (
        PayloadKind.TYPED_DATA,
        safe_tx(ATTACKER, bytes.fromhex("a9059cbb") + bytes(64), operation=1),
        "SafeTx",
    ),
    "safe-transaction-hash-as-a-message": (PayloadKind.MESSAGE, b"\x8f" * 32, "binary_message"),
    "approve-attacker-for-everything": (PayloadKind.TRANSACTION, approve(), "erc20_approve"),
    "set-approval-for-all": (
        PayloadKind.TRANSACTION,
        call("setApprovalForAll(address,bool)", ["address", "bool"], [ATTACKER, True]),
        "set_approval_for_all",
    ),
    "erc20-transfer": (PayloadKind.TRANSACTION, transfer(ATTACKER), "erc20_transfer"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_ops_denies_every_attack_naming_what_it_does(dev_policy: Policy, attack: str) -> None:
    kind, payload, named = ATTACKS[attack]
    request = tx("ops", USDC, payload) if kind is PayloadKind.TRANSACTION else facts("ops", kind, payload)
    decision = dev_policy.evaluate(request).decision
    assert (decision.action, decision.rule) == (DecisionAction.DENY, None)
    assert named in decision.reason


# ------------------------------------------------------------------------------------------------------------
# treasury: 2 of the treasury group for transfers and CALL-only Safe transactions of the example Safe; the
# admin quorum for changes of control.


def test_treasury_transfers_and_call_only_safe_transactions_need_two_of_the_treasury(
    dev_policy: Policy,
) -> None:
    expected = (DecisionAction.APPROVE, "treasury-transactions", TREASURY_QUORUM)
    assert decide(dev_policy, tx("treasury", RECIPIENT, value=100 * ONE_ETHER)) == expected
    assert decide(dev_policy, tx("treasury", USDC, transfer())) == expected
    assert decide(dev_policy, tx("treasury", EXAMPLE_SAFE, exec_transaction(USDC, transfer()))) == expected
    signature = facts("treasury", PayloadKind.TYPED_DATA, safe_tx(USDC, transfer()))
    assert decide(dev_policy, signature) == (
        DecisionAction.APPROVE,
        "treasury-safe-transactions",
        TREASURY_QUORUM,
    )


@pytest.mark.parametrize(
    ("request_builder", "named"),
    [
        pytest.param(
            lambda: facts(
                "treasury", PayloadKind.TYPED_DATA, safe_tx(ATTACKER, b"\x12\x34\x56\x78", operation=1)
            ),
            "DELEGATECALL",
            id="bybit-safe-tx-by-delegatecall-to-an-unknown-contract",
        ),
        pytest.param(
            lambda: tx("treasury", EXAMPLE_SAFE, exec_transaction(ATTACKER, b"", operation=1)),
            "DELEGATECALL",
            id="exec-transaction-by-delegatecall",
        ),
        pytest.param(
            lambda: facts("treasury", PayloadKind.TYPED_DATA, safe_tx(USDC, transfer(), safe=OTHER_SAFE)),
            "SafeTx",
            id="safe-tx-of-another-safe",
        ),
        pytest.param(lambda: tx("treasury", USDC, approve()), "erc20_approve", id="approval"),
        pytest.param(
            lambda: tx("treasury", EXAMPLE_SAFE, exec_transaction(USDC, approve(amount=10))),
            "erc20_approve",
            id="approval-inside-a-safe-transaction",
        ),
        pytest.param(lambda: facts("treasury", PayloadKind.MESSAGE, b"hello"), "message", id="message"),
    ],
)
def test_what_the_treasury_rules_do_not_allow_is_denied(
    dev_policy: Policy, request_builder: Any, named: str
) -> None:
    decision = dev_policy.evaluate(request_builder()).decision
    assert (decision.action, decision.rule) == (DecisionAction.DENY, None)
    assert named in decision.reason


def test_changes_of_control_need_the_admin_quorum(dev_policy: Policy) -> None:
    add_owner = call("addOwnerWithThreshold(address,uint256)", ["address", "uint256"], [ATTACKER, 1])
    transfer_ownership = call("transferOwnership(address)", ["address"], [ATTACKER])
    upgrade = call("upgradeTo(address)", ["address"], [ATTACKER])
    expected = (DecisionAction.APPROVE, "treasury-admin-transactions", ADMIN_QUORUM)
    assert (
        decide(dev_policy, tx("treasury", EXAMPLE_SAFE, exec_transaction(EXAMPLE_SAFE, add_owner)))
        == expected
    )
    assert decide(dev_policy, tx("treasury", RECIPIENT, transfer_ownership)) == expected
    assert decide(dev_policy, tx("treasury", RECIPIENT, upgrade)) == expected
    # Radiant: an ownership transfer among the transfers of a MultiSend batch, signed as a SafeTx.
    batch = multisend((0, USDC, 0, transfer()), (0, RECIPIENT, 0, transfer_ownership))
    radiant = facts("treasury", PayloadKind.TYPED_DATA, safe_tx(MULTISEND_CALL_ONLY, batch, operation=1))
    assert decide(dev_policy, radiant) == (
        DecisionAction.APPROVE,
        "treasury-admin-safe-transactions",
        ADMIN_QUORUM,
    )
    # A batch run by DELEGATECALL in anything but MultiSendCallOnly is denied even to the admins.
    elsewhere = facts("treasury", PayloadKind.TYPED_DATA, safe_tx(ATTACKER, batch, operation=1))
    assert decide(dev_policy, elsewhere)[0] is DecisionAction.DENY


def test_a_transfer_batch_the_treasury_rules_refuse_does_not_reach_the_admin_quorum(
    dev_policy: Policy,
) -> None:
    # The admin rules allow transfers only beside a change of control (requires_intents).
    batch = multisend((0, USDC, 0, transfer()), (0, RECIPIENT, ONE_ETHER, b""))
    request = tx("treasury", EXAMPLE_SAFE, exec_transaction(MULTISEND_CALL_ONLY, batch, operation=1))
    decision = dev_policy.evaluate(request).decision
    assert (decision.action, decision.rule) == (DecisionAction.DENY, None)
    assert "no intent of the request is of kind" in decision.reason

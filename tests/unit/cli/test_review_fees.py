"""What an approver and `policy explain` show about a transaction's fees.

The per-gas prices alone hide what a transaction can cost, so the approver's screen shows the most it can pay
in fees, in wei and ether, with the gas and price it comes from. Expected amounts are worked out by hand.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import rlp
from eth_account.typed_transactions import TypedTransaction
from eth_utils.crypto import keccak

from custody.api._gen import custody_pb2
from custody.cli.policy import explanation_text
from custody.cli.review import recompute_hashes, review_text
from custody.domain.policy import Policy, RequestFacts
from custody.domain.requests import PayloadKind

RECIPIENT = "0x000000000000000000000000000000000000dEaD"
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
GWEI = 10**9
COMMON = {"chainId": 11155111, "nonce": 4, "to": RECIPIENT, "value": 10**16}


def transaction_request(transaction: dict[str, object], digest: bytes) -> custody_pb2.SigningRequest:
    """A pending request as the daemon sends it, with the digest computed outside custody."""
    payload = json.dumps(transaction).encode()
    return custody_pb2.SigningRequest(
        request_id="req_fees",
        key_label="treasury",
        key_id="0a0b0c",
        address=ADDRESS,
        requester="backend",
        kind=custody_pb2.PAYLOAD_KIND_TRANSACTION,
        chain_id=11155111,
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        digest=digest,
        decision=custody_pb2.Decision(
            action="approve",
            rule="treasury-transactions",
            reason="rule 'treasury-transactions' needs approval by 2 of treasury",
            policy_version=1,
            quorum=[custody_pb2.QuorumTerm(group="treasury", threshold=2)],
        ),
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        created_at="2030-03-17T17:46:40Z",
        updated_at="2030-03-17T17:46:40Z",
    )


def eip1559_request(gas: int, max_fee_per_gas: int, priority_fee: int) -> custody_pb2.SigningRequest:
    transaction = {
        **COMMON,
        "type": 2,
        "gas": gas,
        "maxFeePerGas": max_fee_per_gas,
        "maxPriorityFeePerGas": priority_fee,
    }
    # eth-account's own signing hash, not custody's parser, says what the digest must be.
    return transaction_request(transaction, bytes(TypedTransaction.from_dict(transaction).hash()))


def legacy_request(gas: int, gas_price: int) -> custody_pb2.SigningRequest:
    transaction = {**COMMON, "gas": gas, "gasPrice": gas_price}
    # EIP-155's signing hash, built with pyrlp: keccak of the RLP list (nonce, gasPrice, gas, to, value, data,
    # chainId, 0, 0).
    fields = [4, gas_price, gas, bytes.fromhex(RECIPIENT[2:]), 10**16, b"", 11155111, 0, 0]
    return transaction_request(transaction, keccak(rlp.encode(fields)))


@pytest.mark.parametrize(
    ("request_", "line"),
    [
        pytest.param(
            eip1559_request(21000, 30 * GWEI, GWEI),
            "  max total fee  0.00063 ether (630000000000000 wei) = 21000 gas x 30 gwei",
            id="eip1559",
        ),
        pytest.param(
            legacy_request(21000, 20 * GWEI),
            "  max total fee  0.00042 ether (420000000000000 wei) = 21000 gas x 20 gwei",
            id="legacy",
        ),
        pytest.param(
            eip1559_request(60000, 1_500_000_001, 1),
            "  max total fee  0.00009000000006 ether (90000000060000 wei) = 60000 gas x 1.500000001 gwei",
            id="fractional-gwei",
        ),
        pytest.param(
            # The reviewers' transaction: 0.01 ether of value and up to 30,000 ether of fees.
            eip1559_request(30_000_000, 10**15, GWEI),
            "  max total fee  30000 ether (30000000000000000000000 wei) = 30000000 gas x 1000000 gwei",
            id="enormous-fee",
        ),
    ],
)
def test_the_screen_shows_the_total_maximum_fee(request_: custody_pb2.SigningRequest, line: str) -> None:
    recomputed = recompute_hashes(request_)
    # The screen is only shown for a payload whose digest matched the independent one.
    assert recomputed.digest == bytes(request_.digest)
    lines = review_text(request_, recomputed).splitlines()
    assert line in lines
    # The total comes below the per-gas prices, which are still shown.
    assert lines.index(line) > next(i for i, text in enumerate(lines) if text.startswith("  gas limit"))


def test_the_per_gas_lines_are_kept() -> None:
    eip1559 = eip1559_request(21000, 30 * GWEI, GWEI)
    text = review_text(eip1559, recompute_hashes(eip1559))
    assert "  max fee        30000000000 wei per gas" in text
    assert "  priority fee   1000000000 wei per gas" in text
    legacy = legacy_request(21000, 20 * GWEI)
    assert "  gas price      20000000000 wei" in review_text(legacy, recompute_hashes(legacy))


def test_the_rule_line_does_not_repeat_the_rule_its_reason_names() -> None:
    request = eip1559_request(21000, 30 * GWEI, GWEI)
    lines = review_text(request, recompute_hashes(request)).splitlines()
    assert "  rule           treasury-transactions (policy version 1)" in lines
    assert not any("rule 'treasury-transactions'" in line for line in lines)
    # A reason that says more than the rule's name is kept.
    request.decision.reason = "the key is frozen"
    lines = review_text(request, recompute_hashes(request)).splitlines()
    assert "  rule           treasury-transactions (policy version 1): the key is frozen" in lines


def test_policy_explain_shows_the_fee_condition() -> None:
    policy = Policy.from_mapping(
        {
            "version": 1,
            "rules": [
                {"name": "ops", "keys": ["ops"], "max_fee_wei": "50000000000000000", "action": "sign"},
            ],
        },
        "policy.toml",
    )
    facts = RequestFacts(
        key_label="ops",
        kind=PayloadKind.TRANSACTION,
        chain_id=1,
        transaction_type="eip1559",
        to=RECIPIENT,
        value=10**16,
        max_fee_wei=30_000 * 10**18,
    )
    evaluation = policy.evaluate(facts)
    response = custody_pb2.ExplainRequestResponse(
        decision=custody_pb2.Decision(
            action=evaluation.decision.action, reason=evaluation.decision.reason, policy_version=1
        ),
        rules=[
            custody_pb2.RuleTrace(
                rule=rule.rule,
                matched=rule.matched,
                conditions=[
                    custody_pb2.ConditionTrace(condition=c.condition, matched=c.matched, detail=c.detail)
                    for c in rule.conditions
                ],
            )
            for rule in evaluation.trace
        ],
    )
    lines = explanation_text("req_fees", response).splitlines()
    assert (
        "  [NO ] max_fee_wei (maximum fee 30000000000000000000000 wei (30000 ether) exceeds the cap of"
        " 50000000000000000 wei (0.05 ether))"
    ) in lines
    assert (
        "  reason: no rule allows this request (deny by default); rule 'ops' did not match: maximum fee"
        in ("\n".join(lines))
    )

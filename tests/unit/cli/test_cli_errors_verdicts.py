"""A verdict the daemon would refuse (on one's own request, or a second one) is refused before the review is
printed and before the approver key is opened, with the daemon's own words."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from eth_account.typed_transactions.typed_transaction import TypedTransaction

from custody.api._gen import custody_pb2
from custody.approver_keys import ApproverSigner
from custody.cli.approve import review_and_sign
from custody.domain.errors import AlreadyExists, CustodyError, PermissionDenied
from custody.domain.requests import Verdict

TRANSACTION = {
    "type": 2,
    "chainId": 11155111,
    "nonce": 4,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 1_500_000_000_000_000_000,
    "gas": 21000,
    "maxFeePerGas": 30 * 10**9,
    "maxPriorityFeePerGas": 10**9,
}


def _pending_transaction(*, requester: str, earlier_approvers: list[str]) -> custody_pb2.SigningRequest:
    payload = json.dumps(TRANSACTION).encode()
    return custody_pb2.SigningRequest(
        request_id="req_7",
        key_label="treasury",
        key_id="0a0b0c",
        address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        requester=requester,
        kind=custody_pb2.PAYLOAD_KIND_TRANSACTION,
        chain_id=11155111,
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        # eth-account's own signing hash, so that the request passes the CLI's recomputation.
        digest=bytes(TypedTransaction.from_dict(TRANSACTION).hash()),
        decision=custody_pb2.Decision(
            action="approve",
            rule="treasury-transactions",
            reason="treasury transactions need 2 of treasury",
            policy_version=2,
            quorum=[custody_pb2.QuorumTerm(group="treasury", threshold=2)],
        ),
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        created_at="2030-03-17T17:46:40Z",
        updated_at="2030-03-17T17:46:40Z",
        expires_at="2030-03-18T17:46:40Z",
        approvals=[
            custody_pb2.ApprovalRecord(approver=name, verdict="approve") for name in earlier_approvers
        ],
    )


def _never_called() -> ApproverSigner:
    raise AssertionError("the approver key must not be opened")


def _verdict_and_screen(request: custody_pb2.SigningRequest, verdict: Verdict) -> tuple[CustodyError, str]:
    runner = CliRunner()
    with runner.isolation(input="y\n") as streams:
        with pytest.raises(CustodyError) as refused:
            review_and_sign(
                request,
                verdict=verdict,
                approver="alice",
                signer_factory=_never_called,
                assume_yes=False,
                interactive=True,
                expires_in=600,
            )
        return refused.value, streams[0].getvalue().decode() + streams[1].getvalue().decode()


@pytest.mark.parametrize("verdict", [Verdict.APPROVE, Verdict.REJECT])
def test_a_verdict_on_ones_own_request_is_refused_before_the_review(verdict: Verdict) -> None:
    error, screen = _verdict_and_screen(
        _pending_transaction(requester="alice", earlier_approvers=[]), verdict
    )
    assert isinstance(error, PermissionDenied)
    assert error.message == (
        f"alice submitted request req_7 and cannot {verdict.value} it; the requester's own verdict never counts"
    )
    assert screen == ""


def test_a_second_verdict_is_refused_before_the_review() -> None:
    request = _pending_transaction(requester="backend", earlier_approvers=["carol", "alice"])
    error, screen = _verdict_and_screen(request, Verdict.APPROVE)
    assert isinstance(error, AlreadyExists)
    assert error.message == "alice already gave a verdict on request req_7"
    assert screen == ""


def test_a_verdict_still_allowed_gets_the_review_and_the_question() -> None:
    request = _pending_transaction(requester="backend", earlier_approvers=["carol"])
    runner = CliRunner()
    with runner.isolation(input="n\n") as streams:
        with pytest.raises(CustodyError, match="nothing was signed"):
            review_and_sign(
                request,
                verdict=Verdict.APPROVE,
                approver="alice",
                signer_factory=_never_called,
                assume_yes=False,
                interactive=True,
                expires_in=600,
            )
        screen = streams[0].getvalue().decode()
    assert "Approve request req_7? [y/N]" in screen

"""The one answer to "may this request be signed now?" (custody.domain.signing.signing_refusal).

Requests are built from real payloads parsed by custody.chains.evm and judged by the development policy with
real Ed25519 approver keys, so every refusal below is one the daemon would give for the same facts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.app.integrity import prepare
from custody.domain.approvals import ApprovalStatement
from custody.domain.keys import Key, KeyState
from custody.domain.policy import Policy, VelocityUsage
from custody.domain.requests import (
    Approval,
    Decision,
    DecisionAction,
    PayloadKind,
    RequestState,
    SigningRequest,
    Verdict,
)
from custody.domain.signing import Refusal, signing_refusal
from custody.policy_file import DEV_APPROVERS, dev_policy_toml, parse_policy_text

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY_ID = "00112233445566778899aabbccddeeff"
APPROVER_KEYS = {name: Ed25519PrivateKey.generate() for name in DEV_APPROVERS}


def _public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


POLICY: Policy = parse_policy_text(
    dev_policy_toml({name: _public_hex(key) for name, key in APPROVER_KEYS.items()}), "test policy"
)


def _no_usage(key_label: str, window_seconds: int) -> VelocityUsage:
    return VelocityUsage(count=0, total_value=0)


def transaction_request(key_label: str, *, value: int = 10**15, state: RequestState) -> SigningRequest:
    payload = json.dumps(
        {
            "type": 2,
            "chainId": 1,
            "nonce": 7,
            "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "value": value,
            "gas": 21000,
            "maxFeePerGas": 30 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        },
        sort_keys=True,
    ).encode()
    draft = SigningRequest(
        request_id="req_018bcfe56800a1b2c3d4e5f6a7b8c9d0e1f2",
        key_label=key_label,
        key_id=KEY_ID,
        requester="backend",
        kind=PayloadKind.TRANSACTION,
        chain_id=1,
        payload=payload,
        payload_hash=b"",
        digest=b"",
        decision=Decision(DecisionAction.DENY, None, "not decided yet", POLICY.version),
        state=state,
        created_at=NOW - timedelta(minutes=5),
        updated_at=NOW - timedelta(minutes=5),
        expires_at=NOW + timedelta(hours=1),
    )
    # The daemon stores the canonical payload; the hashes below are the ones it would store.
    recomputed = prepare(replace(draft, payload=payload), NOW).recomputed
    assert recomputed.facts is not None
    decision = POLICY.evaluate(recomputed.facts, _no_usage).decision
    return replace(draft, payload_hash=recomputed.payload_hash, digest=recomputed.digest, decision=decision)


def key(label: str, state: KeyState = KeyState.ACTIVE) -> Key:
    return Key(label, KEY_ID, "0x" + "11" * 20, b"\x04" + bytes(64), state, NOW - timedelta(days=1))


def approval(request: SigningRequest, approver: str, *, signer: str | None = None) -> Approval:
    statement = ApprovalStatement.for_request(
        request, approver, Verdict.APPROVE, int((NOW + timedelta(hours=1)).timestamp())
    ).to_bytes()
    return Approval(
        request_id=request.request_id,
        approver=approver,
        verdict=Verdict.APPROVE,
        statement=statement,
        signature=APPROVER_KEYS[signer or approver].sign(statement),
        reason="",
        created_at=NOW,
    )


def refusal(
    request: SigningRequest,
    *,
    stored_key: Key | None = None,
    approvals: tuple[Approval, ...] = (),
    now: datetime = NOW,
) -> Refusal | None:
    prepared = prepare(request, now)
    assert prepared.recomputed.facts is not None or not prepared.recomputed.matches(request)
    decision_now = (
        POLICY.evaluate(prepared.recomputed.facts, _no_usage).decision if prepared.recomputed.facts else None
    )
    return signing_refusal(
        request,
        key=stored_key if stored_key is not None else key(request.key_label),
        approvals=approvals,
        policy=POLICY,
        recomputed=prepared.recomputed,
        decision_now=decision_now,
        seal_problem=None,
        now=now,
    )


def test_a_request_the_policy_signs_at_once_may_be_signed() -> None:
    request = transaction_request("ops", state=RequestState.APPROVED)
    assert request.decision.action is DecisionAction.SIGN

    assert refusal(request) is None


def test_a_request_waiting_for_approvals_may_not_be_signed_and_keeps_waiting() -> None:
    request = transaction_request("treasury", state=RequestState.PENDING_APPROVAL)

    assert refusal(request) == Refusal("it is PENDING_APPROVAL, not APPROVED", ends_as=None)


def test_a_time_locked_request_waits_until_its_moment() -> None:
    request = replace(
        transaction_request("ops", state=RequestState.APPROVED), not_before=NOW + timedelta(minutes=1)
    )

    waiting = refusal(request)
    assert waiting is not None and waiting.ends_as is None and "time-lock" in waiting.reason
    assert refusal(request, now=NOW + timedelta(minutes=1)) is None


def test_an_expired_request_ends_expired() -> None:
    request = transaction_request("ops", state=RequestState.APPROVED)
    assert request.expires_at is not None

    ended = refusal(request, now=request.expires_at)
    assert ended is not None and ended.ends_as is RequestState.EXPIRED


def test_a_frozen_key_holds_its_requests_without_ending_them() -> None:
    request = transaction_request("ops", state=RequestState.APPROVED)

    held = refusal(request, stored_key=key("ops", KeyState.FROZEN))
    assert held is not None and held.ends_as is None and "frozen" in held.reason


def test_a_key_whose_id_changed_fails_the_request() -> None:
    request = transaction_request("ops", state=RequestState.APPROVED)
    other = replace(key("ops"), key_id="ff" * 16)

    failed = refusal(request, stored_key=other)
    assert failed is not None and failed.ends_as is RequestState.FAILED and "key id" in failed.reason


def test_a_row_whose_payload_was_edited_fails() -> None:
    request = transaction_request("ops", state=RequestState.APPROVED)
    edited = replace(request, payload=request.payload.replace(b'"nonce": 7', b'"nonce": 8'))

    failed = refusal(edited)
    assert failed is not None and failed.ends_as is RequestState.FAILED
    assert failed.reason == "the stored request no longer matches its payload"


def test_a_request_the_policy_no_longer_allows_fails() -> None:
    # 2 ether is above the "ops" rule's cap, so the policy asked now denies it whatever the row says.
    request = replace(
        transaction_request("ops", value=2 * 10**18, state=RequestState.APPROVED),
        decision=Decision(DecisionAction.SIGN, "ops-transactions", "edited", POLICY.version),
    )

    failed = refusal(request)
    assert failed is not None and failed.ends_as is RequestState.FAILED
    assert failed.reason.startswith("the active policy (version 1) does not allow it")


def test_a_decision_edited_from_approve_to_sign_still_needs_the_quorum() -> None:
    request = transaction_request("treasury", state=RequestState.APPROVED)
    assert request.decision.action is DecisionAction.APPROVE
    edited = replace(request, decision=replace(request.decision, action=DecisionAction.SIGN, quorum=()))

    failed = refusal(edited)
    assert failed is not None and failed.ends_as is RequestState.FAILED and "quorum" in failed.reason


def test_two_verified_approvals_let_a_treasury_request_be_signed() -> None:
    request = transaction_request("treasury", state=RequestState.APPROVED)

    assert refusal(request, approvals=(approval(request, "alice"), approval(request, "bob"))) is None


def _signed_by_another_key(request: SigningRequest) -> Approval:
    return approval(request, "bob", signer="carol")


def _statement_for_another_digest(request: SigningRequest) -> Approval:
    return approval(replace(request, digest=hashlib.sha256(b"another payload").digest()), "bob")


@pytest.mark.parametrize("forged_second", [_signed_by_another_key, _statement_for_another_digest])
def test_an_approval_that_does_not_verify_or_bind_does_not_count(
    forged_second: Callable[[SigningRequest], Approval],
) -> None:
    request = transaction_request("treasury", state=RequestState.APPROVED)

    failed = refusal(request, approvals=(approval(request, "alice"), forged_second(request)))
    assert failed is not None and failed.ends_as is RequestState.FAILED and "quorum" in failed.reason


def test_the_requesters_own_approval_never_counts() -> None:
    request = replace(transaction_request("treasury", state=RequestState.APPROVED), requester="bob")

    failed = refusal(request, approvals=(approval(request, "alice"), approval(request, "bob")))
    assert failed is not None and failed.ends_as is RequestState.FAILED
    assert refusal(request, approvals=(approval(request, "alice"), approval(request, "carol"))) is None


def test_a_governance_request_is_never_signed_and_never_failed() -> None:
    request = replace(
        transaction_request("ops", state=RequestState.APPROVED), kind=PayloadKind.KEY_UNFREEZE, chain_id=None
    )

    assert refusal(request) == Refusal(
        "a governance request takes effect when approved and is never signed", ends_as=None
    )

"""Domain objects for the store tests: real secp256k1 accounts and signatures made with eth-account, real
Ed25519 approver keys and approval signatures made with cryptography, and audit drafts with a chain checker
that recomputes every hash independently of the code under test."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction

from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, event_hash
from custody.domain.keys import Key, KeyState
from custody.domain.requests import (
    Approval,
    Decision,
    PayloadKind,
    QuorumTerm,
    RequestState,
    SignatureResult,
    SigningRequest,
    Verdict,
)

BASE_TIME = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class TestKey:
    """A key record together with the local account that stands in for the HSM's private key."""

    __test__ = False

    key: Key
    account: LocalAccount


def make_key(label: str, created_at: datetime = BASE_TIME) -> TestKey:
    account = Account.create()
    key = Key(
        label=label,
        key_id=hashlib.sha256(label.encode()).hexdigest()[:16],
        address=account.address,
        public_key=b"\x04" + account._key_obj.public_key.to_bytes(),
        state=KeyState.ACTIVE,
        created_at=created_at,
    )
    return TestKey(key=key, account=account)


def request_id_at(moment: datetime, suffix: int) -> str:
    millis = int(moment.timestamp() * 1000)
    return f"req_{millis:012x}{suffix:020x}"


def make_message_request(
    test_key: TestKey,
    *,
    suffix: int = 1,
    text: str = "hello custody",
    requester: str = "backend",
    state: RequestState = RequestState.APPROVED,
    created_at: datetime = BASE_TIME,
    summary: dict[str, str] | None = None,
) -> SigningRequest:
    payload = text.encode()
    return SigningRequest(
        request_id=request_id_at(created_at, suffix),
        key_label=test_key.key.label,
        key_id=test_key.key.key_id,
        requester=requester,
        kind=PayloadKind.MESSAGE,
        chain_id=None,
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        digest=bytes(_hash_eip191_message(encode_defunct(text=text))),
        decision=Decision(
            action="sign", rule="ops-messages", reason="messages are signed at once", policy_version=3
        ),
        state=state,
        created_at=created_at,
        updated_at=created_at,
        summary=summary if summary is not None else {"text": text},
    )


TRANSACTION: dict[str, Any] = {
    "chainId": 11155111,
    "nonce": 7,
    "to": "0x" + "11" * 20,
    "value": 10**17,
    "gas": 21000,
    "maxFeePerGas": 30 * 10**9,
    "maxPriorityFeePerGas": 10**9,
    "data": "0x",
    "type": 2,
}


def make_transaction_request(
    test_key: TestKey,
    *,
    suffix: int = 2,
    requester: str = "backend",
    state: RequestState = RequestState.PENDING_APPROVAL,
    created_at: datetime = BASE_TIME,
) -> SigningRequest:
    payload = json.dumps(TRANSACTION, sort_keys=True).encode()
    digest = bytes(TypedTransaction.from_dict(TRANSACTION).hash())
    return SigningRequest(
        request_id=request_id_at(created_at, suffix),
        key_label=test_key.key.label,
        key_id=test_key.key.key_id,
        requester=requester,
        kind=PayloadKind.TRANSACTION,
        chain_id=TRANSACTION["chainId"],
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        digest=digest,
        decision=Decision(action="approve", rule=None, reason="needs 2 of treasury", policy_version=1),
        state=state,
        created_at=created_at,
        updated_at=created_at,
        summary={"to": TRANSACTION["to"], "value_wei": str(TRANSACTION["value"])},
    )


def sign_transaction(test_key: TestKey) -> SignatureResult:
    """What the daemon stores after signing ``TRANSACTION``: r || s || y-parity, raw transaction, hash."""
    signed = test_key.account.sign_transaction(TRANSACTION)
    signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])
    return SignatureResult(
        signature=signature, signed_tx=bytes(signed.raw_transaction), tx_hash=bytes(signed.hash)
    )


def sign_message(test_key: TestKey, text: str = "hello custody") -> SignatureResult:
    """What the daemon stores after signing an EIP-191 message: r || s || v with v in {27, 28}."""
    return SignatureResult(
        signature=bytes(test_key.account.sign_message(encode_defunct(text=text)).signature)
    )


def later(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def make_governance_request(
    kind: PayloadKind,
    test_key: TestKey | None = None,
    *,
    suffix: int = 3,
    payload: bytes = b'version = 2\n[approvers.alice]\ngroups = ["admin"]\n',
    requester: str = "alice",
    policy_version: int = 1,
    state: RequestState = RequestState.PENDING_APPROVAL,
    created_at: datetime = BASE_TIME,
    expires_at: datetime | None = None,
) -> SigningRequest:
    """A policy change (no key: key_id and key_label are "") or a key unfreeze (the key it unfreezes).

    As for every governance request, the digest approvers bind is the SHA-256 of the payload.
    """
    digest = hashlib.sha256(payload).digest()
    return SigningRequest(
        request_id=request_id_at(created_at, suffix),
        key_label="" if test_key is None else test_key.key.label,
        key_id="" if test_key is None else test_key.key.key_id,
        requester=requester,
        kind=kind,
        chain_id=None,
        payload=payload,
        payload_hash=digest,
        digest=digest,
        decision=Decision(
            action="approve",
            rule=None,
            reason="governance needs the admin quorum",
            policy_version=policy_version,
            quorum=(QuorumTerm(group="admin", threshold=2),),
        ),
        state=state,
        created_at=created_at,
        updated_at=created_at,
        summary={"kind": kind.value},
        expires_at=expires_at if expires_at is not None else created_at + timedelta(hours=24),
    )


@dataclass(frozen=True)
class Approver:
    """An approver's id and own Ed25519 key, as an approver's CLI holds it."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def make_approver(name: str) -> Approver:
    return Approver(name=name, private_key=Ed25519PrivateKey.generate())


STATEMENT_PREFIX = b"custody approval statement v1\n"


def approval_statement(
    request: SigningRequest, approver: str, verdict: Verdict, expires_at: datetime
) -> bytes:
    """The canonical approval statement, written out here independently of custody's encoder: the
    domain-separating prefix, then compact JSON with sorted keys binding the request's fields and the verdict."""
    fields = {
        "request_id": request.request_id,
        "digest": "0x" + request.digest.hex(),
        "payload_hash": "0x" + request.payload_hash.hex(),
        "chain_id": request.chain_id,
        "key_id": request.key_id,
        "policy_version": request.decision.policy_version,
        "decision": verdict.value,
        "approver": approver,
        "expires_at": int(expires_at.timestamp()),
    }
    return STATEMENT_PREFIX + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def make_approval(
    request: SigningRequest,
    approver: Approver,
    *,
    verdict: Verdict = Verdict.APPROVE,
    created_at: datetime = BASE_TIME,
    reason: str = "checked the destination and the amount",
) -> Approval:
    statement = approval_statement(request, approver.name, verdict, created_at + timedelta(hours=1))
    return Approval(
        request_id=request.request_id,
        approver=approver.name,
        verdict=verdict,
        statement=statement,
        signature=approver.private_key.sign(statement),
        reason=reason,
        created_at=created_at,
    )


def verify_approval(approval: Approval, public_key: Ed25519PublicKey) -> None:
    """Check with ``cryptography`` directly that the stored signature is the approver's over the stored
    statement, and that the statement names this approval's request, approver and verdict."""
    public_key.verify(approval.signature, approval.statement)
    assert approval.statement.startswith(STATEMENT_PREFIX)
    fields = json.loads(approval.statement[len(STATEMENT_PREFIX) :])
    assert fields["request_id"] == approval.request_id
    assert fields["approver"] == approval.approver
    assert fields["decision"] == approval.verdict.value


def make_draft(
    index: int,
    *,
    kind: str = "request.submitted",
    actor: str = "backend",
    request_id: str | None = None,
    at: datetime | None = None,
) -> AuditDraft:
    """An audit draft whose details exercise the encoding: nesting, a list, a big integer, non-ASCII text."""
    return AuditDraft(
        time=at if at is not None else BASE_TIME + timedelta(seconds=index),
        actor=actor,
        kind=kind,
        request_id=request_id,
        details={
            "index": index,
            "value_wei": 2**200 + index,
            "reason": f"event {index} for Zoë ✓",
            "nested": {"b": [1, 2, {"c": None}], "a": True},
        },
    )


def check_chain(events: Sequence[AuditEvent], first_sequence: int = 1) -> None:
    """Recompute every hash from the stored fields and check that each event links to the one before it."""
    previous = GENESIS_HASH
    for offset, event in enumerate(events):
        assert event.sequence == first_sequence + offset
        if offset or first_sequence == 1:
            assert event.previous_hash == previous, f"event {event.sequence} does not link to its predecessor"
        recomputed = hashlib.sha256(
            b"custody audit event v1\n"
            + json.dumps(
                {
                    "sequence": event.sequence,
                    "time": event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "actor": event.actor,
                    "kind": event.kind,
                    "request_id": event.request_id,
                    "details": dict(event.details),
                    "previous_hash": event.previous_hash.hex(),
                },
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=True,
            ).encode()
        ).digest()
        assert recomputed == event.hash == event_hash(event.sequence, event, event.previous_hash)
        previous = event.hash


def moved(
    request: SigningRequest,
    target: RequestState,
    at: datetime,
    *,
    result: SignatureResult | None = None,
    error: str | None = None,
    not_before: datetime | None = None,
) -> SigningRequest:
    """What the store must return after moving ``request`` to ``target``: the same request with the new state
    and time, and the result, error and time-lock given (the others kept). The store's own answer is compared
    with this, so the expectation is written here and not taken from the code under test."""
    return replace(
        request,
        state=target,
        updated_at=at,
        result=result if result is not None else request.result,
        error=error if error is not None else request.error,
        not_before=not_before if not_before is not None else request.not_before,
    )

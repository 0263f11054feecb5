"""Domain objects for the store tests: real secp256k1 accounts and signatures made with eth-account."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction

from custody.domain.keys import Key, KeyState
from custody.domain.requests import Decision, PayloadKind, RequestState, SignatureResult, SigningRequest

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
        decision=Decision(action="approvals", rule=None, reason="needs 2 of treasury", policy_version=1),
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

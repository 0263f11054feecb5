"""JSON shapes and text of keys and requests, built from real eth-account signatures."""

from __future__ import annotations

import hashlib
import json

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak

from custody.api._gen import custody_pb2
from custody.cli.output import (
    ended_unsigned,
    is_final,
    key_to_json,
    keys_table,
    request_state_name,
    request_state_value,
    request_text,
    request_to_json,
    requests_table,
)
from custody.domain.requests import RequestState

TRANSACTION = {
    "type": 2,
    "chainId": 11155111,
    "nonce": 7,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 10**16,
    "gas": 21000,
    "maxFeePerGas": 30 * 10**9,
    "maxPriorityFeePerGas": 10**9,
}


def uncompressed_public_key(account: object) -> bytes:
    return b"\x04" + account._key_obj.public_key.to_bytes()  # type: ignore[attr-defined]


def signed_transaction_request() -> tuple[custody_pb2.SigningRequest, str]:
    account = Account.create()
    signed = Account.sign_transaction(TRANSACTION, account.key)
    signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])
    request = custody_pb2.SigningRequest(
        request_id="req_1",
        key_label="ops",
        key_id="ab01",
        address=account.address,
        requester="backend",
        kind=custody_pb2.PAYLOAD_KIND_TRANSACTION,
        chain_id=TRANSACTION["chainId"],
        payload=json.dumps(TRANSACTION).encode(),
        payload_hash=keccak(json.dumps(TRANSACTION).encode()),
        digest=TypedTransaction.from_dict(TRANSACTION).hash(),
        decision=custody_pb2.Decision(
            action="sign", rule="ops-transactions", reason="allowed", policy_version=3
        ),
        state=custody_pb2.REQUEST_STATE_SIGNED,
        signature=signature,
        signed_tx=bytes(signed.raw_transaction),
        tx_hash=bytes(signed.hash),
        summary={"value_wei": str(TRANSACTION["value"]), "nonce": "7"},
    )
    return request, account.address


def test_state_names_are_the_domain_names_without_the_proto_prefix() -> None:
    for state in RequestState:
        value = custody_pb2.RequestState.Value(f"REQUEST_STATE_{state.value}")
        assert request_state_name(value) == state.value
        assert request_state_value(state.value.lower()) == value


def test_signed_transaction_json_carries_verifiable_hex_fields() -> None:
    request, address = signed_transaction_request()
    answer = request_to_json(request)
    assert answer["state"] == "SIGNED"
    assert answer["kind"] == "TRANSACTION"
    assert answer["chain_id"] == 11155111
    assert answer["key"] == "ops"
    assert answer["decision"] == {
        "action": "sign",
        "rule": "ops-transactions",
        "reason": "allowed",
        "policy_version": 3,
    }
    assert answer["summary"] == {"nonce": "7", "value_wei": "10000000000000000"}
    assert "error" not in answer
    for field in ("signature", "signed_tx", "tx_hash", "digest", "payload_hash"):
        assert answer[field].startswith("0x")
        assert answer[field] == answer[field].lower()
    signature = bytes.fromhex(answer["signature"][2:])
    assert len(signature) == 65
    r, s, y_parity = (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )
    digest = bytes.fromhex(answer["digest"][2:])
    assert Account._recover_hash(digest, vrs=(y_parity, r, s)) == address
    signed_tx = bytes.fromhex(answer["signed_tx"][2:])
    assert Account.recover_transaction(signed_tx) == address
    assert bytes.fromhex(answer["tx_hash"][2:]) == keccak(signed_tx)
    # The JSON must survive a round trip through a JSON parser unchanged (no bytes or enums left in it).
    assert json.loads(json.dumps(answer)) == answer


def test_signed_message_signature_recovers_the_key_address() -> None:
    account = Account.create()
    message = encode_defunct(text="hello")
    signed = Account.sign_message(message, account.key)
    request = custody_pb2.SigningRequest(
        request_id="req_2",
        key_label="ops",
        address=account.address,
        kind=custody_pb2.PAYLOAD_KIND_MESSAGE,
        digest=bytes(signed.message_hash),
        state=custody_pb2.REQUEST_STATE_SIGNED,
        signature=bytes(signed.signature),
    )
    answer = request_to_json(request)
    assert answer["kind"] == "MESSAGE"
    assert answer["chain_id"] is None
    assert "signed_tx" not in answer
    assert "tx_hash" not in answer
    signature = bytes.fromhex(answer["signature"][2:])
    assert Account.recover_message(message, signature=signature) == account.address


def test_unsigned_requests_have_no_signature_and_failed_ones_say_why() -> None:
    denied = custody_pb2.SigningRequest(
        request_id="req_3",
        kind=custody_pb2.PAYLOAD_KIND_TYPED_DATA,
        state=custody_pb2.REQUEST_STATE_DENIED,
        decision=custody_pb2.Decision(action="deny", reason="no rule allows this request", policy_version=1),
    )
    answer = request_to_json(denied)
    assert answer["state"] == "DENIED"
    assert answer["kind"] == "TYPED_DATA"
    assert answer["decision"]["rule"] is None
    assert not {"signature", "signed_tx", "tx_hash", "error"} & set(answer)
    assert "deny: no rule allows this request (policy version 1)" in request_text(denied)

    failed = custody_pb2.SigningRequest(
        request_id="req_4", state=custody_pb2.REQUEST_STATE_FAILED, error="the HSM is unavailable"
    )
    assert request_to_json(failed)["error"] == "the HSM is unavailable"
    assert "error:" in request_text(failed)


def test_request_text_says_where_the_signed_transaction_is() -> None:
    request, address = signed_transaction_request()
    text = request_text(request)
    assert "key:" in text and f"ops ({address})" in text
    assert "chain:" in text and "11155111" in text
    assert "value_wei:" in text
    assert f"signed transaction (send with eth_sendRawTransaction): 0x{request.signed_tx.hex()}" in text
    assert f"0x{request.tx_hash.hex()}" in text


def test_key_json_and_table() -> None:
    account = Account.create()
    key = custody_pb2.Key(
        label="ops",
        key_id="0a0b",
        address=account.address,
        public_key=uncompressed_public_key(account),
        state=custody_pb2.KEY_STATE_FROZEN,
        created_at="2026-01-02T03:04:05Z",
    )
    answer = key_to_json(key)
    assert answer == {
        "label": "ops",
        "key_id": "0a0b",
        "address": account.address,
        "public_key": "0x" + uncompressed_public_key(account).hex(),
        "state": "FROZEN",
        "created_at": "2026-01-02T03:04:05Z",
    }
    lines = keys_table([key]).splitlines()
    assert lines[0].split() == ["LABEL", "STATE", "ADDRESS", "CREATED"]
    assert lines[1].split() == ["ops", "FROZEN", account.address, "2026-01-02T03:04:05Z"]
    # Columns line up: each value starts where its heading starts.
    assert lines[1].index(account.address) == lines[0].index("ADDRESS")


def test_requests_table_lists_one_row_per_request() -> None:
    request, _ = signed_transaction_request()
    lines = requests_table([request]).splitlines()
    assert lines[0].split() == [
        "ID",
        "STATE",
        "KEY",
        "KIND",
        "CHAIN",
        "REQUESTER",
        "APPROVALS",
        "EXPIRES",
        "CREATED",
    ]
    assert lines[1].split()[:5] == ["req_1", "SIGNED", "ops", "TRANSACTION", "11155111"]
    assert requests_table([]) == "no requests match."


def pending_treasury_request(kind: int = custody_pb2.PAYLOAD_KIND_TRANSACTION) -> custody_pb2.SigningRequest:
    return custody_pb2.SigningRequest(
        request_id="req_5",
        key_label="treasury",
        kind=kind,  # type: ignore[arg-type]
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        decision=custody_pb2.Decision(
            action="approve",
            rule="treasury-transactions",
            reason="needs approvals",
            policy_version=2,
            quorum=[
                custody_pb2.QuorumTerm(group="treasury", threshold=2),
                custody_pb2.QuorumTerm(group="security", threshold=1),
            ],
            timelock_seconds=3600,
        ),
        quorum_progress="1 of 2 from treasury; 0 of 1 from security",
        approvals=[
            custody_pb2.ApprovalRecord(
                approver="alice",
                verdict="approve",
                created_at="2026-01-02T03:04:05Z",
                statement=b"custody approval statement v1\n{}",
                signature=bytes(64),
            )
        ],
        expires_at="2026-01-03T03:04:05Z",
    )


def test_request_json_carries_quorum_progress_approvals_and_times() -> None:
    answer = request_to_json(pending_treasury_request())
    assert answer["state"] == "PENDING_APPROVAL"
    assert answer["quorum"] == [{"group": "treasury", "threshold": 2}, {"group": "security", "threshold": 1}]
    assert answer["quorum_progress"] == "1 of 2 from treasury; 0 of 1 from security"
    assert answer["approvals"] == [
        {"approver": "alice", "verdict": "approve", "reason": None, "created_at": "2026-01-02T03:04:05Z"}
    ]
    assert answer["expires_at"] == "2026-01-03T03:04:05Z"
    assert answer["not_before"] is None
    assert json.loads(json.dumps(answer)) == answer


def test_request_text_shows_quorum_progress_approvals_and_times() -> None:
    text = request_text(pending_treasury_request())
    for fragment in (
        "quorum:",
        "2 of treasury AND 1 of security",
        "1 of 2 from treasury; 0 of 1 from security",
        "approve by alice at 2026-01-02T03:04:05Z",
        "3600 s after approval",
        "expires:",
    ):
        assert fragment in text


def test_governance_kinds_have_names_and_approved_is_final_only_for_them() -> None:
    policy_change = pending_treasury_request(custody_pb2.PAYLOAD_KIND_POLICY_CHANGE)
    unfreeze = pending_treasury_request(custody_pb2.PAYLOAD_KIND_KEY_UNFREEZE)
    transaction = pending_treasury_request()
    assert request_to_json(policy_change)["kind"] == "POLICY_CHANGE"
    assert request_to_json(unfreeze)["kind"] == "KEY_UNFREEZE"
    for request in (policy_change, unfreeze, transaction):
        assert not is_final(request)
        request.state = custody_pb2.REQUEST_STATE_APPROVED
    assert is_final(policy_change) and is_final(unfreeze)
    # An approved transaction still waits for its signature (or its time-lock).
    assert not is_final(transaction)
    for request in (policy_change, unfreeze, transaction):
        assert not ended_unsigned(request)
        request.state = custody_pb2.REQUEST_STATE_REJECTED
        assert is_final(request) and ended_unsigned(request)


def test_the_decision_line_does_not_repeat_the_rule_its_reason_names() -> None:
    signed = custody_pb2.SigningRequest(
        request_id="req_5",
        state=custody_pb2.REQUEST_STATE_SIGNED,
        decision=custody_pb2.Decision(
            action="sign",
            rule="ops-transactions",
            reason="rule 'ops-transactions' allows this request",
            policy_version=3,
        ),
    )
    (line,) = [line for line in request_text(signed).splitlines() if line.startswith("decision")]
    assert line.split(":", 1)[1].strip() == "sign by rule ops-transactions (policy version 3)"


def test_the_chain_is_printed_once() -> None:
    request = custody_pb2.SigningRequest(
        request_id="req_6",
        kind=custody_pb2.PAYLOAD_KIND_TRANSACTION,
        chain_id=11155111,
        summary={"chain_id": "11155111", "nonce": "4"},
    )
    text = request_text(request)
    assert [line.split(":", 1)[0] for line in text.splitlines() if "11155111" in line] == ["chain"]
    assert "nonce:" in text


def test_a_policy_change_names_no_key_in_text_and_json() -> None:
    document = b'version = 2\n[approvers.alice]\npublic_key = "00"\n'
    request = custody_pb2.SigningRequest(
        request_id="req_3",
        requester="admin",
        kind=custody_pb2.PAYLOAD_KIND_POLICY_CHANGE,
        payload=document,
        payload_hash=hashlib.sha256(document).digest(),
        digest=hashlib.sha256(document).digest(),
        decision=custody_pb2.Decision(
            action="approve", rule="admin", reason="admins decide", policy_version=1
        ),
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        summary={"active_version": "1", "proposed_version": "2"},
    )
    lines = [" ".join(line.split()) for line in request_text(request).splitlines()]
    assert "key: (none: a policy change)" in lines
    assert not any("()" in line for line in lines)
    answer = request_to_json(request)
    assert (answer["key"], answer["key_id"], answer["address"]) == (None, None, None)


def test_an_unfreeze_names_its_key_once() -> None:
    address = Account.create().address
    request = custody_pb2.SigningRequest(
        request_id="req_4",
        key_label="ops",
        key_id="ab01",
        address=address,
        requester="admin",
        kind=custody_pb2.PAYLOAD_KIND_KEY_UNFREEZE,
        decision=custody_pb2.Decision(
            action="approve", rule="admin", reason="admins decide", policy_version=1
        ),
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        summary={"action": "unfreeze", "key": "ops", "address": address, "freeze": "1", "reason": "fixed"},
    )
    # Field names are padded to one width; the words are what is checked.
    lines = [" ".join(line.split()) for line in request_text(request).splitlines()]
    assert [line for line in lines if line.startswith("key:")] == [f"key: ops ({address})"]
    assert [line for line in lines if address in line] == [f"key: ops ({address})"]
    assert "freeze: 1" in lines and "reason: fixed" in lines
    assert request_to_json(request)["summary"]["key"] == "ops"

"""What the approval end-to-end tests share: an environment of their own, approver keys, statements, stubs."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc
from custody.domain.approvals import ApprovalStatement
from custody.domain.requests import Verdict

from .conftest import Daemon, DevEnv, channel_for

RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def treasury_tx(nonce: int, value: int = 10**17) -> dict[str, object]:
    return {
        "type": 2,
        "chainId": 11155111,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": value,
        "gas": 21000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }


def independent_digest(tx: dict[str, object]) -> bytes:
    """The EIP-1559 signing hash computed by eth-account, not by custody."""
    return bytes(TypedTransaction.from_dict(dict(tx)).hash())


def approver_key(env: DevEnv, name: str) -> Ed25519PrivateKey:
    passphrase = (env.directory / "secrets" / f"{name}.passphrase").read_bytes().strip()
    key = serialization.load_pem_private_key(
        (env.directory / "approvers" / f"{name}.key").read_bytes(), password=passphrase
    )
    assert isinstance(key, Ed25519PrivateKey)
    return key


@dataclass
class Approvers:
    env: DevEnv
    daemon: Daemon

    def stub(self, identity: str, daemon: Daemon | None = None) -> pb_grpc.ApprovalServiceStub:
        return pb_grpc.ApprovalServiceStub(channel_for(self.env, daemon or self.daemon, identity))

    def statement(
        self,
        request: pb.SigningRequest,
        approver: str,
        verdict: Verdict = Verdict.APPROVE,
        *,
        expires_in: int = 600,
        **overrides: object,
    ) -> bytes:
        fields: dict[str, object] = {
            "request_id": request.request_id,
            "digest": request.digest,
            "payload_hash": hashlib.sha256(request.payload).digest(),
            "chain_id": request.chain_id or None,
            "key_id": request.key_id,
            "policy_version": request.decision.policy_version,
            "decision": verdict,
            "approver": approver,
            "expires_at": int(time.time()) + expires_in,
        }
        fields.update(overrides)
        return ApprovalStatement(**fields).to_bytes()  # type: ignore[arg-type]

    def approve(
        self,
        request: pb.SigningRequest,
        approver: str,
        *,
        caller: str | None = None,
        signer: str | None = None,
        daemon: Daemon | None = None,
        **overrides: object,
    ) -> pb.SigningRequest:
        """``approver`` is named in the statement; ``caller`` (default: the approver) sends it over mTLS and
        ``signer`` (default: the approver) signs it, so tests can make the three disagree."""
        statement = self.statement(request, approver, **overrides)
        signature = approver_key(self.env, signer or approver).sign(statement)
        return (
            self.stub(caller or approver, daemon)
            .Approve(
                pb.ApproveRequest(request_id=request.request_id, statement=statement, signature=signature)
            )
            .request
        )

    def reject(self, request: pb.SigningRequest, approver: str, reason: str) -> pb.SigningRequest:
        statement = self.statement(request, approver, Verdict.REJECT)
        signature = approver_key(self.env, approver).sign(statement)
        return (
            self.stub(approver)
            .Reject(
                pb.RejectRequest(
                    request_id=request.request_id, statement=statement, signature=signature, reason=reason
                )
            )
            .request
        )


def submit_tx(
    env: DevEnv, daemon: Daemon, identity: str, key: str, tx: dict[str, object]
) -> pb.SigningRequest:
    with channel_for(env, daemon, identity) as channel:
        return (
            pb_grpc.SigningServiceStub(channel)
            .SubmitRequest(
                pb.SubmitRequestRequest(
                    key_label=key, kind=pb.PAYLOAD_KIND_TRANSACTION, payload=json.dumps(tx).encode()
                )
            )
            .request
        )


def get_request(env: DevEnv, daemon: Daemon, request_id: str) -> pb.SigningRequest:
    with channel_for(env, daemon, "admin") as channel:
        return (
            pb_grpc.SigningServiceStub(channel)
            .GetRequest(pb.GetRequestRequest(request_id=request_id))
            .request
        )


def wait_for_state(
    env: DevEnv, daemon: Daemon, request_id: str, state: int, timeout: float = 20.0
) -> pb.SigningRequest:
    deadline = time.monotonic() + timeout
    while True:
        current = get_request(env, daemon, request_id)
        if current.state == state or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def assert_signed_by(request: pb.SigningRequest, address: str) -> None:
    assert request.state == pb.REQUEST_STATE_SIGNED, request
    assert Account.recover_transaction(request.signed_tx) == address

"""What the attack and incident end-to-end tests share: a daemon of their own on a fresh development environment,
clients for the identities they act as, and payloads built as a wallet or a drainer builds them.

Payloads are real JSON typed data and real calldata: selectors are keccak of the function signatures, arguments
are encoded with eth_abi, MultiSend batches are packed as MultiSend.sol unpacks them. Addresses taken from public
sources say where they come from; the others are invented for these tests and say so.

These tests judge what a payload does, not how it is stored, so they run on SQLite only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys as eth_keys
from eth_utils.crypto import keccak

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

from .approvals_support import Approvers
from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    channel_for,
    make_dev_env,
    run_cli,
    start_daemon,
    stop_daemon,
)

# --- Addresses ---------------------------------------------------------------------------------------------
# The example Safe the development policy names for the treasury (an example address of EIP-55).
EXAMPLE_SAFE = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
# Safe's MultiSendCallOnly 1.3.0 on Ethereum mainnet, as github.com/safe-global/safe-deployments lists it; the
# development policy lets the admin quorum run it by DELEGATECALL.
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
# USDC on Ethereum mainnet (Circle's FiatToken proxy, whose EIP-712 domain is "USD Coin", version "2").
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
# Uniswap's Permit2, deployed at this address on every chain it supports (github.com/Uniswap/permit2).
PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
# Uniswap's Universal Router on Ethereum mainnet (Uniswap's published deployment addresses), the spender a
# wallet asks a Permit2 allowance for when swapping.
UNIVERSAL_ROUTER = "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD"
# Invented for these tests: the attacker's account, a payee of routine payments, a second outside spender and
# the owner a permit is signed for.
ATTACKER = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"
PAYEE = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
OTHER_SPENDER = "0x52908400098527886E0F7030069857D2E4169EE7"
ZERO_ADDRESS = "0x" + "00" * 20

ONE_ETHER = 10**18
UINT256_MAX = 2**256 - 1
UINT160_MAX = 2**160 - 1
SAFE_CALL, SAFE_DELEGATECALL = 0, 1

# Quorums as the development policy states them.
TREASURY_QUORUM = [("treasury", 2)]
ADMIN_QUORUM = [("admins", 2)]


# --- Calldata ----------------------------------------------------------------------------------------------
def selector(signature: str) -> bytes:
    """The 4-byte function selector: the first bytes of keccak256 of the canonical signature."""
    return keccak(text=signature)[:4]


def function_call(signature: str, values: Sequence[Any], types: Sequence[str] | None = None) -> bytes:
    """Calldata of ``signature`` called with ``values``; ``types`` defaults to the signature's own argument
    list, which is right for every signature without tuples."""
    if types is None:
        inside = signature[signature.index("(") + 1 : -1]
        types = inside.split(",") if inside else []
    return selector(signature) + encode(list(types), list(values))


def erc20_transfer(to: str, amount: int) -> bytes:
    return function_call("transfer(address,uint256)", [to, amount])


def erc20_approve(spender: str, amount: int) -> bytes:
    return function_call("approve(address,uint256)", [spender, amount])


def transfer_ownership(new_owner: str) -> bytes:
    return function_call("transferOwnership(address)", [new_owner])


def upgrade_to(implementation: str) -> bytes:
    return function_call("upgradeTo(address)", [implementation])


def multisend(calls: Sequence[tuple[int, str, int, bytes]]) -> bytes:
    """multiSend(bytes): each call packed as MultiSend.sol reads it, abi.encodePacked(uint8 operation,
    address to, uint256 value, uint256 dataLength, bytes data)."""
    packed = b"".join(
        bytes([operation])
        + bytes.fromhex(to[2:])
        + value.to_bytes(32, "big")
        + len(data).to_bytes(32, "big")
        + data
        for operation, to, value, data in calls
    )
    return function_call("multiSend(bytes)", [packed])


def exec_transaction(to: str, data: bytes, operation: int, value: int = 0) -> bytes:
    """Safe.execTransaction without refunds; the signatures are placeholders, as the key signing this
    transaction only sends it (a Safe checks its owners' signatures on chain)."""
    return function_call(
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        [to, value, data, operation, 0, 0, 0, ZERO_ADDRESS, ZERO_ADDRESS, b"\x01" * 65],
    )


def transaction(
    to: str, nonce: int, data: bytes = b"", value: int = 0, chain_id: int = 11155111
) -> dict[str, Any]:
    """An EIP-1559 transaction whose fees stay within every fee cap of the development policy."""
    return {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to,
        "value": value,
        "gas": 300_000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x" + data.hex(),
    }


# --- Typed data --------------------------------------------------------------------------------------------
# Safe.sol (1.3.0 and later): EIP712Domain(uint256 chainId,address verifyingContract) and the SafeTx type.
SAFE_TX_TYPES = {
    "EIP712Domain": [
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "SafeTx": [
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "data", "type": "bytes"},
        {"name": "operation", "type": "uint8"},
        {"name": "safeTxGas", "type": "uint256"},
        {"name": "baseGas", "type": "uint256"},
        {"name": "gasPrice", "type": "uint256"},
        {"name": "gasToken", "type": "address"},
        {"name": "refundReceiver", "type": "address"},
        {"name": "nonce", "type": "uint256"},
    ],
}


def safe_tx(
    to: str,
    data: bytes,
    operation: int,
    *,
    value: int = 0,
    safe: str = EXAMPLE_SAFE,
    nonce: int = 0,
    chain_id: int = 1,
) -> dict[str, Any]:
    """The SafeTx an owner signs (what a Safe wallet sends to a hardware wallet), without refunds."""
    return {
        "types": SAFE_TX_TYPES,
        "primaryType": "SafeTx",
        "domain": {"chainId": chain_id, "verifyingContract": safe},
        "message": {
            "to": to,
            "value": str(value),
            "data": "0x" + data.hex(),
            "operation": operation,
            "safeTxGas": 0,
            "baseGas": 0,
            "gasPrice": 0,
            "gasToken": ZERO_ADDRESS,
            "refundReceiver": ZERO_ADDRESS,
            "nonce": nonce,
        },
    }


def eip2612_permit(spender: str, value: int, deadline: int, owner: str = PAYEE) -> dict[str, Any]:
    """An EIP-2612 Permit of USDC, with the type EIP-2612 states and USDC's own domain."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {"name": "USD Coin", "version": "2", "chainId": 1, "verifyingContract": USDC},
        "message": {
            "owner": owner,
            "spender": spender,
            "value": str(value),
            "nonce": 0,
            "deadline": str(deadline),
        },
    }


# Permit2's types as its PermitHash.sol and Uniswap's permit2-sdk state them, and its domain (name "Permit2",
# no version).
PERMIT2_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
PERMIT_DETAILS_TYPE = [
    {"name": "token", "type": "address"},
    {"name": "amount", "type": "uint160"},
    {"name": "expiration", "type": "uint48"},
    {"name": "nonce", "type": "uint48"},
]
TOKEN_PERMISSIONS_TYPE = [
    {"name": "token", "type": "address"},
    {"name": "amount", "type": "uint256"},
]
PERMIT2_DOMAIN = {"name": "Permit2", "chainId": 1, "verifyingContract": PERMIT2}


def permit2_single(spender: str, amount: int, expiration: int, token: str = USDC) -> dict[str, Any]:
    """A Permit2 PermitSingle: an allowance of ``amount`` of ``token`` for ``spender`` until ``expiration``."""
    return {
        "types": {
            "EIP712Domain": PERMIT2_DOMAIN_TYPE,
            "PermitSingle": [
                {"name": "details", "type": "PermitDetails"},
                {"name": "spender", "type": "address"},
                {"name": "sigDeadline", "type": "uint256"},
            ],
            "PermitDetails": PERMIT_DETAILS_TYPE,
        },
        "primaryType": "PermitSingle",
        "domain": PERMIT2_DOMAIN,
        "message": {
            "details": {"token": token, "amount": str(amount), "expiration": expiration, "nonce": 0},
            "spender": spender,
            "sigDeadline": str(expiration),
        },
    }


def permit2_batch(spender: str, tokens: Sequence[str], expiration: int) -> dict[str, Any]:
    """A Permit2 PermitBatch: unlimited allowances of every token in ``tokens`` for ``spender``."""
    return {
        "types": {
            "EIP712Domain": PERMIT2_DOMAIN_TYPE,
            "PermitBatch": [
                {"name": "details", "type": "PermitDetails[]"},
                {"name": "spender", "type": "address"},
                {"name": "sigDeadline", "type": "uint256"},
            ],
            "PermitDetails": PERMIT_DETAILS_TYPE,
        },
        "primaryType": "PermitBatch",
        "domain": PERMIT2_DOMAIN,
        "message": {
            "details": [
                {"token": token, "amount": str(UINT160_MAX), "expiration": expiration, "nonce": 0}
                for token in tokens
            ],
            "spender": spender,
            "sigDeadline": str(expiration),
        },
    }


def permit2_transfer_from(spender: str, amount: int, deadline: int, token: str = USDC) -> dict[str, Any]:
    """A Permit2 PermitTransferFrom (SignatureTransfer): ``spender`` may move ``amount`` of ``token`` once."""
    return {
        "types": {
            "EIP712Domain": PERMIT2_DOMAIN_TYPE,
            "PermitTransferFrom": [
                {"name": "permitted", "type": "TokenPermissions"},
                {"name": "spender", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
            "TokenPermissions": TOKEN_PERMISSIONS_TYPE,
        },
        "primaryType": "PermitTransferFrom",
        "domain": PERMIT2_DOMAIN,
        "message": {
            "permitted": {"token": token, "amount": str(amount)},
            "spender": spender,
            "nonce": "0",
            "deadline": str(deadline),
        },
    }


def typed_data_digest(typed_data: dict[str, Any]) -> bytes:
    """The EIP-712 digest as eth-account computes it, independently of custody."""
    signable = encode_typed_data(full_message=typed_data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


# --- The daemon --------------------------------------------------------------------------------------------
@dataclass
class Custody:
    """A running daemon on a development environment of its own, with the keys ``ops`` and ``treasury``."""

    env: DevEnv
    daemon: Daemon
    addresses: dict[str, str]  # key label -> address
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def channel(self, identity: str) -> grpc.Channel:
        if identity not in self._channels:
            self._channels[identity] = channel_for(self.env, self.daemon, identity)
        return self._channels[identity]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def submit(self, key: str, kind: int, payload: bytes | dict[str, Any]) -> pb.SigningRequest:
        """Submit as the backend, the identity an attacker who stole the backend certificate holds."""
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        stub = pb_grpc.SigningServiceStub(self.channel("backend"))
        return stub.SubmitRequest(pb.SubmitRequestRequest(key_label=key, kind=kind, payload=raw)).request

    def get(self, request_id: str) -> pb.SigningRequest:
        stub = pb_grpc.SigningServiceStub(self.channel("backend"))
        return stub.GetRequest(pb.GetRequestRequest(request_id=request_id)).request

    def explain(self, request_id: str) -> pb.ExplainRequestResponse:
        stub = pb_grpc.PolicyServiceStub(self.channel("backend"))
        return stub.ExplainRequest(pb.ExplainRequestRequest(request_id=request_id))

    def cli(self, identity: str, *args: str, check: bool = True) -> Any:
        return run_cli(self.env, self.daemon, identity, *args, check=check)

    @property
    def approvers(self) -> Approvers:
        return Approvers(self.env, self.daemon)

    def activate_policy(self, document: str) -> pb.SigningRequest:
        """Propose ``document`` as the admin and have the admin quorum (alice and dave) approve it with signed
        approval statements; returns the proposal, approved."""
        proposal = (
            pb_grpc.PolicyServiceStub(self.channel("admin"))
            .ProposePolicy(pb.ProposePolicyRequest(document=document))
            .request
        )
        assert proposal.state == pb.REQUEST_STATE_PENDING_APPROVAL, proposal
        self.approvers.approve(proposal, "alice")
        approved = self.approvers.approve(proposal, "dave")
        assert approved.state == pb.REQUEST_STATE_APPROVED, approved
        return approved

    def active_policy(self) -> tuple[int, str]:
        response = pb_grpc.PolicyServiceStub(self.channel("admin")).GetPolicy(pb.GetPolicyRequest())
        return response.version, response.document


@contextmanager
def running_custody(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, name: str
) -> Iterator[Custody]:
    """`custody dev init` and `custody serve` for one test module, with its keys created by the admin."""
    env = make_dev_env(tmp_path_factory.mktemp(name) / "env", "sqlite", databases)
    daemon = start_daemon(env, tmp_path_factory.mktemp(f"{name}-logs") / "daemon.log")
    custody = Custody(env, daemon, {})
    try:
        keys = pb_grpc.KeyServiceStub(custody.channel("admin"))
        for label in ("ops", "treasury"):
            created = keys.CreateKey(pb.CreateKeyRequest(label=label)).key
            # The address is recomputed from the public key here, so recovered signers are compared with an
            # address custody did not merely state.
            derived = eth_keys.PublicKey(bytes(created.public_key)[1:]).to_checksum_address()
            assert derived == created.address
            custody.addresses[label] = created.address
        yield custody
    finally:
        custody.close()
        assert stop_daemon(daemon) == 0, daemon.log()


# --- What the tests check ----------------------------------------------------------------------------------
def decision_of(request: pb.SigningRequest) -> tuple[str, str | None, list[tuple[str, int]]]:
    decision = request.decision
    return decision.action, decision.rule or None, [(t.group, t.threshold) for t in decision.quorum]


def assert_denied_naming(custody: Custody, request: pb.SigningRequest, *words: str) -> None:
    """The request was denied, nothing was signed, and both the decision's reason and the `policy explain`
    trace name what the payload does."""
    assert request.state == pb.REQUEST_STATE_DENIED, request
    assert not request.signature and not request.signed_tx
    for word in words:
        assert word in request.decision.reason, (word, request.decision.reason)
    explanation = custody.explain(request.request_id)
    assert explanation.decision.action == "deny"
    assert not any(rule.matched for rule in explanation.rules)
    details = " ".join(c.detail for rule in explanation.rules for c in rule.conditions if not c.matched)
    for word in words:
        assert word in details, (word, details)


def failed_conditions(custody: Custody, request_id: str, rule_name: str) -> dict[str, str]:
    """The conditions of ``rule_name`` that did not match ``request_id``, by name, with their details."""
    explanation = custody.explain(request_id)
    (rule,) = [rule for rule in explanation.rules if rule.rule == rule_name]
    return {condition.condition: condition.detail for condition in rule.conditions if not condition.matched}


def assert_typed_data_signed_by(request: pb.SigningRequest, typed_data: dict[str, Any], address: str) -> None:
    assert request.state == pb.REQUEST_STATE_SIGNED, request
    signable = encode_typed_data(full_message=typed_data)
    assert Account.recover_message(signable, signature=bytes(request.signature)) == address


def assert_transaction_signed_by(request: pb.SigningRequest, address: str) -> None:
    assert request.state == pb.REQUEST_STATE_SIGNED, request
    assert Account.recover_transaction(bytes(request.signed_tx)) == address


def unix_now() -> int:
    return int(time.time())

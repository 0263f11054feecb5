"""EVM payloads built as a wallet would build them, independently of custody: calldata with eth_abi and
selectors from keccak, EIP-712 documents with the types their contracts state, and their digests as
eth-account computes them. Shared by the policy, screen and end-to-end tests; addresses name their source,
or say they are invented.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

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


# An example EIP-7702 delegate (EIP-55 checksummed), the one the README's example rule names; the tests rely on
# nothing its address may hold.
EXAMPLE_DELEGATE = "0x63c0c19a282a1B52b07dD5a65b58948A07DAE32B"
# Invented for these tests: the key of an account that signs authorizations outside custody.
OUTSIDE_AUTHORITY_KEY = "0x" + "22" * 32


def blob_transaction(to: str, nonce: int, value: int = 0, chain_id: int = 11155111) -> dict[str, Any]:
    """An EIP-4844 transaction with one blob's versioned hash (version byte 0x01), fees as ``transaction``'s."""
    return {
        "type": 3,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to,
        "value": value,
        "gas": 21_000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "maxFeePerBlobGas": 10**9,
        "blobVersionedHashes": ["0x01" + "ab" * 31],
    }


def signed_authorization(
    chain_id: int, delegate: str = EXAMPLE_DELEGATE, nonce: int = 0, private_key: str = OUTSIDE_AUTHORITY_KEY
) -> dict[str, Any]:
    """An EIP-7702 authorization signed by eth-account, as a set-code transaction's authorizationList holds it
    (r and s as 0x-hex)."""
    signed = Account.sign_authorization(
        {"chainId": chain_id, "address": delegate, "nonce": nonce}, private_key
    )
    return {
        "chainId": chain_id,
        "address": delegate,
        "nonce": nonce,
        "yParity": signed.y_parity,
        "r": hex(signed.r),
        "s": hex(signed.s),
    }


def set_code_transaction(
    to: str, nonce: int, authorizations: Sequence[dict[str, Any]], value: int = 0, chain_id: int = 11155111
) -> dict[str, Any]:
    """An EIP-7702 transaction carrying ``authorizations``, with the least gas it may have (21,000 plus 25,000
    per authorization), fees as ``transaction``'s."""
    return {
        "type": 4,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to,
        "value": value,
        "gas": 21_000 + 25_000 * len(authorizations),
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "authorizationList": list(authorizations),
    }


def apply_invalid_case(base: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` changed as a case of tests/vectors/invalid_blob_set_code_transactions.json says: its
    ``remove`` and ``set``, then ``remove_authorization`` and ``set_authorization`` on the first authorization."""
    transaction: dict[str, Any] = copy.deepcopy(base)
    for name in case.get("remove", []):
        del transaction[name]
    transaction.update(case.get("set", {}))
    if "set_authorization" in case or "remove_authorization" in case:
        first = transaction["authorizationList"][0]
        for name in case.get("remove_authorization", []):
            del first[name]
        first.update(case.get("set_authorization", {}))
    return transaction


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

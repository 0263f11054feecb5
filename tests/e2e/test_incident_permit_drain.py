"""Permit drains, 2024-2025: phishing pages ask for a gasless signature, an EIP-2612 Permit or a Uniswap Permit2
allowance or transfer, and the drainer spends the victim's tokens with it at once; no transaction is ever shown.

Each form of permit to a spender no rule names (limited or not, short-lived or not, as typed data or as the
Permit2 contract's own approve call) is denied to every key, naming the permit; the approver's screen spells
out an unlimited one. A real daemon, under the development policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import (
    ATTACKER,
    PAYEE,
    PERMIT2,
    UINT160_MAX,
    UINT256_MAX,
    USDC,
    eip2612_permit,
    function_call,
    permit2_batch,
    permit2_single,
    permit2_transfer_from,
    transaction,
)

from .conftest import Databases, Nonces
from .incident_support import (
    Custody,
    assert_denied_naming,
    running_custody,
    unix_now,
)

# DAI on Ethereum mainnet (MakerDAO's dai.sol), whose permit predates EIP-2612: allowed = true grants an
# unlimited allowance, and expiry 0 never expires.
DAI = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
# WETH on Ethereum mainnet (WETH9), a second token for a batch.
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"


def dai_permit(spender: str) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Permit": [
                {"name": "holder", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "expiry", "type": "uint256"},
                {"name": "allowed", "type": "bool"},
            ],
        },
        "primaryType": "Permit",
        "domain": {"name": "Dai Stablecoin", "version": "1", "chainId": 1, "verifyingContract": DAI},
        "message": {"holder": PAYEE, "spender": spender, "nonce": 0, "expiry": 0, "allowed": True},
    }


def permit2_approve_call(nonce: int) -> dict[str, Any]:
    """Permit2's on-chain approve(token, spender, amount, expiration), sent by the key itself."""
    calldata = function_call(
        "approve(address,address,uint160,uint48)", [USDC, ATTACKER, UINT160_MAX, unix_now() + 600]
    )
    return transaction(PERMIT2, nonce, calldata, chain_id=1)


TYPED_DATA_PERMITS: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    "eip2612-unlimited-forever": (
        lambda: eip2612_permit(ATTACKER, UINT256_MAX, UINT256_MAX),
        "permit 'Permit'",
    ),
    "eip2612-100-usdc-for-ten-minutes": (
        lambda: eip2612_permit(ATTACKER, 100 * 10**6, unix_now() + 600),
        "permit 'Permit'",
    ),
    "dai-permit-allowed": (lambda: dai_permit(ATTACKER), "permit 'Permit'"),
    "permit2-single-unlimited": (
        lambda: permit2_single(ATTACKER, UINT160_MAX, unix_now() + 600),
        "permit2_allowance 'PermitSingle'",
    ),
    "permit2-single-small": (
        lambda: permit2_single(ATTACKER, 10 * 10**6, unix_now() + 600),
        "permit2_allowance 'PermitSingle'",
    ),
    "permit2-batch-of-every-token": (
        lambda: permit2_batch(ATTACKER, [USDC, DAI, WETH], unix_now() + 600),
        "permit2_allowance 'PermitBatch'",
    ),
    "permit2-transfer-from": (
        lambda: permit2_transfer_from(ATTACKER, 50_000 * 10**6, unix_now() + 600),
        "permit2_transfer 'PermitTransferFrom'",
    ),
}


@pytest.fixture(scope="module")
def custody(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Custody]:
    with running_custody(tmp_path_factory, databases, "permit-drain") as running:
        yield running


@pytest.mark.parametrize("permit", list(TYPED_DATA_PERMITS))
@pytest.mark.parametrize("key", ["ops", "treasury"])
def test_a_permit_to_an_unknown_spender_is_denied(custody: Custody, key: str, permit: str) -> None:
    build, named = TYPED_DATA_PERMITS[permit]
    request = custody.submit(key, pb.PAYLOAD_KIND_TYPED_DATA, build())
    assert_denied_naming(custody, request, named)


@pytest.mark.parametrize("key", ["ops", "treasury"])
def test_permit2s_own_approve_call_to_an_unknown_spender_is_denied(
    custody: Custody, nonces: Nonces, key: str
) -> None:
    request = custody.submit(key, pb.PAYLOAD_KIND_TRANSACTION, permit2_approve_call(next(nonces)))
    assert_denied_naming(custody, request, "permit2_allowance 'approve(address,address,uint160,uint48)'")


def test_the_screen_spells_out_the_unlimited_permit_and_its_spender(custody: Custody) -> None:
    build, _ = TYPED_DATA_PERMITS["eip2612-unlimited-forever"]
    request = custody.submit("ops", pb.PAYLOAD_KIND_TYPED_DATA, build())
    shown = json.loads(custody.cli("alice", "--json", "requests", "show", request.request_id).stdout)
    assert shown["state"] == "DENIED"
    assert shown["intent_flags"] == ["unlimited approval"]
    (permit,) = shown["intents"]
    assert permit["kind"] == "permit"
    assert permit["contract"] == USDC
    assert permit["parties"] == [{"role": "spender", "address": ATTACKER}]
    assert permit["amounts"] == [
        {"token": USDC, "amount": str(UINT256_MAX), "token_id": None, "unlimited": True}
    ]

"""The signatures that drain treasuries, tried by an attacker who holds only the backend certificate, against a
real daemon under the development policy: each is denied, with a reason (and a `policy explain` trace) that
names what the payload does. Then an operator allows exactly one of them (Permit2 PermitSingle of USDC to
Uniswap's Universal Router, up to a cap) through the admin quorum: that permit is signed, and the same permit to
another spender or above the cap, and every other attack, stay denied.

Every signature obtained is checked by recovering its signer with eth-account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import (
    ATTACKER,
    OTHER_SPENDER,
    PAYEE,
    PERMIT2,
    SAFE_CALL,
    SAFE_DELEGATECALL,
    UINT160_MAX,
    UINT256_MAX,
    UNIVERSAL_ROUTER,
    USDC,
    eip2612_permit,
    erc20_approve,
    erc20_transfer,
    function_call,
    permit2_batch,
    permit2_single,
    safe_tx,
    transaction,
    typed_data_digest,
)

from .conftest import Databases, Nonces
from .incident_support import (
    Custody,
    assert_denied_naming,
    assert_typed_data_signed_by,
    failed_conditions,
    running_custody,
    unix_now,
)

ONE_ETHER = 10**18
# Bored Ape Yacht Club on Ethereum mainnet (Yuga Labs' ERC-721 collection), whose every token a
# setApprovalForAll hands to the operator.
BAYC = "0xBC4CA0EdA7647A8aB7C2061c2E118A18a936f13D"
# The operator's cap: 1,000 USDC (6 decimals) in base units.
PERMIT2_CAP = 1_000 * 10**6
PERMIT2_HORIZON_SECONDS = 3600

TRANSACTION, TYPED_DATA, MESSAGE = (
    pb.PAYLOAD_KIND_TRANSACTION,
    pb.PAYLOAD_KIND_TYPED_DATA,
    pb.PAYLOAD_KIND_MESSAGE,
)

# A SafeTx of the example Safe that moves 1,000 ether by DELEGATECALL into the attacker's contract: typed data
# sends no value itself, which is how a rule written for ether payments to the Safe once matched it.
THOUSAND_ETHER_BY_DELEGATECALL = safe_tx(ATTACKER, b"", SAFE_DELEGATECALL, value=1_000 * ONE_ETHER, nonce=42)


def attacks(nonce: Callable[[], int]) -> dict[str, tuple[int, Any, str]]:
    """Each attack of the issue as (payload kind, payload, the words its denial must name); permit deadlines
    lie in the future, so that only what the payload does can deny it."""
    later = unix_now() + 600
    return {
        "eip2612-permit-of-everything-to-a-stranger": (
            TYPED_DATA,
            eip2612_permit(ATTACKER, UINT256_MAX, UINT256_MAX),
            "permit 'Permit'",
        ),
        "permit2-permit-single": (
            TYPED_DATA,
            permit2_single(ATTACKER, UINT160_MAX, later),
            "permit2_allowance 'PermitSingle'",
        ),
        "safe-tx-by-delegatecall": (
            TYPED_DATA,
            safe_tx(ATTACKER, erc20_transfer(PAYEE, 10**6), SAFE_DELEGATECALL, nonce=41),
            "safe_transaction 'SafeTx'",
        ),
        # A Safe accepts an owner's eth_sign signature of the safeTxHash (the EIP-191 message of its 32 bytes)
        # as that owner's approval of the Safe transaction.
        "safe-tx-hash-as-a-message": (
            MESSAGE,
            typed_data_digest(THOUSAND_ETHER_BY_DELEGATECALL),
            "binary_message",
        ),
        "approve-attacker-for-everything": (
            TRANSACTION,
            transaction(USDC, nonce(), erc20_approve(ATTACKER, UINT256_MAX)),
            "erc20_approve 'approve(address,uint256)'",
        ),
        "set-approval-for-all": (
            TRANSACTION,
            transaction(BAYC, nonce(), function_call("setApprovalForAll(address,bool)", [ATTACKER, True])),
            "set_approval_for_all 'setApprovalForAll(address,bool)'",
        ),
        "safe-tx-moving-1000-ether-by-delegatecall": (
            TYPED_DATA,
            THOUSAND_ETHER_BY_DELEGATECALL,
            "safe_transaction 'SafeTx'",
        ),
    }


ATTACK_NAMES = list(attacks(lambda: 0))


@pytest.fixture(scope="module")
def custody(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Custody]:
    with running_custody(tmp_path_factory, databases, "attacks") as running:
        yield running


@pytest.mark.parametrize("attack", ATTACK_NAMES)
@pytest.mark.parametrize("key", ["ops", "treasury"])
def test_each_attack_is_denied_naming_what_it_does(
    custody: Custody, nonces: Nonces, key: str, attack: str
) -> None:
    kind, payload, named = attacks(lambda: next(nonces))[attack]
    request = custody.submit(key, kind, payload)
    assert_denied_naming(custody, request, named)


def test_a_delegatecall_moving_1000_ether_matches_no_rule_written_for_ether(custody: Custody) -> None:
    request = custody.submit("treasury", TYPED_DATA, THOUSAND_ETHER_BY_DELEGATECALL)
    assert_denied_naming(custody, request, "runs code by DELEGATECALL")
    # The ether rules' value and fee caps say nothing about typed data, so they fail on it rather than
    # passing vacuously: even without their kinds condition these rules would not match it.
    ops_rule = failed_conditions(custody, request.request_id, "ops-transactions")
    assert "not a transaction" in ops_rule["max_value_wei"]
    treasury_rule = failed_conditions(custody, request.request_id, "treasury-transactions")
    assert "not a transaction" in treasury_rule["max_fee_wei"]
    # The treasury's own SafeTx rule refuses the DELEGATECALL.
    refused = failed_conditions(custody, request.request_id, "treasury-safe-transactions")
    assert "runs code by DELEGATECALL" in refused["safe_operations"]
    # The same 1,000 ether by CALL to a payee is what the treasury rules are for: held for 2 of the treasury.
    by_call = safe_tx(PAYEE, b"", SAFE_CALL, value=1_000 * ONE_ETHER, nonce=43)
    held = custody.submit("treasury", TYPED_DATA, by_call)
    assert held.state == pb.REQUEST_STATE_PENDING_APPROVAL, held
    assert held.decision.rule == "treasury-safe-transactions"
    assert [(term.group, term.threshold) for term in held.decision.quorum] == [("treasury", 2)]


def permit2_rule() -> str:
    """The one rule the operator adds: Permit2 PermitSingle allowances of USDC for the Universal Router, at most
    1,000 USDC and at most an hour ahead, signed at once by ops."""
    return f"""
# Swaps through Uniswap: ops may give the Universal Router a Permit2 allowance of at most 1,000 USDC for at
# most an hour. Nothing else about permits changes.
[[rules]]
name = "ops-permit2-universal-router"
keys = ["ops"]
kinds = ["typed_data"]
chain_ids = [1]
intents = ["permit2_allowance"]
tokens = ["{USDC}"]
spenders = ["{UNIVERSAL_ROUTER}"]
token_caps = [{{ token = "{USDC}", max = "{PERMIT2_CAP}" }}]
max_permit_horizon_seconds = {PERMIT2_HORIZON_SECONDS}
typed_data = [{{ primary_type = "PermitSingle", name = "Permit2", chain_id = 1, verifying_contract = "{PERMIT2}" }}]
action = "sign"
"""


@pytest.fixture(scope="module")
def permit2_allowed(custody: Custody) -> int:
    """The development policy plus the operator's Permit2 rule, proposed by the admin and approved by the admin
    quorum; returns the new policy version."""
    version, document = custody.active_policy()
    assert f"version = {version}\n" in document
    proposed = document.replace(f"version = {version}\n", f"version = {version + 1}\n", 1) + permit2_rule()
    custody.activate_policy(proposed)
    active_version, active_document = custody.active_policy()
    assert active_version == version + 1 and active_document == proposed
    return active_version


def test_the_operators_rule_signs_exactly_that_permit2(custody: Custody, permit2_allowed: int) -> None:
    typed_data = permit2_single(UNIVERSAL_ROUTER, PERMIT2_CAP, unix_now() + 1800)
    request = custody.submit("ops", TYPED_DATA, typed_data)
    assert request.decision.rule == "ops-permit2-universal-router"
    assert request.decision.policy_version == permit2_allowed
    assert bytes(request.digest) == typed_data_digest(typed_data)
    assert_typed_data_signed_by(request, typed_data, custody.addresses["ops"])


@pytest.mark.parametrize(
    ("variant", "named"),
    [
        pytest.param(
            lambda: permit2_single(OTHER_SPENDER, PERMIT2_CAP, unix_now() + 1800),
            f"spender {OTHER_SPENDER}",
            id="another-spender",
        ),
        pytest.param(
            lambda: permit2_single(UNIVERSAL_ROUTER, PERMIT2_CAP + 1, unix_now() + 1800),
            f"over its cap of {PERMIT2_CAP}",
            id="one-base-unit-above-the-cap",
        ),
        pytest.param(
            lambda: permit2_single(UNIVERSAL_ROUTER, UINT160_MAX, unix_now() + 1800),
            "unlimited approval",
            id="unlimited",
        ),
        pytest.param(
            lambda: permit2_single(UNIVERSAL_ROUTER, PERMIT2_CAP, unix_now() + 30 * 86400),
            "beyond the horizon",
            id="valid-for-a-month",
        ),
        pytest.param(
            lambda: permit2_batch(UNIVERSAL_ROUTER, [USDC], unix_now() + 1800),
            "'PermitBatch'",
            id="permit-batch",
        ),
    ],
)
def test_the_operators_rule_allows_no_other_permit2(
    custody: Custody, permit2_allowed: int, variant: Callable[[], dict[str, Any]], named: str
) -> None:
    request = custody.submit("ops", TYPED_DATA, variant())
    assert request.decision.policy_version == permit2_allowed
    assert_denied_naming(custody, request, "permit2_allowance")
    refused = failed_conditions(custody, request.request_id, "ops-permit2-universal-router")
    assert named in " ".join(refused.values()), refused


@pytest.mark.parametrize("attack", ATTACK_NAMES)
def test_the_other_attacks_stay_denied_after_the_change(
    custody: Custody, permit2_allowed: int, nonces: Nonces, attack: str
) -> None:
    kind, payload, named = attacks(lambda: next(nonces))[attack]
    request = custody.submit("ops", kind, payload)
    assert request.decision.policy_version == permit2_allowed
    assert_denied_naming(custody, request, named)

"""A Governor proposal that does more than it says: proposals bundle many actions and readers check a few, and a
proposal whose code did more than its description is how Tornado Cash's governance was taken over in May 2023.

Here an OpenZeppelin Governor propose() described as two contributor grants hides an upgradeTo of the protocol's
proxy between them: it must wait for the admin quorum, never be signed on the treasury's word, and the
approver's screen must show the UPGRADE and the proposal id the Governor will compute. A real daemon.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import (
    ADMIN_QUORUM,
    TREASURY_QUORUM,
    USDC,
    erc20_transfer,
    function_call,
    transaction,
    upgrade_to,
)

from .conftest import Databases, Nonces
from .incident_support import (
    Custody,
    assert_denied_naming,
    decision_of,
    running_custody,
)

# The Governor and the protocol's upgradeable proxy are the development policy's invented examples (its rule
# treasury-governance-proposals); the new implementation and the two grantees are invented for this test.
GOVERNOR = "0x78Db0C61a89aA2646c860Df401De476Fbf378983"
PROTOCOL_PROXY = "0xbc2Dbb7376C8e3a01A5C48F4b32E7b3b3897AE79"
NEW_IMPLEMENTATION = "0xF9958543F1A8a7fC458D08234538E628C9660bFc"
GRANTEE_ONE = "0x91C68F2cE79aE31Bd8C1234f3B74B9dB5165868e"
GRANTEE_TWO = "0x4547c4545416ABec761c6E21b84Bd2A0F9F4BD4f"

DESCRIPTION = "# Q3 contributor grants\n\nTwo USDC grants, as discussed on the forum."
TARGETS = [USDC, PROTOCOL_PROXY, USDC]
VALUES = [0, 0, 0]
CALLDATAS = [
    erc20_transfer(GRANTEE_ONE, 40_000 * 10**6),
    upgrade_to(NEW_IMPLEMENTATION),
    erc20_transfer(GRANTEE_TWO, 25_000 * 10**6),
]
# Governor.hashProposal: uint256(keccak256(abi.encode(targets, values, calldatas, keccak256(description)))).
PROPOSAL_ID = int.from_bytes(
    keccak(
        encode(
            ["address[]", "uint256[]", "bytes[]", "bytes32"],
            [TARGETS, VALUES, CALLDATAS, keccak(text=DESCRIPTION)],
        )
    ),
    "big",
)


def proposal(nonce: int) -> dict[str, Any]:
    calldata = function_call(
        "propose(address[],uint256[],bytes[],string)", [TARGETS, VALUES, CALLDATAS, DESCRIPTION]
    )
    return transaction(GOVERNOR, nonce, calldata, chain_id=1)


@pytest.fixture(scope="module")
def custody(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Custody]:
    with running_custody(tmp_path_factory, databases, "governor-upgrade") as running:
        yield running


def test_the_proposal_waits_for_the_admin_quorum(custody: Custody, nonces: Nonces) -> None:
    request = custody.submit("treasury", pb.PAYLOAD_KIND_TRANSACTION, proposal(next(nonces)))
    assert request.state == pb.REQUEST_STATE_PENDING_APPROVAL, request.decision.reason
    action, _rule, quorum = decision_of(request)
    assert (action, quorum) == ("approve", ADMIN_QUORUM)


def test_the_proposal_is_never_signed_on_the_treasurys_word(custody: Custody, nonces: Nonces) -> None:
    request = custody.submit("treasury", pb.PAYLOAD_KIND_TRANSACTION, proposal(next(nonces)))
    assert request.state in (pb.REQUEST_STATE_DENIED, pb.REQUEST_STATE_PENDING_APPROVAL), request
    assert not request.signature and not request.signed_tx
    assert decision_of(request)[2] != TREASURY_QUORUM


def test_ops_may_not_propose(custody: Custody, nonces: Nonces) -> None:
    request = custody.submit("ops", pb.PAYLOAD_KIND_TRANSACTION, proposal(next(nonces)))
    assert_denied_naming(
        custody, request, f"governor_propose 'propose(address[],uint256[],bytes[],string)' on {GOVERNOR}"
    )


def test_the_screen_shows_the_hidden_upgrade_and_the_proposal_id(custody: Custody, nonces: Nonces) -> None:
    request = custody.submit("treasury", pb.PAYLOAD_KIND_TRANSACTION, proposal(next(nonces)))
    screen = custody.cli("alice", "requests", "show", request.request_id).stdout
    # The upgrade is the proposal's second action: intent 1.2, flagged on the screen's first line.
    assert screen.splitlines()[0].startswith("!!! UPGRADE (intent 1.2):"), screen
    assert re.search(r"\n +\[1\.2\] .*!!! UPGRADE !!!\n", screen), screen
    assert re.search(rf"\n +implementation +{NEW_IMPLEMENTATION}\n", screen), screen
    assert re.search(rf"\n +contract +{PROTOCOL_PROXY}\n", screen), screen
    assert re.search(rf"\n +proposal id +{PROPOSAL_ID}\n", screen), screen
    # The grants around it are shown too, each with its grantee.
    for grantee in (GRANTEE_ONE, GRANTEE_TWO):
        assert re.search(rf"\n +recipient +{grantee}\n", screen), screen

"""A hash as a message: a signing service is asked for an EIP-191 signature of 32 unreadable bytes, which are the
safeTxHash of a transaction of the signer's Safe; Safe counts such an eth_sign signature as the owner's approval.

The 32 bytes here are a real safeTxHash, computed by eth-account; as a message they are denied to every key,
naming the binary message, and the approver's screen calls them a hash-like message. Printable text of the
same length is still signed at once by ops, and that signature is checked with eth-account.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from custody.api._gen import custody_pb2 as pb
from tests.evm_payloads import (
    ATTACKER,
    ONE_ETHER,
    SAFE_CALL,
    safe_tx,
    typed_data_digest,
)

from .conftest import Databases
from .incident_support import (
    Custody,
    assert_denied_naming,
    running_custody,
)

# A real Safe transaction on Base with its published safeTxHash; the vector file names its source.
PUBLISHED_SAFE_TX = json.loads((Path(__file__).parents[1] / "vectors" / "intents_safe.json").read_text())[
    "vectors"
][0]

# What the attacker wants approved: the example Safe sending 500 ether to the attacker, by a plain CALL.
DRAIN = safe_tx(ATTACKER, b"", SAFE_CALL, value=500 * ONE_ETHER, nonce=12)
DRAIN_SAFE_TX_HASH = typed_data_digest(DRAIN)


@pytest.fixture(scope="module")
def custody(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Custody]:
    with running_custody(tmp_path_factory, databases, "hash-like-message") as running:
        yield running


def test_the_safe_tx_hash_is_computed_as_safe_computes_it() -> None:
    """The digest used for the attack is the safeTxHash: the same computation gives a published one."""
    assert typed_data_digest(PUBLISHED_SAFE_TX["typed_data"]).hex() == PUBLISHED_SAFE_TX["digest"][2:]
    assert len(DRAIN_SAFE_TX_HASH) == 32


@pytest.mark.parametrize("key", ["ops", "treasury"])
def test_a_safe_tx_hash_as_a_message_is_denied(custody: Custody, key: str) -> None:
    request = custody.submit(key, pb.PAYLOAD_KIND_MESSAGE, DRAIN_SAFE_TX_HASH)
    assert_denied_naming(custody, request, "binary_message")


@pytest.mark.parametrize("size", [31, 33, 64])
def test_other_binary_messages_are_denied_to_ops(custody: Custody, size: int) -> None:
    # Bytes that do not decode as printable text, of other lengths than a hash.
    request = custody.submit("ops", pb.PAYLOAD_KIND_MESSAGE, bytes([0x8F]) * size)
    assert_denied_naming(custody, request, "binary_message")


def test_the_screen_calls_it_a_hash_like_message(custody: Custody) -> None:
    request = custody.submit("ops", pb.PAYLOAD_KIND_MESSAGE, DRAIN_SAFE_TX_HASH)
    screen = custody.cli("alice", "requests", "show", request.request_id).stdout
    assert screen.splitlines()[0].startswith("!!! HASH-LIKE MESSAGE (intent 1):"), screen
    assert f"0x{DRAIN_SAFE_TX_HASH.hex()}" in screen
    shown = json.loads(custody.cli("alice", "--json", "requests", "show", request.request_id).stdout)
    assert shown["intent_flags"] == ["hash-like message"]
    assert [intent["kind"] for intent in shown["intents"]] == ["binary_message"]


def test_printable_text_of_32_bytes_is_signed_by_ops(custody: Custody) -> None:
    text = b"I approve the Q3 budget, item 7."
    assert len(text) == 32
    request = custody.submit("ops", pb.PAYLOAD_KIND_MESSAGE, text)
    assert request.state == pb.REQUEST_STATE_SIGNED, request
    assert request.decision.rule == "ops-messages"
    signer = Account.recover_message(encode_defunct(text), signature=bytes(request.signature))
    assert signer == custody.addresses["ops"]

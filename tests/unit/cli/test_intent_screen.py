"""The approver's screen for real payloads: everything that is signed, in full, and what it does.

Payloads are built as a wallet or dapp builds them (JSON transactions with eth_abi-encoded calldata, EIP-712
documents, raw message bytes); each request's digest is computed independently by eth-account, so the screen is
only ever shown for bytes whose digest the CLI recomputed and matched. The commands run against a real mTLS gRPC
server that serves the request as the daemon would, and approvals are signed with the real approver key files
`custody dev init` writes and verified here with the policy's public key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_abi.abi import encode
from eth_abi.packed import encode_packed
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from custody.api._gen import custody_pb2, custody_pb2_grpc
from custody.cli.approve import SignedVerdict, load_approver_signer, review_and_sign
from custody.cli.dev_env import DevEnvironment, init_dev_environment
from custody.cli.errors import NotConfirmed
from custody.cli.main import run
from custody.cli.profile import load_profile
from custody.cli.review import MAX_SCREEN_ROWS, recompute_hashes, review_text, screen_rows
from custody.domain.requests import Verdict

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
NOW = 1_900_000_000
VECTORS = Path(__file__).parents[2] / "vectors"
SAFE = "0x1f9090aaE28b8a3dCeaDf281B0F12828e676c326"
# MultiSendCallOnly 1.3.0, as the Safe deployments list it for mainnet.
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
TOKEN = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
GOVERNED = "0x1F98431c8aD98523631AE4a59f267346ea31F984"
# Selectors from the functions' signatures, computed here rather than copied.
MULTISEND = keccak(text="multiSend(bytes)")[:4]
TRANSFER = keccak(text="transfer(address,uint256)")[:4]
APPROVE = keccak(text="approve(address,uint256)")[:4]
TRANSFER_OWNERSHIP = keccak(text="transferOwnership(address)")[:4]
# Seaport 1.5, as OpenSea's orders name it in their EIP-712 domain.
SEAPORT = "0x00000000000000ADc04C56Bf30aC9d3c0aAF14dC"
SEAPORT_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    # The type strings of Seaport's ConsiderationTypeHashes.sol.
    "OrderComponents": [
        {"name": "offerer", "type": "address"},
        {"name": "zone", "type": "address"},
        {"name": "offer", "type": "OfferItem[]"},
        {"name": "consideration", "type": "ConsiderationItem[]"},
        {"name": "orderType", "type": "uint8"},
        {"name": "startTime", "type": "uint256"},
        {"name": "endTime", "type": "uint256"},
        {"name": "zoneHash", "type": "bytes32"},
        {"name": "salt", "type": "uint256"},
        {"name": "conduitKey", "type": "bytes32"},
        {"name": "counter", "type": "uint256"},
    ],
    "OfferItem": [
        {"name": "itemType", "type": "uint8"},
        {"name": "token", "type": "address"},
        {"name": "identifierOrCriteria", "type": "uint256"},
        {"name": "startAmount", "type": "uint256"},
        {"name": "endAmount", "type": "uint256"},
    ],
    "ConsiderationItem": [
        {"name": "itemType", "type": "uint8"},
        {"name": "token", "type": "address"},
        {"name": "identifierOrCriteria", "type": "uint256"},
        {"name": "startAmount", "type": "uint256"},
        {"name": "endAmount", "type": "uint256"},
        {"name": "recipient", "type": "address"},
    ],
}
OFFER_FIELDS = ("itemType", "token", "identifierOrCriteria", "startAmount", "endAmount")
CONSIDERATION_FIELDS = (*OFFER_FIELDS, "recipient")


def address(number: int) -> str:
    """A distinct checksummed address per number, so that every item's values can be told apart."""
    return to_checksum_address(keccak(number.to_bytes(32, "big"))[-20:])


# A treasury batch run by DELEGATECALL to MultiSendCallOnly: pay 1234 units of a token, approve a spender for
# everything, send 0.5 ether, and hand a contract to a new owner (the shape of the Radiant incident).
BATCH = [
    (0, TOKEN, 0, TRANSFER + encode(["address", "uint256"], [address(1), 1234])),
    (0, TOKEN, 0, APPROVE + encode(["address", "uint256"], [address(2), 2**256 - 1])),
    (0, address(3), 5 * 10**17, b""),
    (0, GOVERNED, 0, TRANSFER_OWNERSHIP + encode(["address"], [address(4)])),
]
# A Safe owner's own transaction, for calldata sent on-chain.
SAFE_OWNER_TRANSACTION = {
    "type": 2,
    "chainId": 1,
    "nonce": 4,
    "to": SAFE,
    "value": 0,
    "gas": 300_000,
    "maxFeePerGas": 30 * 10**9,
    "maxPriorityFeePerGas": 10**9,
}


def seaport_order(offer_items: int, consideration_items: int) -> dict[str, Any]:
    """An OpenSea-style listing: ``offer_items`` NFTs offered, paid to ``consideration_items`` recipients."""
    return {
        "types": SEAPORT_TYPES,
        "primaryType": "OrderComponents",
        "domain": {"name": "Seaport", "version": "1.5", "chainId": 1, "verifyingContract": SEAPORT},
        "message": {
            "offerer": ADDRESS,
            "zone": "0x004C00500000aD104D7DBd00e3ae0A5C00560C00",
            "offer": [
                {
                    "itemType": 2,
                    "token": address(100 + item),
                    "identifierOrCriteria": str(7_000_000 + item),
                    "startAmount": "1",
                    "endAmount": "1",
                }
                for item in range(offer_items)
            ],
            "consideration": [
                {
                    "itemType": 0,
                    "token": "0x0000000000000000000000000000000000000000",
                    "identifierOrCriteria": "0",
                    "startAmount": str(975 * 10**15 + item),
                    "endAmount": str(975 * 10**15 + item),
                    "recipient": address(200 + item),
                }
                for item in range(consideration_items)
            ],
            "orderType": 0,
            "startTime": "1899990000",
            "endTime": "1902592000",
            "zoneHash": "0x" + "00" * 32,
            "salt": "24446860302761739304752683030156737591518664810215442929808784621098726351597",
            "conduitKey": "0x0000007b02230091a7ed01230072f7006a004d60a8d4e71d599b8104250f0000",
            "counter": "0",
        },
    }


def pending_request(
    kind: int, payload: bytes, digest: bytes, *, chain_id: int = 0
) -> custody_pb2.SigningRequest:
    """A request as the daemon sends it, with the digest computed by the caller independently of custody."""
    return custody_pb2.SigningRequest(
        request_id="req_9",
        key_label="treasury",
        key_id="0a0b0c",
        address=ADDRESS,
        requester="backend",
        kind=kind,  # type: ignore[arg-type]
        chain_id=chain_id,
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        digest=digest,
        decision=custody_pb2.Decision(
            action="approve",
            rule="treasury-safe",
            reason="Safe transactions of the treasury need 2 of treasury",
            policy_version=2,
            quorum=[custody_pb2.QuorumTerm(group="treasury", threshold=2)],
        ),
        state=custody_pb2.REQUEST_STATE_PENDING_APPROVAL,
        created_at="2030-03-17T17:46:40Z",
        updated_at="2030-03-17T17:46:40Z",
        expires_at="2030-03-18T17:46:40Z",
        quorum_progress="0 of 2 from treasury",
    )


def typed_data_request(document: dict[str, Any]) -> custody_pb2.SigningRequest:
    signable = encode_typed_data(full_message=document)
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    chain_id = int(document["domain"].get("chainId", 0))
    return pending_request(
        custody_pb2.PAYLOAD_KIND_TYPED_DATA, json.dumps(document).encode(), digest, chain_id=chain_id
    )


def transaction_request(transaction: dict[str, Any]) -> custody_pb2.SigningRequest:
    digest = bytes(TypedTransaction.from_dict(transaction).hash())
    payload = json.dumps(transaction).encode()
    return pending_request(
        custody_pb2.PAYLOAD_KIND_TRANSACTION, payload, digest, chain_id=int(transaction["chainId"])
    )


def message_request(payload: bytes) -> custody_pb2.SigningRequest:
    message = encode_defunct(primitive=payload)
    digest = keccak(b"\x19" + message.version + message.header + message.body)
    return pending_request(custody_pb2.PAYLOAD_KIND_MESSAGE, payload, digest)


def screen_of(request: custody_pb2.SigningRequest) -> str:
    recomputed = recompute_hashes(request)
    assert recomputed.digest == bytes(request.digest)
    return review_text(request, recomputed)


def own_rows(lines: list[str], number: str) -> list[str]:
    """The rows of intent ``number`` itself, without their indentation: from its heading to the next intent's
    heading or the tree's end."""
    heading = next(at for at, line in enumerate(lines) if line.lstrip().startswith(f"[{number}] "))
    depth = len(lines[heading]) - len(lines[heading].lstrip())
    rows = []
    for line in lines[heading + 1 :]:
        if line.lstrip().startswith("[") or len(line) - len(line.lstrip()) <= depth:
            break
        rows.append(line.lstrip())
    return rows


def row(label: str, value: str) -> str:
    """An intent's row as the screen aligns it, without its indentation."""
    return f"{label:<16} {value}"


def packed_call(operation: int, to: str, value: int, data: bytes) -> bytes:
    """One MultiSend entry, packed as MultiSend.sol reads it: operation, to, value, data length, data."""
    return encode_packed(
        ["uint8", "address", "uint256", "uint256", "bytes"], [operation, to, value, len(data), data]
    )


def multisend_calldata(calls: list[tuple[int, str, int, bytes]]) -> bytes:
    return MULTISEND + encode(["bytes"], [b"".join(packed_call(*call) for call in calls)])


def safe_transaction(to: str, data: bytes, *, operation: int) -> dict[str, Any]:
    """SafeTx typed data for the Safe at SAFE, as the Safe{Wallet} interface asks its owners to sign it."""
    return {
        "types": json.loads((VECTORS / "safe_tx_types.json").read_text())["types"],
        "primaryType": "SafeTx",
        "domain": {"chainId": 1, "verifyingContract": SAFE},
        "message": {
            "to": to,
            "value": "0",
            "data": "0x" + data.hex(),
            "operation": operation,
            "safeTxGas": "0",
            "baseGas": "0",
            "gasPrice": "0",
            "gasToken": "0x" + "00" * 20,
            "refundReceiver": "0x" + "00" * 20,
            "nonce": "12",
        },
    }


def exec_transaction_calldata(to: str, data: bytes, *, operation: int) -> bytes:
    """Safe.execTransaction as an owner sends it on-chain, with one (zero) signature slot."""
    types = [
        "address",
        "uint256",
        "bytes",
        "uint8",
        "uint256",
        "uint256",
        "uint256",
        "address",
        "address",
        "bytes",
    ]
    zero = "0x" + "00" * 20
    selector = keccak(text=f"execTransaction({','.join(types)})")[:4]
    return selector + encode(types, [to, 0, data, operation, 0, 0, 0, zero, zero, bytes(65)])


# -- a nested Safe MultiSend: every field of every call, DELEGATECALL shown ------------------------------------------


def test_every_call_of_a_safe_multisend_is_on_the_screen_under_its_parent_with_delegatecall_flagged() -> None:
    safe_tx = safe_transaction(MULTISEND_CALL_ONLY, multisend_calldata(BATCH), operation=1)
    lines = screen_of(typed_data_request(safe_tx)).splitlines()
    # The flags come first, before the key, the payload and the tree.
    assert lines[1].startswith("  !!! DELEGATECALL (intent 1, 1.1): ")
    assert lines[2].startswith("  !!! UNLIMITED APPROVAL (intent 1.1.2): ")
    assert lines[3].startswith("  !!! OWNERSHIP TRANSFER (intent 1.1.4): ")
    assert lines.index("  requested by   backend") == 4
    # Every member of the SafeTx as signed, in full.
    for name, value in safe_tx["message"].items():
        assert f"    {name} = {value}" in lines, name
    assert_batch_tree(lines, "    ")


def test_a_safe_multisend_sent_as_exec_transaction_calldata_shows_the_same_tree() -> None:
    calldata = exec_transaction_calldata(MULTISEND_CALL_ONLY, multisend_calldata(BATCH), operation=1)
    transaction = {**SAFE_OWNER_TRANSACTION, "data": "0x" + calldata.hex()}
    lines = screen_of(transaction_request(transaction)).splitlines()
    assert lines[1].startswith("  !!! DELEGATECALL (intent 1, 1.1): ")
    assert f"  data           0x{calldata.hex()} ({len(calldata)} bytes)" in lines
    assert_batch_tree(lines, "    ")


def assert_batch_tree(lines: list[str], pad: str) -> None:
    """The Safe transaction [1] calls the MultiSend [1.1] by DELEGATECALL, and each call of the batch is an intent
    of its own below it, with its target, operation, parties and amounts, and its arguments in full."""
    headings = [line for line in lines if line.lstrip().startswith("[")]
    assert headings == [
        f"{pad}[1] Safe transaction  !!! DELEGATECALL !!!",
        f"{pad}    [1.1] MultiSend batch  !!! DELEGATECALL !!!",
        f"{pad}        [1.1.1] ERC-20 token transfer",
        f"{pad}        [1.1.2] ERC-20 allowance (approve)  !!! UNLIMITED APPROVAL !!!",
        f"{pad}        [1.1.3] ether transfer",
        f"{pad}        [1.1.4] ownership transfer  !!! OWNERSHIP TRANSFER !!!",
    ]
    safe = own_rows(lines, "1")
    assert row("contract", SAFE) in safe and row("delegate", MULTISEND_CALL_ONLY) in safe
    assert any(MULTISEND_CALL_ONLY in line for line in safe if "fields:" not in line)
    batch = own_rows(lines, "1.1")
    assert row("contract", MULTISEND_CALL_ONLY) in batch
    # The packed batch itself, in full, as the Safe will run it.
    packed = b"".join(packed_call(*call) for call in BATCH).hex()
    assert any(line.endswith(f" 0x{packed}") for line in batch)

    transfer, approval, ether, ownership = (own_rows(lines, f"1.1.{position}") for position in range(1, 5))
    for rows in (transfer, approval, ether, ownership):
        assert any(line.split() == ["operation", "CALL"] for line in rows)
    assert row("contract", TOKEN) in transfer and row("recipient", address(1)) in transfer
    assert row("amount", f"1234 base units of token {TOKEN}") in transfer
    assert row("contract", TOKEN) in approval and row("spender", address(2)) in approval
    assert row("amount", f"UNLIMITED (2**256 - 1) of token {TOKEN}") in approval
    assert any(line.endswith(f" {2**256 - 1}") for line in approval)
    assert row("recipient", address(3)) in ether
    assert row("amount", "500000000000000000 wei = 0.5 ether") in ether
    assert row("contract", GOVERNED) in ownership and row("new owner", address(4)) in ownership
    text = "\n".join(lines)
    assert "..." not in text and "characters)" not in text


# -- one intent, one flag: an unlimited approval and a hash-like message -------------------------------------------


def test_an_unlimited_approval_is_flagged_at_the_top_and_spelled_out() -> None:
    data = APPROVE + encode(["address", "uint256"], [address(2), 2**256 - 1])
    lines = screen_of(
        transaction_request({**SAFE_OWNER_TRANSACTION, "to": TOKEN, "data": "0x" + data.hex()})
    ).splitlines()
    assert lines[1] == (
        "  !!! UNLIMITED APPROVAL (intent 1): the spender may take every token of this kind, now and later"
    )
    assert "    [1] ERC-20 allowance (approve)  !!! UNLIMITED APPROVAL !!!" in lines
    approval = own_rows(lines, "1")
    assert row("call", "approve(address,uint256)") in approval
    assert row("contract", TOKEN) in approval and row("spender", address(2)) in approval
    assert row("amount", f"UNLIMITED (2**256 - 1) of token {TOKEN}") in approval


def test_a_hash_like_message_is_flagged_and_shown_in_full() -> None:
    # The 32 bytes a Safe owner signs to approve a Safe transaction off-chain.
    message = keccak(b"a Safe transaction hash")
    lines = screen_of(message_request(message)).splitlines()
    assert lines[1].startswith(
        "  !!! HASH-LIKE MESSAGE (intent 1): 32 bytes that may be the hash of a transaction"
    )
    assert f"  message        32 bytes, not UTF-8: 0x{message.hex()}" in lines
    assert "    [1] binary message  !!! HASH-LIKE MESSAGE !!!" in lines
    assert row("size", "32 bytes") in own_rows(lines, "1")
    assert any(line.endswith(f" 0x{message.hex()}") for line in own_rows(lines, "1"))


def test_a_payload_without_flags_says_so_at_the_top() -> None:
    lines = screen_of(message_request(b"Sign in to example.org\nNonce: 42")).splitlines()
    assert lines[1] == "  flags          none"
    assert "    [1] text message" in lines
    assert "          | Sign in to example.org" in lines and "          | Nonce: 42" in lines


# -- a Seaport-size order: every item and every field -------------------------------------------------------------


def test_every_item_and_field_of_a_long_seaport_order_is_on_the_screen() -> None:
    document = seaport_order(offer_items=5, consideration_items=3)
    lines = screen_of(typed_data_request(document)).splitlines()
    message = document["message"]
    start = lines.index("  OrderComponents")
    for name in (
        "offerer",
        "zone",
        "orderType",
        "startTime",
        "endTime",
        "zoneHash",
        "salt",
        "conduitKey",
        "counter",
    ):
        assert f"    {name} = {message[name]}" in lines[start:], name
    # Each item is printed member by member right below its index, in the order the type declares them.
    for array, members in (("offer", OFFER_FIELDS), ("consideration", CONSIDERATION_FIELDS)):
        heading = lines.index(f"    {array}: {len(message[array])} items", start)
        for position, item in enumerate(message[array]):
            at = lines.index(f"      [{position}]:", heading)
            assert lines[at + 1 : at + 1 + len(members)] == [
                f"        {name} = {item[name]}" for name in members
            ]
    # The fourth and fifth offered NFTs, which the old screen hid behind an abbreviation, are there in full.
    assert f"        token = {address(103)}" in lines and "        identifierOrCriteria = 7000004" in lines
    text = "\n".join(lines)
    assert "..." not in text and "characters)" not in text


# -- the --full rule ------------------------------------------------------------------------------------------------


def test_a_review_longer_than_a_screen_is_only_approved_with_full(environment: DevEnvironment) -> None:
    # A bulk listing of 40 NFTs: every one is printed, which takes more rows than one screen holds.
    request = typed_data_request(seaport_order(offer_items=40, consideration_items=2))
    review = screen_of(request)
    assert screen_rows(review) > MAX_SCREEN_ROWS

    with CliRunner().isolation() as streams:
        with pytest.raises(NotConfirmed) as refused:
            approve(request, environment, full=False)
        assert streams[0].getvalue() == b""
    message = refused.value.message
    assert message == (
        f"the review of request req_9 is {screen_rows(review)} lines long, more than one screen shows, so nothing"
        " was signed: read it with `custody requests show req_9`, then approve with `custody approve req_9"
        " --full`, which prints all of it before asking."
    )

    with CliRunner().isolation() as streams:
        signed = approve(request, environment, full=True)
        shown = streams[0].getvalue().decode()
    assert shown.rstrip("\n") == review
    verify_statement(environment, "alice", signed)


def test_the_refusal_names_the_flags_of_the_long_review(environment: DevEnvironment) -> None:
    # Thirty payments and one unlimited approval in one DELEGATECALL batch: too long for a screen, and flagged.
    payments = [
        (0, TOKEN, 0, TRANSFER + encode(["address", "uint256"], [address(position), 10**18]))
        for position in range(30)
    ]
    batch = multisend_calldata([*payments, BATCH[1]])
    request = typed_data_request(safe_transaction(MULTISEND_CALL_ONLY, batch, operation=1))
    with pytest.raises(NotConfirmed) as refused:
        approve(request, environment, full=False)
    assert f"is {screen_rows(screen_of(request))} lines long and flags DELEGATECALL, UNLIMITED APPROVAL," in (
        refused.value.message
    )


def test_a_long_review_may_be_rejected_without_full(environment: DevEnvironment) -> None:
    request = typed_data_request(seaport_order(offer_items=40, consideration_items=2))
    with CliRunner().isolation() as streams:
        signed = approve(request, environment, full=False, verdict=Verdict.REJECT)
        assert streams[0].getvalue().decode().rstrip("\n") == screen_of(request)
    verify_statement(environment, "alice", signed)


def test_a_review_that_fits_on_a_screen_needs_no_full(environment: DevEnvironment) -> None:
    request = typed_data_request(seaport_order(offer_items=5, consideration_items=3))
    assert screen_rows(screen_of(request)) <= MAX_SCREEN_ROWS
    with CliRunner().isolation():
        verify_statement(environment, "alice", approve(request, environment, full=False))


def test_long_lines_count_as_the_rows_they_take() -> None:
    assert screen_rows("a" * 100) == 1
    assert screen_rows("a" * 101 + "\n\nb") == 4


# -- the commands against a served daemon ------------------------------------------------------------------------


def test_approve_on_the_command_line_refuses_a_long_review_in_one_sentence_and_signs_with_full(
    environment: DevEnvironment,
) -> None:
    request = typed_data_request(seaport_order(offer_items=40, consideration_items=2))
    with serving(environment, request) as (server, daemon):
        code, output, errors = cli(environment, server, "approve", "req_9", "--yes")
        assert code == 1 and output == ""
        assert errors.startswith("error: the review of request req_9 is ") and errors.count("\n") == 1
        assert daemon.approvals == []

        code, output, errors = cli(environment, server, "approve", "req_9", "--yes", "--full")
        assert code == 0, errors
        assert f"        token = {address(139)}" in output.splitlines()
        [(statement, signature)] = daemon.approvals
        verify_statement(environment, "alice", SignedVerdict(statement=statement, signature=signature))


def test_requests_show_prints_the_payload_in_full_instead_of_the_daemons_abbreviated_summary(
    environment: DevEnvironment,
) -> None:
    request = typed_data_request(seaport_order(offer_items=5, consideration_items=3))
    # The daemon's summary abbreviates long values; the CLI prints its own, full reading of the payload instead.
    request.summary["message"] = '{"consideration": [...'
    with serving(environment, request) as (server, _daemon):
        code, output, errors = cli(environment, server, "requests", "show", "req_9")
    assert code == 0, errors
    assert "request:" in output and "treasury-safe" in output
    assert '{"consideration": [...' not in output
    assert f"        token = {address(104)}" in output.splitlines()
    assert "        identifierOrCriteria = 7000004" in output.splitlines()


def test_requests_show_json_carries_the_intent_tree(environment: DevEnvironment) -> None:
    request = typed_data_request(
        safe_transaction(MULTISEND_CALL_ONLY, multisend_calldata(BATCH), operation=1)
    )
    with serving(environment, request) as (server, _daemon):
        code, output, errors = cli(environment, server, "--json", "requests", "show", "req_9")
    assert code == 0, errors
    shown = json.loads(output)
    assert shown["request_id"] == "req_9" and shown["digest"] == "0x" + bytes(request.digest).hex()
    assert shown["intent_flags"] == ["DELEGATECALL", "unlimited approval", "ownership transfer"]
    [safe] = shown["intents"]
    assert (safe["kind"], safe["contract"], safe["subject"], safe["flags"]) == (
        "safe_transaction",
        SAFE,
        "SafeTx",
        ["DELEGATECALL"],
    )
    assert safe["domain"] == {
        "name": None,
        "version": None,
        "chain_id": 1,
        "verifying_contract": SAFE,
        "salt": None,
    }
    assert {"role": "delegate", "address": MULTISEND_CALL_ONLY} in safe["parties"]
    [batch] = safe["children"]
    assert batch["kind"] == "multisend" and batch["contract"] == MULTISEND_CALL_ONLY
    transfer, approval, ether, ownership = batch["children"]
    assert [child["kind"] for child in batch["children"]] == [
        "erc20_transfer",
        "erc20_approve",
        "native_transfer",
        "ownership_transfer",
    ]
    assert transfer["amounts"] == [{"token": TOKEN, "amount": "1234", "token_id": None, "unlimited": False}]
    assert transfer["parties"] == [{"role": "recipient", "address": address(1)}]
    assert approval["amounts"] == [
        {"token": TOKEN, "amount": str(2**256 - 1), "token_id": None, "unlimited": True}
    ]
    assert approval["flags"] == ["unlimited approval"]
    assert ether["amounts"] == [
        {"token": None, "amount": "500000000000000000", "token_id": None, "unlimited": False}
    ]
    assert ownership["parties"] == [{"role": "new_owner", "address": address(4)}]
    assert {"label": "operation", "value": "CALL"} in ownership["fields"]
    for intent in (safe, batch, transfer, approval, ether, ownership):
        assert set(intent) == {
            "kind",
            "contract",
            "parties",
            "amounts",
            "deadline",
            "flags",
            "fields",
            "children",
            "subject",
            "domain",
            "text",
            "size",
        }


def test_requests_show_refuses_a_daemon_whose_digest_is_not_the_payloads(environment: DevEnvironment) -> None:
    request = message_request(b"gm")
    request.digest = bytes(32)
    with serving(environment, request) as (server, _daemon):
        code, output, errors = cli(environment, server, "requests", "show", "req_9")
    assert code == 1 and output == ""
    assert "the daemon says request req_9 has digest 0x" + "00" * 32 in errors


# -- helpers -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> DevEnvironment:
    return init_dev_environment(tmp_path_factory.mktemp("intent-screen") / "env", None)


def approve(
    request: custody_pb2.SigningRequest,
    environment: DevEnvironment,
    *,
    full: bool,
    verdict: Verdict = Verdict.APPROVE,
) -> SignedVerdict:
    profile = load_profile(environment.profiles["alice"])
    return review_and_sign(
        request,
        verdict=verdict,
        approver="alice",
        signer_factory=lambda: load_approver_signer(profile),
        assume_yes=True,
        interactive=False,
        expires_in=600,
        full=full,
        now=lambda: NOW,
    )


def verify_statement(environment: DevEnvironment, approver: str, signed: SignedVerdict) -> None:
    """The statement verifies with the approver's public key as `custody dev init` recorded it."""
    public_key = bytes.fromhex((environment.directory / "approvers" / f"{approver}.pub").read_text().strip())
    Ed25519PublicKey.from_public_bytes(public_key).verify(signed.signature, signed.statement)


@dataclass
class ServedRequest(custody_pb2_grpc.SigningServiceServicer, custody_pb2_grpc.ApprovalServiceServicer):
    """Serves one request as the daemon would, and keeps the approvals it is sent."""

    request: custody_pb2.SigningRequest
    approvals: list[tuple[bytes, bytes]] = field(default_factory=list)

    def GetRequest(
        self, request: custody_pb2.GetRequestRequest, context: grpc.ServicerContext
    ) -> custody_pb2.GetRequestResponse:
        if request.request_id != self.request.request_id:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no request {request.request_id}")
        return custody_pb2.GetRequestResponse(request=self.request)

    def Approve(
        self, request: custody_pb2.ApproveRequest, context: grpc.ServicerContext
    ) -> custody_pb2.ApproveResponse:
        self.approvals.append((request.statement, request.signature))
        return custody_pb2.ApproveResponse(request=self.request)


@contextmanager
def serving(
    environment: DevEnvironment, request: custody_pb2.SigningRequest
) -> Iterator[tuple[str, ServedRequest]]:
    """``request`` on a real mTLS gRPC server with the dev environment's certificates."""
    pki = environment.directory / "pki"
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    daemon = ServedRequest(request=request)
    server = grpc.server(thread_pool=ThreadPoolExecutor(max_workers=2))
    # grpc's generated registration functions carry no annotations.
    custody_pb2_grpc.add_SigningServiceServicer_to_server(daemon, server)  # type: ignore[no-untyped-call]
    custody_pb2_grpc.add_ApprovalServiceServicer_to_server(daemon, server)  # type: ignore[no-untyped-call]
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}", daemon
    finally:
        server.stop(grace=None)


def cli(environment: DevEnvironment, server: str, *arguments: str) -> tuple[int, str, str]:
    """Run the command line as alice against ``server``; returns the exit code, stdout and stderr."""
    profile: Path = environment.profiles["alice"]
    with CliRunner().isolation() as streams:
        code = run(["--profile", str(profile), "--server", server, *arguments])
        return code, streams[0].getvalue().decode(), streams[1].getvalue().decode()

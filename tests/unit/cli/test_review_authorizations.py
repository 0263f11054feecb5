"""What an approver and `custody sign authorization` show of EIP-7702 authorizations and of blob and set-code
transactions: the delegate with a loud warning that the account will run its code, chain id 0 as every chain,
each carried authorization's recovered signer, the blob fee in the total, and the signed tuple as eth-account
names it. Digests are computed outside custody (eth-account), so the review's own recomputation is checked."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction

from custody.api._gen import custody_pb2
from custody.cli.errors import ServerDisagrees
from custody.cli.output import request_text, request_to_json, requests_table
from custody.cli.review import check_server_hashes, domain_request, recompute_hashes, review_text

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
DELEGATE = "0x63c0c19a282a1B52b07dD5a65b58948A07DAE32B"
AUTHORITY_KEY = "0x" + "22" * 32
SEPOLIA = 11155111


def request(
    kind: int, payload: dict[str, Any], digest: bytes, chain_id: int, **fields: Any
) -> custody_pb2.SigningRequest:
    raw = json.dumps(payload).encode()
    return custody_pb2.SigningRequest(
        request_id="req_7702",
        key_label="ops",
        key_id="0a0b0c",
        address=ADDRESS,
        requester="backend",
        kind=kind,
        chain_id=chain_id,
        payload=raw,
        payload_hash=hashlib.sha256(raw).digest(),
        digest=digest,
        decision=custody_pb2.Decision(action="approve", rule="ops-delegation", reason="", policy_version=2),
        created_at="2030-03-17T17:46:40Z",
        updated_at="2030-03-17T17:46:40Z",
        **{"state": custody_pb2.REQUEST_STATE_PENDING_APPROVAL, **fields},
    )


def authorization_request(chain_id: int, **fields: Any) -> custody_pb2.SigningRequest:
    payload = {"chainId": chain_id, "address": DELEGATE, "nonce": 3}
    digest = bytes(Account.sign_authorization(payload, AUTHORITY_KEY).authorization_hash)
    return request(custody_pb2.PAYLOAD_KIND_AUTHORIZATION, payload, digest, chain_id, **fields)


def test_an_authorization_is_reviewed_with_the_warning_first_and_the_delegate_in_full() -> None:
    pending = authorization_request(SEPOLIA)
    text = review_text(pending, recompute_hashes(pending))
    lines = text.split("\n")
    # The flags are the first thing read, then the payload's own warning.
    assert lines[1].startswith("  !!! ACCOUNT RUNS THE DELEGATE'S CODE (intent 1):")
    assert f"  !!! SIGNING THIS MAKES THE KEY'S ACCOUNT RUN THE CODE AT {DELEGATE}" in text
    assert f"  delegate       {DELEGATE} (the code the key's account will run)" in text
    assert f"  chain id       {SEPOLIA}" in text
    assert "EVERY CHAIN" not in text


def test_an_authorization_for_chain_id_0_says_every_chain_everywhere() -> None:
    pending = authorization_request(0)
    text = review_text(pending, recompute_hashes(pending))
    assert "!!! EVERY CHAIN (intent 1): chain id 0" in text
    assert "  chain id       0: EVERY CHAIN" in text
    # Valid wherever the account's nonce is the authorization's, which is every chain a fresh account is on.
    assert "valid on every EVM chain where the key's account nonce is 3" in text
    assert "the account's nonce is 3" in text
    assert "exists" not in text
    assert re.search(r"^chain:\s+0: EVERY CHAIN", request_text(pending), re.MULTILINE)
    assert request_to_json(pending)["chain_id"] == 0
    assert "0 (EVERY CHAIN)" in requests_table([pending])


def test_a_signed_authorization_answers_y_parity_r_and_s_as_eth_account_does() -> None:
    reference = Account.sign_authorization(
        {"chainId": SEPOLIA, "address": DELEGATE, "nonce": 3}, AUTHORITY_KEY
    )
    signature = (
        reference.r.to_bytes(32, "big") + reference.s.to_bytes(32, "big") + bytes([reference.y_parity])
    )
    signed = authorization_request(SEPOLIA, signature=signature, state=custody_pb2.REQUEST_STATE_SIGNED)
    answer = request_to_json(signed)
    assert answer["signature"] == "0x" + signature.hex() == "0x" + reference.signature.to_bytes().hex()
    assert (answer["y_parity"], int(answer["r"], 16), int(answer["s"], 16)) == (
        reference.y_parity,
        reference.r,
        reference.s,
    )
    assert re.search(rf"^y_parity:\s+{reference.y_parity}$", request_text(signed), re.MULTILINE)


def test_a_set_code_transaction_shows_each_authority_and_delegate_flagged() -> None:
    signed = Account.sign_authorization({"chainId": SEPOLIA, "address": DELEGATE, "nonce": 1}, AUTHORITY_KEY)
    transaction = {
        "type": 4,
        "chainId": SEPOLIA,
        "nonce": 0,
        "to": ADDRESS,
        "value": 0,
        "gas": 46000,
        "maxFeePerGas": 10**9,
        "maxPriorityFeePerGas": 10**9,
        "authorizationList": [
            {
                "chainId": SEPOLIA,
                "address": DELEGATE,
                "nonce": 1,
                "yParity": signed.y_parity,
                "r": hex(signed.r),
                "s": hex(signed.s),
            }
        ],
    }
    reference = {
        **transaction,
        "authorizationList": [{**transaction["authorizationList"][0], "r": signed.r, "s": signed.s}],
    }
    digest = bytes(TypedTransaction.from_dict(reference).hash())
    pending = request(custody_pb2.PAYLOAD_KIND_TRANSACTION, transaction, digest, SEPOLIA)
    text = review_text(pending, recompute_hashes(pending))
    assert "!!! ACCOUNT RUNS THE DELEGATE'S CODE (intent 2)" in text
    assert "  AUTHORIZATIONS 1: accounts that will run a delegate's code" in text
    assert Account.from_key(AUTHORITY_KEY).address in text
    assert DELEGATE in text


def test_a_blob_transaction_shows_its_blob_fee_in_the_total() -> None:
    transaction = {
        "type": 3,
        "chainId": SEPOLIA,
        "nonce": 0,
        "to": ADDRESS,
        "value": 0,
        "gas": 21000,
        "maxFeePerGas": 10**9,
        "maxPriorityFeePerGas": 10**9,
        "maxFeePerBlobGas": 2 * 10**9,
        "blobVersionedHashes": ["0x01" + "ab" * 31, "0x01" + "cd" * 31],
    }
    digest = bytes(TypedTransaction.from_dict(transaction).hash())
    pending = request(custody_pb2.PAYLOAD_KIND_TRANSACTION, transaction, digest, SEPOLIA)
    text = review_text(pending, recompute_hashes(pending))
    # 21,000 gas x 1 gwei, plus 2 blobs x 131,072 blob gas x 2 gwei, worked out by hand.
    total = 21000 * 10**9 + 2 * 131072 * 2 * 10**9
    assert f"({total} wei)" in text
    assert "  blob fee       2000000000 wei per blob gas x 262144 blob gas" in text
    # The equation is whole: the total on its left is the sum on its right.
    assert (
        f"  max total fee  0.000545288 ether ({total} wei) = 21000 gas x 1 gwei + 262144 blob gas x 2 gwei"
        in text
    )
    assert "  blob [1]       0x01" + "cd" * 31 in text


def test_the_approver_checks_an_every_chain_authorization_against_the_daemon_and_binds_chain_id_0() -> None:
    pending = authorization_request(0)
    recomputed = recompute_hashes(pending)
    check_server_hashes(pending, recomputed)
    assert domain_request(pending, recomputed).chain_id == 0
    # A daemon that says the authorization is for one chain when the payload says every chain is caught.
    disagreeing = authorization_request(0)
    disagreeing.chain_id = 1
    with pytest.raises(ServerDisagrees, match="chain id 1, but its payload gives 0"):
        check_server_hashes(disagreeing, recomputed)


def test_an_authorization_to_the_zero_address_says_it_clears_the_delegation() -> None:
    zero = "0x" + "00" * 20
    payload = {"chainId": SEPOLIA, "address": zero, "nonce": 3}
    digest = bytes(Account.sign_authorization(payload, AUTHORITY_KEY).authorization_hash)
    pending = request(custody_pb2.PAYLOAD_KIND_AUTHORIZATION, payload, digest, SEPOLIA)
    text = review_text(pending, recompute_hashes(pending))
    assert "SIGNING THIS CLEARS THE KEY'S ACCOUNT DELEGATION" in text
    assert f"  delegate       {zero} (none: this clears the delegation)" in text
    # Its flag says what its lines say: nothing runs a delegate's code, and clearing is still loud.
    assert "!!! CLEARS THE ACCOUNT'S DELEGATION (intent 1): the authority's account" in text
    assert "RUNS THE DELEGATE'S CODE" not in text

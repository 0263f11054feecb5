"""Approval statements: the exact bytes, strict parsing, Ed25519 verification and the daemon's field checks.

Sources of the fixed values: SHA-256("abc") is the example of FIPS 180-2, appendix B.1; Keccak-256 of the
empty string is the well-known Ethereum empty hash (eth-utils ``keccak(b"")``, checked below); the Ed25519 key
and signature are TEST 1 of RFC 8032, section 7.1. Every signature made here is verified with `cryptography`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from custody.domain.approvals import (
    MAX_STATEMENT_BYTES,
    MAX_STATEMENT_LIFETIME_SECONDS,
    STATEMENT_PREFIX,
    ApprovalStatement,
    check_statement,
    verify_signature,
)
from custody.domain.errors import ConfigurationError, FailedPrecondition, InvalidInput, PermissionDenied
from custody.domain.requests import (
    Decision,
    PayloadKind,
    QuorumTerm,
    RequestState,
    SigningRequest,
    Verdict,
)

SHA256_ABC = bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
KECCAK256_EMPTY = bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
RFC8032_TEST1_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_TEST1_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_TEST1_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065"
    "224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

REQUEST_ID = "req_018bcfe56800a1b2c3d4e5f6a7b8c9d0e1f2"
KEY_ID = "00112233445566778899aabbccddeeff"
NOW = 1_700_000_000

VECTOR = ApprovalStatement(
    request_id=REQUEST_ID,
    digest=KECCAK256_EMPTY,
    payload_hash=SHA256_ABC,
    chain_id=1,
    key_id=KEY_ID,
    policy_version=2,
    decision=Verdict.APPROVE,
    approver="alice",
    expires_at=NOW + 3600,
)
# Written by hand from the format: prefix, then the nine fields in sorted order, no spaces.
VECTOR_BYTES = (
    b"custody approval statement v1\n"
    b'{"approver":"alice",'
    b'"chain_id":1,'
    b'"decision":"approve",'
    b'"digest":"0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",'
    b'"expires_at":1700003600,'
    b'"key_id":"00112233445566778899aabbccddeeff",'
    b'"payload_hash":"0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",'
    b'"policy_version":2,'
    b'"request_id":"req_018bcfe56800a1b2c3d4e5f6a7b8c9d0e1f2"}'
)


def make_request(**changes: Any) -> SigningRequest:
    created = datetime.fromtimestamp(NOW - 60, tz=UTC)
    request = SigningRequest(
        request_id=REQUEST_ID,
        key_label="treasury",
        key_id=KEY_ID,
        requester="carol",
        kind=PayloadKind.TRANSACTION,
        chain_id=1,
        payload=b"abc",
        payload_hash=SHA256_ABC,
        digest=KECCAK256_EMPTY,
        decision=Decision(
            action="approve",
            rule="treasury",
            reason="rule 'treasury' asks for approvals",
            policy_version=2,
            quorum=(QuorumTerm("treasury", 2),),
        ),
        state=RequestState.PENDING_APPROVAL,
        created_at=created,
        updated_at=created,
    )
    return replace(request, **changes)


def canonical(document: dict[str, Any]) -> bytes:
    return STATEMENT_PREFIX + json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def vector_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTOR_BYTES[len(STATEMENT_PREFIX) :])
    document.update(changes)
    return document


# ----------------------------------------------------------------------------------------------------
# Exact bytes and round trips.


def test_fixed_values_are_what_their_sources_say() -> None:
    assert hashlib.sha256(b"abc").digest() == SHA256_ABC
    assert keccak(b"") == KECCAK256_EMPTY


def test_statement_bytes_match_the_hand_built_vector_byte_for_byte() -> None:
    assert VECTOR.to_bytes() == VECTOR_BYTES


def test_vector_parses_back_to_the_same_statement() -> None:
    assert ApprovalStatement.from_bytes(VECTOR_BYTES) == VECTOR


def test_reject_statement_without_chain_or_key_encodes_null_and_empty() -> None:
    statement = replace(VECTOR, chain_id=None, key_id="", decision=Verdict.REJECT)
    encoded = statement.to_bytes()
    assert b'"chain_id":null' in encoded
    assert b'"key_id":""' in encoded
    assert b'"decision":"reject"' in encoded
    assert ApprovalStatement.from_bytes(encoded) == statement


def test_non_ascii_identifiers_are_escaped_and_round_trip() -> None:
    statement = replace(VECTOR, approver="zoë")
    encoded = statement.to_bytes()
    assert b'"approver":"zo\\u00eb"' in encoded
    assert encoded.isascii()
    assert ApprovalStatement.from_bytes(encoded) == statement


printable_identifiers = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(str.isprintable)


@given(
    request_id=printable_identifiers,
    digest=st.binary(min_size=32, max_size=32),
    payload_hash=st.binary(min_size=32, max_size=32),
    chain_id=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
    key_id=st.binary(max_size=32).map(bytes.hex),
    policy_version=st.integers(min_value=1, max_value=2**63 - 1),
    decision=st.sampled_from(Verdict),
    approver=printable_identifiers,
    expires_at=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_every_valid_statement_round_trips(**fields: Any) -> None:
    statement = ApprovalStatement(**fields)
    encoded = statement.to_bytes()
    assert encoded.startswith(STATEMENT_PREFIX)
    assert ApprovalStatement.from_bytes(encoded) == statement


def test_for_request_binds_the_stored_fields_and_the_decision_policy_version() -> None:
    request = make_request()
    statement = ApprovalStatement.for_request(request, "bob", Verdict.REJECT, NOW + 600)
    assert statement == ApprovalStatement(
        request_id=REQUEST_ID,
        digest=KECCAK256_EMPTY,
        payload_hash=SHA256_ABC,
        chain_id=1,
        key_id=KEY_ID,
        policy_version=2,
        decision=Verdict.REJECT,
        approver="bob",
        expires_at=NOW + 600,
    )


def test_for_request_of_a_policy_change_has_no_key_and_no_chain() -> None:
    payload = b'version = 3\n[[rules]]\nname = "x"\naction = "deny"\n'
    payload_hash = hashlib.sha256(payload).digest()
    request = make_request(
        kind=PayloadKind.POLICY_CHANGE,
        key_label="",
        key_id="",
        chain_id=None,
        payload=payload,
        payload_hash=payload_hash,
        digest=payload_hash,
    )
    statement = ApprovalStatement.for_request(request, "dave", Verdict.APPROVE, NOW + 600)
    assert (statement.key_id, statement.chain_id, statement.digest) == ("", None, payload_hash)
    assert ApprovalStatement.from_bytes(statement.to_bytes()) == statement


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"request_id": ""}, "request_id"),
        ({"request_id": "req\n1"}, "request_id"),
        ({"digest": b"\x00" * 31}, "digest"),
        ({"payload_hash": "0x" + "00" * 32}, "payload_hash"),
        ({"chain_id": -1}, "chain_id"),
        ({"chain_id": 2**64}, "chain_id"),
        ({"chain_id": True}, "chain_id"),
        ({"key_id": "ABCD"}, "key_id"),
        ({"key_id": "abc"}, "key_id"),
        ({"policy_version": 0}, "policy_version"),
        ({"decision": "approve"}, "decision"),
        ({"approver": ""}, "approver"),
        ({"approver": "a" * 129}, "approver"),
        ({"expires_at": -1}, "expires_at"),
        ({"expires_at": 2**63}, "expires_at"),
    ],
)
def test_constructing_an_invalid_statement_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        replace(VECTOR, **changes)
    assert raised.value.field == field


# ----------------------------------------------------------------------------------------------------
# Every refusal of from_bytes, each naming what is wrong.

ALL_FIELDS = sorted(vector_document())

FROM_BYTES_REFUSALS = [
    pytest.param(
        VECTOR_BYTES + b" " * MAX_STATEMENT_BYTES, f"at most {MAX_STATEMENT_BYTES} bytes", id="too-long"
    ),
    pytest.param(VECTOR_BYTES.replace(b"v1\n", b"v2\n", 1), "starts with", id="other-version"),
    pytest.param(VECTOR_BYTES.replace(b"v1\n", b"v1 ", 1), "starts with", id="prefix-without-newline"),
    pytest.param(VECTOR_BYTES[len(STATEMENT_PREFIX) :], "starts with", id="no-prefix"),
    pytest.param(STATEMENT_PREFIX + b'{"approver":"\xff"}', "not valid UTF-8", id="invalid-utf8"),
    pytest.param(STATEMENT_PREFIX + b"{", "not valid JSON", id="truncated-json"),
    pytest.param(STATEMENT_PREFIX + b"", "not valid JSON", id="empty-body"),
    pytest.param(
        canonical(vector_document()).replace(b'"expires_at":1700003600', b'"expires_at":NaN'),
        "not valid JSON",
        id="nan",
    ),
    pytest.param(STATEMENT_PREFIX + b"[]", "not a JSON object", id="array"),
    pytest.param(STATEMENT_PREFIX + b'"text"', "not a JSON object", id="string"),
    pytest.param(
        VECTOR_BYTES.replace(b'{"approver":"alice",', b'{"approver":"alice","approver":"alice",'),
        "repeats the field 'approver'",
        id="duplicate-field",
    ),
    pytest.param(canonical({**vector_document(), "note": "x"}), "unknown field(s) note", id="unknown-field"),
    pytest.param(canonical(vector_document(request_id=7)), "request_id", id="request-id-number"),
    pytest.param(canonical(vector_document(request_id="")), "request_id", id="request-id-empty"),
    pytest.param(canonical(vector_document(digest="0x" + "ab" * 31)), "digest", id="digest-31-bytes"),
    pytest.param(canonical(vector_document(digest="0x" + "AB" * 32)), "digest", id="digest-uppercase"),
    pytest.param(canonical(vector_document(digest="ab" * 32)), "digest", id="digest-without-0x"),
    pytest.param(canonical(vector_document(digest=None)), "digest", id="digest-null"),
    pytest.param(
        canonical(vector_document(payload_hash="0x" + "ab" * 33)), "payload_hash", id="hash-33-bytes"
    ),
    pytest.param(canonical(vector_document(chain_id="1")), "chain_id", id="chain-id-string"),
    pytest.param(canonical(vector_document(chain_id=True)), "chain_id", id="chain-id-boolean"),
    pytest.param(canonical(vector_document(chain_id=1.0)), "chain_id", id="chain-id-float"),
    pytest.param(canonical(vector_document(chain_id=-1)), "chain_id", id="chain-id-negative"),
    pytest.param(canonical(vector_document(key_id="0x0011")), "key_id", id="key-id-0x"),
    pytest.param(canonical(vector_document(key_id=None)), "key_id", id="key-id-null"),
    pytest.param(canonical(vector_document(policy_version=0)), "policy_version", id="policy-version-zero"),
    pytest.param(
        canonical(vector_document(policy_version="2")), "policy_version", id="policy-version-string"
    ),
    pytest.param(canonical(vector_document(decision="approved")), "decision", id="decision-unknown"),
    pytest.param(canonical(vector_document(decision=["approve"])), "decision", id="decision-array"),
    pytest.param(canonical(vector_document(approver="")), "approver", id="approver-empty"),
    pytest.param(canonical(vector_document(approver=None)), "approver", id="approver-null"),
    pytest.param(canonical(vector_document(expires_at=-5)), "expires_at", id="expires-at-negative"),
    pytest.param(canonical(vector_document(expires_at=1.7e9)), "expires_at", id="expires-at-float"),
    pytest.param(
        STATEMENT_PREFIX + json.dumps(vector_document(), sort_keys=True).encode(),
        "not in canonical form",
        id="spaces",
    ),
    pytest.param(
        STATEMENT_PREFIX
        + json.dumps(vector_document(), separators=(",", ":")).encode().replace(b"{", b"{ ", 1),
        "not in canonical form",
        id="leading-space",
    ),
    pytest.param(
        STATEMENT_PREFIX
        + json.dumps(dict(reversed(list(vector_document().items()))), separators=(",", ":")).encode(),
        "not in canonical form",
        id="unsorted-keys",
    ),
    pytest.param(
        VECTOR_BYTES.replace(b'"alice"', b'"\\u0061lice"'), "not in canonical form", id="escaped-ascii"
    ),
    pytest.param(
        canonical(vector_document(approver="zoë")).replace(b"\\u00eb", "ë".encode()),
        "not in canonical form",
        id="raw-utf8",
    ),
    pytest.param(VECTOR_BYTES + b"\n", "not in canonical form", id="trailing-newline"),
    pytest.param(
        VECTOR_BYTES.replace(b'"chain_id":1,', b'"chain_id":1.0e0,'),
        "chain_id",
        id="chain-id-exponent",
    ),
]


@pytest.mark.parametrize(("data", "named"), FROM_BYTES_REFUSALS)
def test_from_bytes_refuses_and_says_what_is_wrong(data: bytes, named: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        ApprovalStatement.from_bytes(data)
    assert raised.value.field == "statement"
    assert named in raised.value.message
    assert raised.value.message.startswith("statement: ")


@pytest.mark.parametrize("missing", ALL_FIELDS)
def test_from_bytes_refuses_a_statement_missing_any_field(missing: str) -> None:
    document = vector_document()
    del document[missing]
    with pytest.raises(InvalidInput) as raised:
        ApprovalStatement.from_bytes(canonical(document))
    assert raised.value.field == "statement"
    assert f"lacks the field(s) {missing}" in raised.value.message


def test_from_bytes_refuses_text_instead_of_bytes() -> None:
    with pytest.raises(InvalidInput, match="is bytes"):
        ApprovalStatement.from_bytes(VECTOR_BYTES.decode())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# Ed25519 signatures.


def test_rfc8032_test1_verifies_and_a_changed_message_does_not() -> None:
    verify_signature(RFC8032_TEST1_PUBLIC, b"", RFC8032_TEST1_SIGNATURE, "alice")
    with pytest.raises(PermissionDenied) as raised:
        verify_signature(RFC8032_TEST1_PUBLIC, b"\x00", RFC8032_TEST1_SIGNATURE, "alice")
    assert raised.value.message == "the approval signature does not verify with alice's key"


def test_signed_vector_verifies_with_cryptography_and_with_verify_signature() -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(RFC8032_TEST1_SECRET)
    signature = private_key.sign(VECTOR_BYTES)
    Ed25519PublicKey.from_public_bytes(RFC8032_TEST1_PUBLIC).verify(signature, VECTOR_BYTES)
    verify_signature(RFC8032_TEST1_PUBLIC, VECTOR_BYTES, signature, "alice")


def test_signature_from_another_key_is_refused() -> None:
    other_key = Ed25519PrivateKey.generate()
    signature = other_key.sign(VECTOR_BYTES)
    other_key.public_key().verify(signature, VECTOR_BYTES)
    with pytest.raises(PermissionDenied, match="does not verify with bob's key"):
        verify_signature(RFC8032_TEST1_PUBLIC, VECTOR_BYTES, signature, "bob")


@pytest.mark.parametrize("position", [0, len(STATEMENT_PREFIX) + 14, len(VECTOR_BYTES) - 3])
def test_tampered_statement_is_refused(position: int) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(RFC8032_TEST1_SECRET)
    signature = private_key.sign(VECTOR_BYTES)
    private_key.public_key().verify(signature, VECTOR_BYTES)
    tampered = bytearray(VECTOR_BYTES)
    tampered[position] ^= 0x01
    with pytest.raises(InvalidSignature):
        private_key.public_key().verify(signature, bytes(tampered))
    with pytest.raises(PermissionDenied, match="does not verify"):
        verify_signature(RFC8032_TEST1_PUBLIC, bytes(tampered), signature, "alice")


def test_tampered_signature_is_refused() -> None:
    signature = bytearray(Ed25519PrivateKey.from_private_bytes(RFC8032_TEST1_SECRET).sign(VECTOR_BYTES))
    signature[40] ^= 0x80
    with pytest.raises(PermissionDenied):
        verify_signature(RFC8032_TEST1_PUBLIC, VECTOR_BYTES, bytes(signature), "alice")


def test_signature_of_the_wrong_length_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as raised:
        verify_signature(RFC8032_TEST1_PUBLIC, VECTOR_BYTES, RFC8032_TEST1_SIGNATURE[:63], "alice")
    assert raised.value.field == "signature"
    assert "got 63" in raised.value.message


def test_public_key_of_the_wrong_length_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="approver alice is not a 32-byte Ed25519 key"):
        verify_signature(RFC8032_TEST1_PUBLIC[:31], VECTOR_BYTES, RFC8032_TEST1_SIGNATURE, "alice")


def test_oversized_statement_is_refused_before_verification() -> None:
    with pytest.raises(InvalidInput) as raised:
        verify_signature(RFC8032_TEST1_PUBLIC, b"x" * (MAX_STATEMENT_BYTES + 1), RFC8032_TEST1_SIGNATURE, "a")
    assert raised.value.field == "statement"


# ----------------------------------------------------------------------------------------------------
# check_statement: the daemon's comparison with its own stored request.


def check(statement: ApprovalStatement, request: SigningRequest | None = None, **overrides: Any) -> None:
    arguments: dict[str, Any] = {
        "approver": "alice",
        "expected_digest": KECCAK256_EMPTY,
        "expected_payload_hash": SHA256_ABC,
        "active_policy_version": 2,
        "now": NOW,
    }
    arguments.update(overrides)
    check_statement(statement, request if request is not None else make_request(), **arguments)


def test_a_matching_statement_passes() -> None:
    check(VECTOR)
    check(replace(VECTOR, decision=Verdict.REJECT))


def test_expiry_exactly_24_hours_ahead_passes() -> None:
    check(replace(VECTOR, expires_at=NOW + MAX_STATEMENT_LIFETIME_SECONDS))


def test_expiry_one_second_ahead_passes() -> None:
    check(replace(VECTOR, expires_at=NOW + 1))


CHECK_REFUSALS = [
    pytest.param(
        {"statement": replace(VECTOR, request_id="req_018bcfe56800ffffffffffffffffffffffff")},
        "request_id",
        id="other-request",
    ),
    pytest.param({"statement": replace(VECTOR, digest=b"\x11" * 32)}, "digest", id="other-digest"),
    pytest.param(
        # The row's digest column was edited and the statement signed for it, but the daemon recomputed the
        # real digest from the payload.
        {"request": make_request(digest=b"\x11" * 32), "statement": replace(VECTOR, digest=b"\x11" * 32)},
        "digest",
        id="stored-digest-edited-statement-follows-row",
    ),
    pytest.param(
        # The row's digest column was edited; the approver's statement holds the digest the CLI recomputed,
        # which is right, but the daemon would sign the edited column, so nothing may count.
        {"request": make_request(digest=b"\x11" * 32)},
        "digest",
        id="stored-digest-edited-statement-follows-payload",
    ),
    pytest.param(
        {"statement": replace(VECTOR, payload_hash=b"\x22" * 32)}, "payload_hash", id="other-payload"
    ),
    pytest.param(
        # The payload was edited: the daemon's recomputed hash no longer matches the row or the statement.
        {"expected_payload_hash": hashlib.sha256(b"abd").digest()},
        "payload_hash",
        id="stored-payload-edited",
    ),
    pytest.param({"statement": replace(VECTOR, chain_id=11155111)}, "chain_id", id="other-chain"),
    pytest.param({"statement": replace(VECTOR, chain_id=None)}, "chain_id", id="chain-missing"),
    pytest.param({"statement": replace(VECTOR, key_id="ff" * 16)}, "key_id", id="other-key"),
    pytest.param({"statement": replace(VECTOR, key_id="")}, "key_id", id="key-missing"),
    pytest.param({"statement": replace(VECTOR, policy_version=1)}, "policy_version", id="older-policy"),
    pytest.param({"statement": replace(VECTOR, policy_version=3)}, "policy_version", id="newer-policy"),
    pytest.param(
        # The statement and the request agree on version 2, but version 3 is active now.
        {"active_policy_version": 3},
        "policy_version",
        id="request-under-old-policy",
    ),
    pytest.param(
        {
            "request": make_request(decision=replace(make_request().decision, policy_version=1)),
            "statement": replace(VECTOR, policy_version=2),
        },
        "policy_version",
        id="statement-active-request-old",
    ),
    pytest.param({"approver": "bob"}, "approver", id="sent-by-another-approver"),
    pytest.param({"statement": replace(VECTOR, expires_at=NOW)}, "expires_at", id="expires-now"),
    pytest.param({"statement": replace(VECTOR, expires_at=NOW - 1)}, "expires_at", id="expired"),
    pytest.param(
        {"statement": replace(VECTOR, expires_at=NOW + MAX_STATEMENT_LIFETIME_SECONDS + 1)},
        "expires_at",
        id="too-far-ahead",
    ),
]


@pytest.mark.parametrize(("case", "field"), CHECK_REFUSALS)
def test_check_statement_refuses_and_names_the_field(case: dict[str, Any], field: str) -> None:
    arguments = dict(case)
    statement = arguments.pop("statement", VECTOR)
    request = arguments.pop("request", None)
    with pytest.raises(FailedPrecondition) as raised:
        check(statement, request, **arguments)
    assert field in raised.value.message

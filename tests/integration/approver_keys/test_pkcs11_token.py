"""The approver's Ed25519 key in their own PKCS#11 token (a second SoftHSM2 token, "approver-alice").

The PKCS#11 calls run in a child process (see conftest.py); every signature it reports is verified here with
`cryptography` against the public key that generation returned.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import KeyType

from custody.domain.approvals import verify_signature
from tests.integration.approver_keys.conftest import APPROVER_PIN
from tests.integration.approver_keys.token_scenarios import WRONG_PIN


def generated_public_key(token_outcomes: dict[str, Any]) -> bytes:
    assert "error" not in token_outcomes["generate"], token_outcomes["generate"]
    return bytes.fromhex(token_outcomes["generate"]["result"])


def test_generation_returns_a_raw_ed25519_public_key(token_outcomes: dict[str, Any]) -> None:
    public_key = generated_public_key(token_outcomes)
    assert len(public_key) == 32
    Ed25519PublicKey.from_public_bytes(public_key)


def test_signer_reports_the_generated_public_key(token_outcomes: dict[str, Any]) -> None:
    assert token_outcomes["sign"]["result"]["public_key"] == generated_public_key(token_outcomes).hex()


def test_token_signature_verifies_with_cryptography(
    token_outcomes: dict[str, Any], statement_bytes: bytes
) -> None:
    public_key = generated_public_key(token_outcomes)
    signature = bytes.fromhex(token_outcomes["sign"]["result"]["signature"])
    assert len(signature) == 64
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, statement_bytes)
    verify_signature(public_key, statement_bytes, signature, "alice")


def test_token_signatures_are_deterministic(token_outcomes: dict[str, Any]) -> None:
    # RFC 8032 Ed25519 signatures are deterministic: a second signature over the same bytes is identical.
    signed = token_outcomes["sign"]["result"]
    assert signed["second_signature"] == signed["signature"]


def test_token_signature_does_not_verify_for_another_statement(
    token_outcomes: dict[str, Any], statement_bytes: bytes
) -> None:
    public_key = Ed25519PublicKey.from_public_bytes(generated_public_key(token_outcomes))
    signature = bytes.fromhex(token_outcomes["sign"]["result"]["signature"])
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, statement_bytes.replace(b"approve", b"reject!"))


def test_private_key_is_a_sensitive_unextractable_token_object(token_outcomes: dict[str, Any]) -> None:
    assert token_outcomes["private_attributes"] == {
        "key_type": int(KeyType.EC_EDWARDS),
        "sensitive": True,
        "extractable": False,
        "always_sensitive": True,
        "never_extractable": True,
        "token": True,
        "private": True,
    }


def test_a_second_key_under_the_same_label_is_refused(token_outcomes: dict[str, Any]) -> None:
    assert token_outcomes["generate_again"] == {
        "error": "AlreadyExists",
        "message": "the token 'approver-alice' already holds an object labelled 'alice-approval'",
    }


def test_an_extractable_key_is_refused(token_outcomes: dict[str, Any]) -> None:
    outcome = token_outcomes["leaky_key"]
    assert outcome["error"] == "ConfigurationError"
    assert outcome["message"] == (
        "the key 'leaky-approval' is not sensitive, so its private half can be read out"
    )


def test_an_unknown_key_label_is_refused(token_outcomes: dict[str, Any]) -> None:
    assert token_outcomes["unknown_key"] == {
        "error": "ConfigurationError",
        "message": "the token 'approver-alice' has no private key labelled 'nobody-approval'",
    }


def test_an_unknown_token_is_refused(token_outcomes: dict[str, Any]) -> None:
    outcome = token_outcomes["unknown_token"]
    assert outcome["error"] == "ConfigurationError"
    assert "no token labelled 'approver-nobody'" in outcome["message"]


def test_a_wrong_pin_is_refused_without_showing_any_pin(token_outcomes: dict[str, Any]) -> None:
    outcome = token_outcomes["wrong_pin"]
    assert outcome == {
        "error": "PermissionDenied",
        "message": "could not open a session on token 'approver-alice': the token refused the PIN",
    }
    assert WRONG_PIN not in outcome["message"]
    assert APPROVER_PIN not in outcome["message"]


def test_signing_after_close_is_refused(token_outcomes: dict[str, Any]) -> None:
    assert token_outcomes["sign_after_close"] == {
        "error": "FailedPrecondition",
        "message": "the signer for key 'alice-approval' has been closed",
    }

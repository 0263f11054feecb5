"""Approval statements: what an approver signs, and the checks the daemon makes before it counts one.

An approver never signs a bare digest. They sign a statement that binds everything the approval is about:
the request, the exact 32 bytes the HSM will sign, the hash of the stored payload, chain id, key id, policy
version, the decision, who decides and until when the statement is good. The statement is a domain-separated,
versioned byte string (``STATEMENT_PREFIX`` followed by compact JSON with sorted keys), so a signature made
for it can never be mistaken for a signature over anything else, and there is exactly one encoding of each
statement: ``from_bytes`` refuses any byte string that ``to_bytes`` would not have produced.

Approvers sign with Ed25519 (pure Ed25519 over the statement bytes). The daemon verifies the signature with
the key the active policy names for the approver (``verify_signature``), then compares every bound field with
what it recomputed from its own stored request (``binding_problem``, and ``check_statement`` for a new verdict).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.domain.canonical_json import canonical_json
from custody.domain.errors import ConfigurationError, FailedPrecondition, InvalidInput, PermissionDenied
from custody.domain.requests import SigningRequest, Verdict

STATEMENT_PREFIX = b"custody approval statement v1\n"
MAX_STATEMENT_BYTES = 4096
# A statement is a decision about a request that is waiting now; one good for longer than the longest default
# request lifetime would outlive any request it could be about, and a leaked one would stay dangerous.
MAX_STATEMENT_LIFETIME_SECONDS = 24 * 60 * 60

ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64

STATEMENT_FIELDS = frozenset(
    {
        "request_id",
        "digest",
        "payload_hash",
        "chain_id",
        "key_id",
        "policy_version",
        "decision",
        "approver",
        "expires_at",
    }
)

_HASH_BYTES = 32
_MAX_IDENTIFIER_CHARS = 128
_MAX_CHAIN_ID = 2**64 - 1
# Versions and times are stored in SQLite and PostgreSQL BIGINT columns.
_MAX_STORED_INTEGER = 2**63 - 1
# Matched with fullmatch: "$" would also match before a trailing newline, and let "ab\n" pass as hex.
_HASH_PATTERN = re.compile(r"0x[0-9a-f]{64}")
_KEY_ID_PATTERN = re.compile(r"(?:[0-9a-f]{2})*")
# The HSM layer refuses CKA_IDs longer than 64 bytes; the bound also keeps the longest statement (both
# identifiers at their longest, escaped) within MAX_STATEMENT_BYTES, so every statement round-trips.
_MAX_KEY_ID_BYTES = 64


@dataclass(frozen=True)
class ApprovalStatement:
    """One approver's decision on one request, in the form that is signed.

    Constructing a statement validates every field, so ``to_bytes`` only ever produces bytes that
    ``from_bytes`` accepts.
    """

    request_id: str
    digest: bytes  # the 32 bytes the HSM will sign; for governance requests the SHA-256 of the payload
    payload_hash: bytes  # SHA-256 of the stored payload
    chain_id: int | None
    key_id: str  # hex of the key's CKA_ID; empty for a policy change, which concerns no key
    policy_version: int
    decision: Verdict
    approver: str  # the approver's id, equal to the common name of their client certificate
    expires_at: int  # unix seconds; the statement is refused at and after this moment

    def __post_init__(self) -> None:
        _check_identifier(self.request_id, "request_id")
        _check_hash(self.digest, "digest")
        _check_hash(self.payload_hash, "payload_hash")
        if self.chain_id is not None and not _is_int_between(self.chain_id, 0, _MAX_CHAIN_ID):
            raise InvalidInput(
                f"a chain id is an integer from 0 to 2**64 - 1 or null; got {self.chain_id!r}",
                field="chain_id",
            )
        if (
            not isinstance(self.key_id, str)
            or len(self.key_id) > 2 * _MAX_KEY_ID_BYTES
            or not _KEY_ID_PATTERN.fullmatch(self.key_id)
        ):
            raise InvalidInput(
                f"a key id is lowercase hex of 1 to {_MAX_KEY_ID_BYTES} whole bytes, or empty for a policy"
                f" change; got {_shorten(repr(self.key_id))}",
                field="key_id",
            )
        if not _is_int_between(self.policy_version, 1, _MAX_STORED_INTEGER):
            raise InvalidInput(
                f"a policy version is a positive integer; got {self.policy_version!r}", field="policy_version"
            )
        if not isinstance(self.decision, Verdict):
            raise InvalidInput(
                f"a decision is Verdict.APPROVE or Verdict.REJECT; got {self.decision!r}", field="decision"
            )
        _check_identifier(self.approver, "approver")
        if not _is_int_between(self.expires_at, 0, _MAX_STORED_INTEGER):
            raise InvalidInput(
                f"an expiry is a non-negative integer number of unix seconds; got {self.expires_at!r}",
                field="expires_at",
            )

    def to_bytes(self) -> bytes:
        """The canonical statement: the prefix, then compact JSON with sorted keys in ASCII."""
        document = {
            "request_id": self.request_id,
            "digest": "0x" + self.digest.hex(),
            "payload_hash": "0x" + self.payload_hash.hex(),
            "chain_id": self.chain_id,
            "key_id": self.key_id,
            "policy_version": self.policy_version,
            "decision": self.decision.value,
            "approver": self.approver,
            "expires_at": self.expires_at,
        }
        # ensure_ascii keeps the statement pure ASCII, so its bytes do not depend on how an editor or a
        # terminal normalizes Unicode; separators without spaces make the encoding compact and unique.
        text = canonical_json(document, ascii_only=True)
        return STATEMENT_PREFIX + text.encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> ApprovalStatement:
        """Parse a statement strictly; InvalidInput(field="statement") says what is wrong with ``data``."""
        if not isinstance(data, bytes):
            raise InvalidInput(
                f"an approval statement is bytes; got {type(data).__name__}", field="statement"
            )
        if len(data) > MAX_STATEMENT_BYTES:
            raise InvalidInput(
                f"an approval statement is at most {MAX_STATEMENT_BYTES} bytes; got {len(data)}",
                field="statement",
            )
        if not data.startswith(STATEMENT_PREFIX):
            raise InvalidInput(
                "an approval statement starts with 'custody approval statement v1' and a newline",
                field="statement",
            )
        body = data[len(STATEMENT_PREFIX) :]
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the approval statement is not valid UTF-8", field="statement") from None
        try:
            document = json.loads(
                text, object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
            )
        except _DuplicateKey as exc:
            raise InvalidInput(
                f"the approval statement repeats the field {exc.key!r}", field="statement"
            ) from None
        except (ValueError, RecursionError):
            # json.JSONDecodeError and the refusal of NaN or Infinity are both ValueErrors; arrays or objects
            # nested thousands deep, which fit in MAX_STATEMENT_BYTES, exhaust the decoder's recursion limit.
            raise InvalidInput("the approval statement is not valid JSON", field="statement") from None
        if not isinstance(document, dict):
            raise InvalidInput("the approval statement is not a JSON object", field="statement")
        statement = _statement_from_document(document)
        if statement.to_bytes() != data:
            raise InvalidInput(
                "the approval statement is not in canonical form (compact JSON, sorted keys, ASCII only,"
                " lowercase hex), so it has more than one encoding",
                field="statement",
            )
        return statement

    @classmethod
    def for_request(
        cls, request: SigningRequest, approver: str, decision: Verdict, expires_at: int
    ) -> ApprovalStatement:
        """The statement ``approver`` signs to give ``decision`` on ``request``, bound to its stored fields."""
        return cls(
            request_id=request.request_id,
            digest=request.digest,
            payload_hash=request.payload_hash,
            chain_id=request.chain_id,
            key_id=request.key_id,
            policy_version=request.decision.policy_version,
            decision=decision,
            approver=approver,
            expires_at=expires_at,
        )


def verify_signature(public_key: bytes, statement: bytes, signature: bytes, approver: str) -> None:
    """Raise PermissionDenied unless ``signature`` is ``approver``'s Ed25519 signature over ``statement``.

    It never returns False: a verification whose result could be ignored is a bug waiting to happen.
    """
    if not isinstance(public_key, bytes) or len(public_key) != ED25519_PUBLIC_KEY_BYTES:
        raise ConfigurationError(
            f"the public key the policy names for approver {approver} is not a 32-byte Ed25519 key"
        )
    if not isinstance(statement, bytes) or len(statement) > MAX_STATEMENT_BYTES:
        raise InvalidInput(f"an approval statement is at most {MAX_STATEMENT_BYTES} bytes", field="statement")
    if not isinstance(signature, bytes) or len(signature) != ED25519_SIGNATURE_BYTES:
        length = len(signature) if isinstance(signature, bytes) else type(signature).__name__
        raise InvalidInput(
            f"an approval signature is {ED25519_SIGNATURE_BYTES} bytes of Ed25519; got {length}",
            field="signature",
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, statement)
    except (InvalidSignature, ValueError):
        raise PermissionDenied(f"the approval signature does not verify with {approver}'s key") from None


def binding_problem(
    statement: ApprovalStatement,
    request: SigningRequest,
    *,
    approver: str,
    expected_digest: bytes,
    expected_payload_hash: bytes,
    active_policy_version: int,
) -> str | None:
    """Why ``statement`` does not bind ``request`` as it is now, naming the field; None when it does.

    ``expected_digest`` and ``expected_payload_hash`` are what the daemon recomputed from the stored payload,
    not the stored columns; a request whose stored digest or payload hash differs from them was edited in the
    database, and no statement counts for it. ``approver`` is who gave the verdict. This one check serves both
    the counting of a new verdict and the re-verification of every counted one before the HSM signs.
    """
    if statement.request_id != request.request_id:
        return f"the approval statement's request_id is {statement.request_id}, not {request.request_id}"
    # The daemon signs the stored digest, so a stored row that no longer agrees with its own payload must not
    # collect approvals, even when an approver's statement matches what the payload really says.
    if request.digest != expected_digest or request.payload_hash != expected_payload_hash:
        return (
            f"request {request.request_id}'s stored digest or payload_hash does not match its stored payload;"
            " the request was changed after it was submitted and no approval counts for it"
        )
    if statement.digest != expected_digest:
        return (
            f"the approval statement's digest 0x{statement.digest.hex()} is not the digest custody computed"
            f" for request {request.request_id} (0x{expected_digest.hex()})"
        )
    if statement.payload_hash != expected_payload_hash:
        return (
            f"the approval statement's payload_hash 0x{statement.payload_hash.hex()} is not the hash of"
            f" the payload of request {request.request_id} (0x{expected_payload_hash.hex()})"
        )
    if statement.chain_id != request.chain_id:
        return (
            f"the approval statement's chain_id is {_show(statement.chain_id)}, but request"
            f" {request.request_id} is for chain id {_show(request.chain_id)}"
        )
    if statement.key_id != request.key_id:
        return (
            f"the approval statement's key_id is {_show(statement.key_id)}, but request"
            f" {request.request_id} is for key id {_show(request.key_id)}"
        )
    request_version = request.decision.policy_version
    if request_version != active_policy_version:
        return (
            f"request {request.request_id} was decided under policy_version {request_version}, but version"
            f" {active_policy_version} is active, so no approval can count for it"
        )
    if statement.policy_version != active_policy_version:
        return (
            f"the approval statement's policy_version is {statement.policy_version}, but version"
            f" {active_policy_version} is active"
        )
    if statement.approver != approver:
        return f"the approval statement's approver is {statement.approver}, but it was sent by {approver}"
    return None


def check_statement(
    statement: ApprovalStatement,
    request: SigningRequest,
    *,
    approver: str,
    expected_digest: bytes,
    expected_payload_hash: bytes,
    active_policy_version: int,
    now: int,
) -> None:
    """Raise FailedPrecondition, naming the field, unless ``statement`` binds ``request`` as it is now
    (``binding_problem``) and may be counted at ``now`` (unix seconds): not expired, and not good for longer
    than a statement may be."""
    problem = binding_problem(
        statement,
        request,
        approver=approver,
        expected_digest=expected_digest,
        expected_payload_hash=expected_payload_hash,
        active_policy_version=active_policy_version,
    )
    if problem is not None:
        raise FailedPrecondition(problem)
    if statement.expires_at <= now:
        raise FailedPrecondition(
            f"the approval statement expired: its expires_at {statement.expires_at} is not after now ({now})"
        )
    if statement.expires_at > now + MAX_STATEMENT_LIFETIME_SECONDS:
        raise FailedPrecondition(
            f"the approval statement's expires_at {statement.expires_at} is more than"
            f" {MAX_STATEMENT_LIFETIME_SECONDS} seconds after now ({now})"
        )


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A JSON object with a repeated key has two readings; the statement must have exactly one.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(key)
        document[key] = value
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _statement_from_document(document: dict[str, Any]) -> ApprovalStatement:
    missing = sorted(STATEMENT_FIELDS - document.keys())
    if missing:
        raise InvalidInput(
            f"the approval statement lacks the field(s) {', '.join(missing)}", field="statement"
        )
    unknown = sorted(document.keys() - STATEMENT_FIELDS)
    if unknown:
        raise InvalidInput(
            f"the approval statement has unknown field(s) {', '.join(unknown)}", field="statement"
        )
    decision_text = document["decision"]
    if not isinstance(decision_text, str) or decision_text not in {verdict.value for verdict in Verdict}:
        raise InvalidInput(
            f"the approval statement's decision is 'approve' or 'reject'; got {_shorten(repr(decision_text))}",
            field="statement",
        )
    try:
        return ApprovalStatement(
            request_id=_expect_str(document, "request_id"),
            digest=_parse_hash(document, "digest"),
            payload_hash=_parse_hash(document, "payload_hash"),
            chain_id=document["chain_id"],
            key_id=_expect_str(document, "key_id"),
            policy_version=document["policy_version"],
            decision=Verdict(decision_text),
            approver=_expect_str(document, "approver"),
            expires_at=document["expires_at"],
        )
    except InvalidInput as exc:
        # The dataclass names the field in its own error; the statement's error names the statement.
        raise InvalidInput(
            f"the approval statement's {exc.field} is invalid: {exc.message.removeprefix(f'{exc.field}: ')}",
            field="statement",
        ) from None


def _expect_str(document: dict[str, Any], name: str) -> str:
    value = document[name]
    if not isinstance(value, str):
        raise InvalidInput(f"a string is required; got {_json_type(value)}", field=name)
    return value


def _parse_hash(document: dict[str, Any], name: str) -> bytes:
    value = _expect_str(document, name)
    if not _HASH_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"32 bytes as 0x followed by 64 lowercase hex digits are required; got {_shorten(value)!r}",
            field=name,
        )
    return bytes.fromhex(value[2:])


def _check_identifier(value: object, name: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_IDENTIFIER_CHARS:
        raise InvalidInput(
            f"1 to {_MAX_IDENTIFIER_CHARS} characters of text are required; got {_shorten(repr(value))}",
            field=name,
        )
    if not value.isprintable():
        raise InvalidInput("only printable characters are allowed", field=name)


def _check_hash(value: object, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != _HASH_BYTES:
        raise InvalidInput(f"exactly {_HASH_BYTES} bytes are required", field=name)


def _is_int_between(value: object, low: int, high: int) -> bool:
    # JSON true and false arrive as Python bools, which are ints; a statement saying `"chain_id": true` is
    # malformed, not chain 1.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    if value is None:
        return "null"
    if value == "":
        return "empty"
    return str(value)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

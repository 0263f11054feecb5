"""Ethereum payloads: strict parsing, the digest the HSM signs, and assembly of the signed result.

Nothing here does I/O; the use cases call ``parse_payload`` on submit and ``assemble`` after the HSM signed.
"""

from __future__ import annotations

from custody.chains.evm.address import address_from_public_point, checksum_address
from custody.chains.evm.authorizations import Authorization, parse_authorization
from custody.chains.evm.messages import Message, parse_message
from custody.chains.evm.payload import ParsedPayload
from custody.chains.evm.signature import SignatureMismatch, recoverable_signature
from custody.chains.evm.transactions import Transaction, parse_transaction
from custody.chains.evm.typed_data import TypedData, parse_typed_data
from custody.chains.evm.values import MAX_PAYLOAD_BYTES, check_payload_size, load_json_object
from custody.domain.errors import InvalidInput
from custody.domain.requests import PayloadKind, SignatureResult

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Authorization",
    "Message",
    "ParsedPayload",
    "PayloadKind",
    "SignatureMismatch",
    "SignatureResult",
    "Transaction",
    "TypedData",
    "address_from_public_point",
    "checksum_address",
    "parse_authorization",
    "parse_message",
    "parse_payload",
    "parse_transaction",
    "parse_typed_data",
    "recoverable_signature",
]


def parse_payload(kind: PayloadKind, payload: bytes) -> ParsedPayload:
    """Parse ``payload`` as ``kind``; raises InvalidInput naming the offending field."""
    check_payload_size(payload)
    if kind is PayloadKind.TRANSACTION:
        return parse_transaction(load_json_object(payload, "transaction"))
    if kind is PayloadKind.TYPED_DATA:
        return parse_typed_data(load_json_object(payload, "typed data"))
    if kind is PayloadKind.MESSAGE:
        return parse_message(payload)
    if kind is PayloadKind.AUTHORIZATION:
        return parse_authorization(load_json_object(payload, "authorization"))
    raise InvalidInput(f"unsupported payload kind {kind!r}", field="kind")

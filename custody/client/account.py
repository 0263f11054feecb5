"""CustodyAccount: what eth-account's LocalAccount offers for signing, with the key in custody's HSM.

Code that signs with ``Account.from_key(...)`` switches by changing that one line to
``CustodyClient.from_profile(PROFILE).account(LABEL)``: ``address``, ``sign_transaction``, ``sign_message`` and
``sign_typed_data`` take the same arguments and return eth-account's own SignedTransaction and SignedMessage.
Each call is a signing request the policy decides: one held for approvals raises ApprovalRequired (after
waiting ``wait_seconds`` for the quorum), one that ends unsigned raises RequestNotSigned. The account remembers
the calls it was told to wait for: the same call again (for a transaction, every field equal but the gas and fees
a node fills in, so the same authorization list, blob hashes and blob fee too) answers from that request once
it is signed.

Nothing the daemon answers is taken on trust: the client recomputes the digest of what it asked to be signed
with eth-account, checks the daemon's digest is that one, and recovers the signer of every signature, which
must be the key's address; a signed transaction must be the one asked for in every field. The daemon signs
only payloads it can read, so there is no ``unsafe_sign_hash``, and ``sign_message`` signs EIP-191 personal
messages only (typed data goes through ``sign_typed_data``, whole).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import rlp
from eth_account import Account
from eth_account.datastructures import SignedMessage, SignedTransaction
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_keys.datatypes import Signature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from custody.domain.errors import CustodyError, InvalidInput

if TYPE_CHECKING:
    from custody.client.client import CustodyClient, PayloadKindName, RequestInfo

_PERSONAL_MESSAGE_VERSION = b"E"
_EIP712_DOMAIN_FIELDS = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)
_WAITING_STATES = frozenset({"PENDING_APPROVAL", "APPROVED"})
# The fields a node fills in (web3.py's middleware asks it for gas and fees each time): what a transaction
# pays for its execution, as opposed to what it does. Every other field, the authorization list, blob hashes
# and blob fee too, makes two calls the same transaction only when equal.
_NODE_FILLED_FIELDS = frozenset({"gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"})
_QUANTITY_FIELDS = frozenset({"chainId", "nonce", "value", "type", "maxFeePerBlobGas"})
_LEGACY_FIELDS = frozenset({"type", "chainId", "nonce", "gasPrice", "gas", "to", "value", "data"})


class ApprovalRequired(CustodyError):
    """The policy holds the request for approvals. Sign again with the same arguments once the quorum has
    approved (``CustodyClient.wait(request_id)`` waits for it) to get the signature."""

    def __init__(self, request_id: str, state: str, progress: str = "") -> None:
        waiting = f" ({progress})" if progress else ""
        super().__init__(
            f"request {request_id} is {state}{waiting}; approvers must approve it before it is signed"
        )
        self.request_id = request_id
        self.state = state


class RequestNotSigned(CustodyError):
    """The request ended without a signature: DENIED by the policy, REJECTED, EXPIRED, CANCELLED or FAILED."""

    def __init__(self, request_id: str, state: str, reason: str) -> None:
        super().__init__(
            f"request {request_id} ended {state}: {reason}"
            if reason
            else f"request {request_id} ended {state}"
        )
        self.request_id = request_id
        self.state = state
        self.reason = reason


class SignatureMismatch(CustodyError):
    """The daemon's answer does not verify against what was asked: nothing is returned (fail closed)."""


class CustodyAccount:
    def __init__(self, client: CustodyClient, key_label: str, *, wait_seconds: float = 0.0) -> None:
        self._client = client
        self.key_label = key_label
        self._wait_seconds = wait_seconds
        self._address = to_checksum_address(client.key(key_label).address)
        # A call answered "pending" is remembered, so that the same call again after the quorum answers from
        # its request instead of submitting a second one (a transaction finds it by its nonce anyway).
        self._pending: dict[tuple[str, bytes], str] = {}

    @property
    def address(self) -> str:
        return self._address

    def __repr__(self) -> str:
        return f"CustodyAccount({self.key_label!r}, {self._address})"

    # -- transactions -------------------------------------------------------------------------------------------

    def sign_transaction(self, transaction_dict: Mapping[str, Any]) -> SignedTransaction:
        """Sign an eth-account-style transaction dict (ints, hex strings or bytes; ``from``, when present, must
        be this account's address); returns eth-account's SignedTransaction."""
        fields = dict(transaction_dict)
        sender = fields.pop("from", None)
        if sender is not None and to_checksum_address(sender) != self._address:
            raise InvalidInput(f"is {sender}, not this account's address {self._address}", field="from")
        payload = json.dumps(_json_value(fields), separators=(",", ":")).encode("utf-8")
        # What makes two calls the same transaction: a caller that fills fees and gas from a node (web3.py's
        # middleware) asks again after the approvals with other fees, and must get the approved transaction,
        # not a conflict over its nonce.
        request, remembered = self._signed(payload, "transaction", _transaction_identity(fields))
        if request.signed_tx is None or request.tx_hash is None or request.signature is None:
            raise SignatureMismatch(
                f"request {request.request_id} is SIGNED but carries no signed transaction"
            )
        raw = bytes(request.signed_tx)
        if Account.recover_transaction(raw) != self._address or keccak(raw) != request.tx_hash:
            raise SignatureMismatch(
                f"the transaction of request {request.request_id} is not signed by {self._address}"
            )
        # The request an earlier call waited for carries that call's gas and fees; the rest must be this call's.
        _check_transaction_fields(raw, fields, request.request_id, check_fees=not remembered)
        r, s, y_parity = _split(request.signature)
        # A typed transaction carries the bare y-parity; a legacy one EIP-155's v.
        v = y_parity if raw[0] < 0x80 else _quantity(fields["chainId"]) * 2 + 35 + y_parity
        return SignedTransaction(raw_transaction=HexBytes(raw), hash=HexBytes(request.tx_hash), r=r, s=s, v=v)

    # -- messages and typed data ----------------------------------------------------------------------------------

    def sign_message(self, signable_message: SignableMessage) -> SignedMessage:
        """Sign an EIP-191 personal message (``encode_defunct(...)``); returns eth-account's SignedMessage."""
        if signable_message.version != _PERSONAL_MESSAGE_VERSION:
            raise InvalidInput(
                "custody signs EIP-191 personal messages (version 0x45, encode_defunct) here; sign EIP-712 typed"
                " data with sign_typed_data and the whole message, which the daemon must read",
                field="signable_message",
            )
        body = bytes(signable_message.body)
        if bytes(signable_message.header) != b"thereum Signed Message:\n" + str(len(body)).encode():
            raise InvalidInput("has a header that does not match its body's length", field="signable_message")
        return self._signed_message(body, "message", _eip191_hash(signable_message))

    def sign_typed_data(
        self,
        domain_data: Mapping[str, Any] | None = None,
        message_types: Mapping[str, Any] | None = None,
        message_data: Mapping[str, Any] | None = None,
        full_message: Mapping[str, Any] | None = None,
    ) -> SignedMessage:
        """Sign EIP-712 typed data given as eth-account takes it (the three parts, or ``full_message``)."""
        if full_message is not None:
            if domain_data is not None or message_types is not None or message_data is not None:
                raise InvalidInput(
                    "give either full_message or the three parts, not both", field="full_message"
                )
            document = _json_value(dict(full_message))
            expected = encode_typed_data(full_message=dict(full_message))
        else:
            if domain_data is None or message_types is None or message_data is None:
                raise InvalidInput(
                    "domain_data, message_types and message_data are all needed", field="message_types"
                )
            document = _full_message(dict(domain_data), dict(message_types), dict(message_data))
            expected = encode_typed_data(dict(domain_data), dict(message_types), dict(message_data))
        if "primaryType" not in document:
            types = {name: members for name, members in document["types"].items() if name != "EIP712Domain"}
            document["primaryType"] = _primary_type(types)
        payload = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return self._signed_message(payload, "typed_data", _eip191_hash(expected))

    def _signed_message(self, payload: bytes, kind: PayloadKindName, expected_digest: bytes) -> SignedMessage:
        request, _ = self._signed(payload, kind, payload)
        if request.digest != expected_digest:
            # The daemon read the payload differently from eth-account: nothing it signed can be returned.
            raise SignatureMismatch(
                f"the daemon's digest for request {request.request_id} differs from eth-account's for the same"
                " data; the signature is not returned"
            )
        if request.signature is None:
            raise SignatureMismatch(f"request {request.request_id} is SIGNED but carries no signature")
        r, s, v = _split(request.signature)
        signer = Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(expected_digest)
        if signer.to_checksum_address() != self._address:
            raise SignatureMismatch(
                f"the signature of request {request.request_id} is not by {self._address}"
            )
        return SignedMessage(
            message_hash=HexBytes(expected_digest), r=r, s=s, v=v, signature=HexBytes(request.signature)
        )

    def _signed(self, payload: bytes, kind: PayloadKindName, identity: bytes) -> tuple[RequestInfo, bool]:
        """The SIGNED request for ``payload``, and whether it is the one an earlier call with the same
        ``identity`` was told to wait for (else it was submitted now); ApprovalRequired or RequestNotSigned
        when there is no signature."""
        remembered_as = (kind, keccak(identity))
        remembered = self._pending.get(remembered_as)
        request = (
            self._client.get(remembered) if remembered else self._client.submit(self.key_label, kind, payload)
        )
        if request.state in _WAITING_STATES and self._wait_seconds > 0:
            request = self._client.wait(request.request_id, self._wait_seconds)
        if request.state in _WAITING_STATES:
            self._pending[remembered_as] = request.request_id
            raise ApprovalRequired(request.request_id, request.state, request.quorum_progress)
        self._pending.pop(remembered_as, None)
        if request.state != "SIGNED":
            raise RequestNotSigned(
                request.request_id, request.state, request.error or request.decision_reason
            )
        return request, remembered is not None


def _json_value(value: Any) -> Any:
    """A value of an eth-account dict as JSON: bytes as 0x-hex, everything else as it is."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return value


def _full_message(domain: dict[str, Any], types: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The full EIP-712 document for eth-account's three-part form: the domain type lists the domain's fields
    in EIP-712's order, as eth-account derives it."""
    domain_type = [{"name": name, "type": kind} for name, kind in _EIP712_DOMAIN_FIELDS if name in domain]
    unknown = sorted(set(domain) - {name for name, _ in _EIP712_DOMAIN_FIELDS})
    if unknown:
        raise InvalidInput("is not an EIP-712 domain field", field=f"domain_data.{unknown[0]}")
    return {
        "types": {"EIP712Domain": domain_type, **_json_value(types)},
        "primaryType": _primary_type(types),
        "domain": _json_value(domain),
        "message": _json_value(message),
    }


def _primary_type(types: Mapping[str, Any]) -> str:
    """The one type no other type refers to, as eth-account finds it when the primary type is not named."""
    referenced = {
        str(member["type"]).split("[", 1)[0]
        for name, members in types.items()
        for member in members
        if str(member["type"]).split("[", 1)[0] != name
    }
    candidates = sorted(set(types) - referenced)
    if len(candidates) != 1:
        raise InvalidInput(
            "cannot tell the primary type; name it (primaryType in full_message)", field="message_types"
        )
    return candidates[0]


def _eip191_hash(signable: SignableMessage) -> bytes:
    return bytes(keccak(b"\x19" + bytes(signable.version) + bytes(signable.header) + bytes(signable.body)))


def _split(signature: bytes) -> tuple[int, int, int]:
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]


def _quantity(value: Any) -> int:
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    return int(value)


def _transaction_identity(fields: Mapping[str, Any]) -> bytes:
    """What makes two calls the same transaction: every field but those a node fills in, with quantities
    read as numbers so that 16 and "0x10" are one value."""
    identity = {
        name: _quantity(value) if name in _QUANTITY_FIELDS and value is not None else _json_value(value)
        for name, value in fields.items()
        if name not in _NODE_FILLED_FIELDS
    }
    return json.dumps(identity, sort_keys=True, default=str).encode("utf-8")


def _check_transaction_fields(
    raw: bytes, asked: Mapping[str, Any], request_id: str, *, check_fees: bool = True
) -> None:
    """The signed transaction is the one asked for, every field of it; with ``check_fees`` false (the request
    an earlier call waited for, which carries that call's gas and fees) the gas and fee fields are left out.

    A typed transaction is decoded and the asked one encoded by eth-account, and the two unsigned
    transactions must have the same signing hash: the authorization list, blob hashes, blob fee and access
    list count like the destination and value.
    """
    if raw[0] < 0x80:
        signed = TypedTransaction.from_bytes(HexBytes(raw))
        # Quantities as numbers, read as the identity reads them (eth-account takes only hex strings).
        expected = {
            name: _quantity(value)
            if name in _QUANTITY_FIELDS | _NODE_FILLED_FIELDS and value is not None
            else value
            for name, value in asked.items()
        }
        if not check_fees:
            signed_fields = signed.as_dict()
            expected.update(
                {name: signed_fields[name] for name in _NODE_FILLED_FIELDS & signed_fields.keys()}
            )
        try:
            matches = TypedTransaction.from_dict(expected).hash() == signed.hash()
        except (TypeError, ValueError, KeyError):
            # eth-account cannot encode what was asked as a transaction of the signed one's kind.
            matches = False
    else:
        matches = _legacy_matches(raw, asked, check_fees=check_fees)
    if not matches:
        raise SignatureMismatch(f"the transaction signed for request {request_id} is not the one asked for")


def _legacy_matches(raw: bytes, asked: Mapping[str, Any], *, check_fees: bool) -> bool:
    """Whether a signed legacy transaction (EIP-155) carries every field asked: nonce, gas price, gas,
    destination, value, data and chain id (in ``v``)."""
    nonce, gas_price, gas, to, value, data, v, _, _ = rlp.decode(raw)
    expected_to = asked.get("to")
    expected_data = asked.get("data", b"")
    try:
        return (
            int.from_bytes(nonce, "big") == _quantity(asked["nonce"])
            and (
                not check_fees
                or (
                    int.from_bytes(gas_price, "big") == _quantity(asked["gasPrice"])
                    and int.from_bytes(gas, "big") == _quantity(asked["gas"])
                )
            )
            and bytes(to) == (b"" if expected_to is None else HexBytes(expected_to))
            and int.from_bytes(value, "big") == _quantity(asked.get("value", 0))
            and bytes(data) == HexBytes(expected_data)
            and (int.from_bytes(v, "big") - 35) // 2 == _quantity(asked["chainId"])
            and _quantity(asked.get("type", 0)) == 0
            and set(asked) <= _LEGACY_FIELDS
        )
    except (KeyError, TypeError, ValueError):
        return False

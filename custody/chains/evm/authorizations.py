"""EIP-7702 authorizations: the tuple an account signs to make its address run a delegate's code.

An authorization ``(chain_id, address, nonce)`` is signed over ``keccak256(0x05 || rlp([chain_id, address,
nonce]))``. Once a set-code (type 4) transaction carries it, the signer's account (the *authority*) runs the
code of ``address`` (the *delegate*) until another authorization replaces it: whoever controls the delegate's
code controls everything the key holds. A chain id of 0 makes it valid on every chain.

Two things live here: the ``authorization`` payload kind, which custody signs with one of its keys, and the
already-signed tuples of a set-code transaction's ``authorizationList``, which custody checks for form and whose
signer it recovers so that approvers and the policy see whose account would change.

The digest is computed with custody's own RLP encoder (custody/chains/evm/rlp.py), as transactions' are; the
known-answer tests compare it with eth-account's ``Account.sign_authorization``, which computes it on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak

from custody.chains.evm import rlp
from custody.chains.evm.address import checksum_address
from custody.chains.evm.signature import SECP256K1_HALF_N, SECP256K1_N
from custody.chains.evm.values import canonical_payload, json_type_name, parse_chain_id, parse_integer
from custody.domain.errors import InternalError, InvalidInput
from custody.domain.requests import PayloadKind, SignatureResult

# EIP-7702's SET_CODE_TX_TYPE magic: the byte that separates an authorization's digest from any transaction's.
AUTHORIZATION_MAGIC = b"\x05"

# EIP-7702 skips an authorization whose nonce is not below 2**64 - 1 (EIP-2681's cap on account nonces).
MAX_AUTHORIZATION_NONCE = 2**64 - 2

# The nonce scope (see ParsedPayload.nonce_slot) of authorizations: one authorization per key, chain and nonce.
AUTHORIZATION_NONCE_SCOPE = "authorization"

# The chain id that makes an authorization valid on every chain.
EVERY_CHAIN = 0

_AUTHORIZATION_FIELDS = frozenset({"chainId", "address", "nonce"})
_SIGNED_AUTHORIZATION_FIELDS = frozenset({"chainId", "address", "nonce", "yParity", "r", "s"})


def authorization_digest(chain_id: int, delegate: str, nonce: int) -> bytes:
    """``keccak256(0x05 || rlp([chain_id, address, nonce]))``, what the authority signs (EIP-7702)."""
    encoded = rlp.encode([chain_id, to_canonical_address(delegate), nonce])
    return bytes(keccak(AUTHORIZATION_MAGIC + encoded))


def describe_chain(chain_id: int, nonce: int) -> str:
    """The chain an authorization is valid on, in words: chain id 0 is every chain, and says so. It can be used
    on each chain where the account's nonce is the authorization's, which is not only where the account was
    ever used: an account never used anywhere has nonce 0 on every chain."""
    if chain_id == EVERY_CHAIN:
        return f"0 (EVERY chain: valid on every EVM chain where the account's nonce is {nonce})"
    return str(chain_id)


@dataclass(frozen=True)
class Authorization:
    """An authorization custody is asked to sign with one of its keys (the ``authorization`` payload kind)."""

    chain_id: int
    delegate: str  # EIP-55
    nonce: int
    digest: bytes = field(init=False)
    canonical: bytes = field(init=False)
    transaction_type: str | None = field(default=None, init=False)
    # The delegate is judged as the authorization intent's delegate, never as a transaction's destination, so
    # no rule written for transactions (destinations, recipients) can let an authorization through by accident.
    to: str | None = field(default=None, init=False)
    value: int = field(default=0, init=False)
    selector: bytes | None = field(default=None, init=False)
    max_fee_wei: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        fields = {"chainId": hex(self.chain_id), "address": self.delegate, "nonce": hex(self.nonce)}
        object.__setattr__(self, "canonical", canonical_payload(fields))
        object.__setattr__(self, "digest", authorization_digest(self.chain_id, self.delegate, self.nonce))

    @property
    def kind(self) -> PayloadKind:
        return PayloadKind.AUTHORIZATION

    @property
    def nonce_slot(self) -> tuple[str, int] | None:
        return (AUTHORIZATION_NONCE_SCOPE, self.nonce)

    def summary(self) -> dict[str, str]:
        return {
            "chain_id": str(self.chain_id),
            "chain": describe_chain(self.chain_id, self.nonce),
            "delegate": self.delegate,
            "nonce": str(self.nonce),
            "warning": delegation_warning(self.delegate),
        }

    def assemble(self, r: int, s: int, y_parity: int) -> SignatureResult:
        # eth-account's SignedSetCodeAuthorization carries r || s || y_parity (v is the bare parity, as in typed
        # transactions), and the CLI splits the same 65 bytes into y_parity, r and s.
        if y_parity not in (0, 1):
            raise InternalError(f"a y-parity must be 0 or 1, got {y_parity}")
        return SignatureResult(signature=r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity]))


def delegation_warning(delegate: str) -> str:
    """The sentence every screen that shows an authorization shows with it."""
    if clears_delegation(delegate):
        return (
            "SIGNING THIS CLEARS THE KEY'S ACCOUNT DELEGATION (delegate 0x0...0): the account stops running any"
            " delegate's code"
        )
    return (
        f"SIGNING THIS MAKES THE KEY'S ACCOUNT RUN THE CODE AT {delegate}: whoever controls that code controls"
        " everything the account holds, until another authorization replaces it"
    )


def clears_delegation(delegate: str) -> bool:
    """Whether the authorization names the zero address, which EIP-7702 reads as "clear the delegation": the
    account's code is reset to empty rather than pointed at a contract."""
    return int(delegate, 16) == 0


@dataclass(frozen=True)
class SignedAuthorization:
    """One already-signed tuple of a set-code transaction's ``authorizationList``, with its recovered signer."""

    chain_id: int
    delegate: str  # EIP-55; the tuple's ``address``
    nonce: int
    y_parity: int
    r: int
    s: int
    authority: str  # EIP-55 address recovered from the signature: the account whose code changes

    def json_fields(self) -> dict[str, Any]:
        """The tuple as eth-account's RPC-structured dict, quantities as 0x-hex."""
        return {
            "chainId": hex(self.chain_id),
            "address": self.delegate,
            "nonce": hex(self.nonce),
            "yParity": hex(self.y_parity),
            "r": hex(self.r),
            "s": hex(self.s),
        }


def parse_authorization(obj: Mapping[str, Any]) -> Authorization:
    """Parse ``{chainId, address, nonce}`` strictly; raises InvalidInput naming the field.

    ``chainId`` 0 (every chain) is accepted here; whether it may be signed is the policy's decision.
    """
    unknown = sorted(set(obj) - _AUTHORIZATION_FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown authorization field; allowed fields are {', '.join(sorted(_AUTHORIZATION_FIELDS))}",
            field=unknown[0],
        )
    return Authorization(
        chain_id=_authorization_chain_id(_required(obj, "chainId", "chainId"), "chainId"),
        delegate=checksum_address(_required(obj, "address", "address"), "address"),
        nonce=parse_integer(
            _required(obj, "nonce", "nonce"), "nonce", minimum=0, maximum=MAX_AUTHORIZATION_NONCE
        ),
    )


def parse_signed_authorization(
    entry: object, where: str, *, transaction_chain_id: int
) -> SignedAuthorization:
    """Parse one tuple of an ``authorizationList`` (``where`` names it, e.g. ``authorizationList[0]``).

    Its chain id must be 0 or the transaction's own: EIP-7702 skips any other, so carrying it could only
    mislead. y-parity must be 0 or 1, r in [1, n - 1] and s in [1, n / 2] (EIP-2's low s, which EIP-7702
    requires too); the signer must be recoverable.
    """
    if not isinstance(entry, Mapping):
        raise InvalidInput(f"must be an object, got {json_type_name(entry)}", field=where)
    unknown = sorted(set(entry) - _SIGNED_AUTHORIZATION_FIELDS)
    if unknown:
        raise InvalidInput(
            "unknown field; an authorization has " + ", ".join(sorted(_SIGNED_AUTHORIZATION_FIELDS)),
            field=f"{where}.{unknown[0]}",
        )
    chain_id = _authorization_chain_id(_required(entry, "chainId", f"{where}.chainId"), f"{where}.chainId")
    if chain_id not in (EVERY_CHAIN, transaction_chain_id):
        raise InvalidInput(
            f"is {chain_id}, neither 0 (every chain) nor the transaction's chain id {transaction_chain_id}:"
            " EIP-7702 would skip this authorization",
            field=f"{where}.chainId",
        )
    delegate = checksum_address(_required(entry, "address", f"{where}.address"), f"{where}.address")
    nonce = parse_integer(
        _required(entry, "nonce", f"{where}.nonce"),
        f"{where}.nonce",
        minimum=0,
        maximum=MAX_AUTHORIZATION_NONCE,
    )
    y_parity = _y_parity(_required(entry, "yParity", f"{where}.yParity"), f"{where}.yParity")
    r = parse_integer(_required(entry, "r", f"{where}.r"), f"{where}.r", minimum=1, maximum=SECP256K1_N - 1)
    s = parse_integer(_required(entry, "s", f"{where}.s"), f"{where}.s", minimum=1, maximum=SECP256K1_N - 1)
    if s > SECP256K1_HALF_N:
        raise InvalidInput(
            "is in the upper half of the curve order (high s): EIP-2 and EIP-7702 accept only low s",
            field=f"{where}.s",
        )
    digest = authorization_digest(chain_id, delegate, nonce)
    try:
        public_key = Signature(vrs=(y_parity, r, s)).recover_public_key_from_msg_hash(digest)
    except BadSignature:
        raise InvalidInput(
            "does not recover a signer: the signature is malformed", field=f"{where}.r"
        ) from None
    return SignedAuthorization(
        chain_id=chain_id,
        delegate=delegate,
        nonce=nonce,
        y_parity=y_parity,
        r=r,
        s=s,
        authority=to_checksum_address(public_key.to_canonical_address()),
    )


def _authorization_chain_id(value: object, field_name: str) -> int:
    """0 (every chain) or a chain id custody can record (see ``parse_chain_id``)."""
    if parse_integer(value, field_name, minimum=0, maximum=2**256 - 1) == EVERY_CHAIN:
        return EVERY_CHAIN
    return parse_chain_id(value, field_name)


def _y_parity(value: object, field_name: str) -> int:
    y_parity = parse_integer(value, field_name, minimum=0, maximum=2**256 - 1)
    if y_parity not in (0, 1):
        raise InvalidInput(f"must be 0 or 1, got {y_parity}", field=field_name)
    return y_parity


def _required(obj: Mapping[str, Any], name: str, field_name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidInput("is required", field=field_name)
    return obj[name]

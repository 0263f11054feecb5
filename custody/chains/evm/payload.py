"""What every parsed payload offers the use cases, whatever its kind."""

from __future__ import annotations

from typing import Protocol

from custody.domain.requests import PayloadKind, SignatureResult


class ParsedPayload(Protocol):
    """A payload parsed strictly, with the digest the daemon computed itself."""

    @property
    def kind(self) -> PayloadKind: ...

    @property
    def chain_id(self) -> int | None:
        """Transactions: always set; typed data: ``domain.chainId`` when present; messages: None."""

    @property
    def transaction_type(self) -> str | None:
        """``"legacy"``, ``"eip2930"`` or ``"eip1559"`` for transactions, else None."""

    @property
    def to(self) -> str | None:
        """EIP-55 destination: a transaction's ``to`` or typed data's ``domain.verifyingContract``."""

    @property
    def value(self) -> int:
        """Wei moved by a transaction; 0 for other kinds."""

    @property
    def max_fee_wei(self) -> int | None:
        """The most wei a transaction can pay in fees (gas times maxFeePerGas or gasPrice); None otherwise."""

    @property
    def selector(self) -> bytes | None:
        """The 4-byte function selector a transaction calls (start of its calldata); None otherwise."""

    @property
    def nonce_slot(self) -> tuple[str, int] | None:
        """(scope, nonce) this payload consumes: ("account", n) for a transaction; None for payloads that use
        no nonce custody tracks yet."""

    @property
    def canonical(self) -> bytes:
        """The bytes to store; parsing them again gives the same digest."""

    @property
    def digest(self) -> bytes:
        """The 32 bytes the HSM signs."""

    def summary(self) -> dict[str, str]:
        """Human-readable fields for approvers and the CLI."""

    def assemble(self, r: int, s: int, y_parity: int) -> SignatureResult:
        """The signature (and, for transactions, the signed transaction) from a low-s ``(r, s, y_parity)``."""

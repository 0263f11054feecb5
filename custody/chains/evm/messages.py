"""EIP-191 personal messages (version 0x45).

The digest is keccak256 of ``"\\x19Ethereum Signed Message:\\n" + len(message) + message``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils.crypto import keccak

from custody.chains.evm.signature import rsv_signature
from custody.chains.evm.values import check_payload_size, shorten_hex
from custody.domain.errors import InvalidInput
from custody.domain.requests import PayloadKind, SignatureResult

_PERSONAL_MESSAGE_PREFIX = b"\x19Ethereum Signed Message:\n"
MAX_SUMMARY_TEXT_CHARS = 4000


@dataclass(frozen=True)
class Message:
    canonical: bytes
    digest: bytes
    chain_id: int | None = field(default=None, init=False)
    transaction_type: str | None = field(default=None, init=False)
    to: str | None = field(default=None, init=False)
    value: int = field(default=0, init=False)
    selector: bytes | None = field(default=None, init=False)
    max_fee_wei: int | None = field(default=None, init=False)
    nonce_slot: tuple[str, int] | None = field(default=None, init=False)

    @property
    def kind(self) -> PayloadKind:
        return PayloadKind.MESSAGE

    def summary(self) -> dict[str, str]:
        summary = {"length": str(len(self.canonical))}
        try:
            text = self.canonical.decode("utf-8")
        except UnicodeDecodeError:
            summary["hex"] = shorten_hex(self.canonical)
        else:
            if len(text) > MAX_SUMMARY_TEXT_CHARS:
                text = text[:MAX_SUMMARY_TEXT_CHARS] + "..."
            summary["text"] = text
        return summary

    def assemble(self, r: int, s: int, y_parity: int) -> SignatureResult:
        return SignatureResult(signature=rsv_signature(r, s, y_parity))


def parse_message(data: bytes) -> Message:
    """Accept a personal message as raw bytes (text is its UTF-8 encoding) and compute its EIP-191 digest."""
    check_payload_size(data)
    if not data:
        # An empty message shows an approver nothing, so there is nothing they could knowingly approve.
        raise InvalidInput("must not be empty", field="message")
    prefixed = _PERSONAL_MESSAGE_PREFIX + str(len(data)).encode("ascii") + data
    return Message(canonical=bytes(data), digest=keccak(prefixed))

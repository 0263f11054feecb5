"""EIP-191 personal messages."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from custody.chains.evm import MAX_PAYLOAD_BYTES, Message, PayloadKind, parse_payload
from custody.domain.errors import InvalidInput

SIGNER = Account.from_key("0x" + "33" * 32)


@pytest.mark.parametrize(
    "message",
    [
        b"hello",
        "Gr\u00fc\u00dfe, \u2603".encode(),
        bytes(range(256)),
        b"x" * 1000,
        b"\x19Ethereum Signed Message:\n",
    ],
    ids=["ascii", "utf8", "binary", "long", "prefix-lookalike"],
)
def test_digest_and_signature_match_eth_account(message: bytes) -> None:
    parsed = parse_payload(PayloadKind.MESSAGE, message)
    assert isinstance(parsed, Message)
    signed = SIGNER.sign_message(encode_defunct(primitive=message))
    assert parsed.digest == bytes(signed.message_hash)
    result = parsed.assemble(signed.r, signed.s, signed.v - 27)
    assert result.signature == bytes(signed.signature)
    assert result.signed_tx is None and result.tx_hash is None
    assert (
        Account.recover_message(encode_defunct(primitive=message), signature=result.signature)
        == SIGNER.address
    )
    assert parsed.canonical == message
    assert parse_payload(PayloadKind.MESSAGE, parsed.canonical).digest == parsed.digest
    assert parsed.chain_id is None and parsed.to is None and parsed.value == 0


def test_summary_shows_text_or_hex() -> None:
    assert parse_payload(PayloadKind.MESSAGE, "caf\u00e9".encode()).summary() == {
        "length": "5",
        "text": "caf\u00e9",
    }
    binary = parse_payload(PayloadKind.MESSAGE, b"\xff\x00").summary()
    assert binary == {"length": "2", "hex": "0xff00"}


def test_empty_and_oversized_messages_are_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_payload(PayloadKind.MESSAGE, b"")
    assert refused.value.field == "message"
    assert len(parse_payload(PayloadKind.MESSAGE, b"a" * MAX_PAYLOAD_BYTES).canonical) == MAX_PAYLOAD_BYTES
    with pytest.raises(InvalidInput) as refused:
        parse_payload(PayloadKind.MESSAGE, b"a" * (MAX_PAYLOAD_BYTES + 1))
    assert refused.value.field == "payload"

"""Calldata decoding for approvers: known functions, unknown ones flagged, malformed ones undecodable, nesting.

Calldata is built here with eth_abi's encoder and by hand-packing (MultiSend), and checked against selectors
published elsewhere, so the decoder is not tested against itself.
"""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address

from custody.chains.evm.decode import (
    MAX_MULTISEND_CALLS,
    MAX_NESTING_DEPTH,
    DecodedCall,
    decode_calldata,
    known_function_signatures,
)
from custody.chains.evm.values import MAX_PAYLOAD_BYTES
from custody.domain.errors import InvalidInput

TOKEN = "0x6B175474E89094C44Da98b954EedeAC495271d0F"  # DAI on mainnet, EIP-55 as Etherscan shows it
RECIPIENT = "0x000000000000000000000000000000000000dEaD"
SPENDER = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
OWNER = "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"
SAFE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # the EIP-55 example address
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"  # Safe v1.3.0 MultiSendCallOnly

# Selectors as published by 4byte.directory (https://www.4byte.directory) and in the Safe contracts'
# interfaces (github.com/safe-global/safe-smart-account, Safe.sol and libraries/MultiSend.sol).
SELECTORS = {
    "transfer(address,uint256)": "0xa9059cbb",
    "approve(address,uint256)": "0x095ea7b3",
    "transferFrom(address,address,uint256)": "0x23b872dd",
    "setApprovalForAll(address,bool)": "0xa22cb465",
    "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)": "0x6a761202",
    "multiSend(bytes)": "0x8d80ff0a",
    "addOwnerWithThreshold(address,uint256)": "0x0d582f13",
    "changeThreshold(uint256)": "0x694e80c3",
}

# The Solidity documentation's ABI example (docs.soliditylang.org, "Contract ABI Specification", Examples):
# baz(uint32,bool) called with 69 and true. custody does not know baz, so it must be flagged, not guessed.
SOLIDITY_DOCS_BAZ_CALLDATA = bytes.fromhex(
    "cdcd77c0"
    "0000000000000000000000000000000000000000000000000000000000000045"
    "0000000000000000000000000000000000000000000000000000000000000001"
)


def call(signature: str, types: list[str], values: list[object]) -> bytes:
    return bytes.fromhex(SELECTORS[signature][2:]) + encode(types, values)


def arguments(decoded: DecodedCall) -> dict[str, str]:
    return {argument.name: argument.value for argument in decoded.arguments}


def exec_transaction(to: str, value: int, data: bytes, operation: int) -> bytes:
    return call(
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        [
            "address",
            "uint256",
            "bytes",
            "uint8",
            "uint256",
            "uint256",
            "uint256",
            "address",
            "address",
            "bytes",
        ],
        [to, value, data, operation, 0, 0, 0, "0x" + "00" * 20, "0x" + "00" * 20, b"\x01" * 65],
    )


def multisend_entry(operation: int, to: str, value: int, data: bytes) -> bytes:
    # MultiSend.sol: abi.encodePacked(uint8 operation, address to, uint256 value, uint256 dataLength, bytes data).
    return (
        bytes([operation])
        + bytes.fromhex(to[2:])
        + value.to_bytes(32, "big")
        + len(data).to_bytes(32, "big")
        + data
    )


def multisend(*entries: bytes) -> bytes:
    return call("multiSend(bytes)", ["bytes"], [b"".join(entries)])


def test_every_known_signature_has_the_published_selector() -> None:
    for signature, selector in SELECTORS.items():
        assert signature in known_function_signatures()
        decoded = decode_calldata(bytes.fromhex(selector[2:]) + b"\x00" * 32, None)
        assert decoded.selector == selector
        assert decoded.function == signature
        assert decoded.known


@pytest.mark.parametrize(
    ("signature", "types", "values", "expected"),
    [
        (
            "transfer(address,uint256)",
            ["address", "uint256"],
            [RECIPIENT.lower(), 25 * 10**18],
            {"to": RECIPIENT, "amount": "25000000000000000000"},
        ),
        (
            "approve(address,uint256)",
            ["address", "uint256"],
            [SPENDER, 2**256 - 1],
            {"spender": SPENDER, "amount": str(2**256 - 1)},
        ),
        (
            "transferFrom(address,address,uint256)",
            ["address", "address", "uint256"],
            [OWNER, RECIPIENT, 1],
            {"from": OWNER, "to": RECIPIENT, "amount": "1"},
        ),
        (
            "setApprovalForAll(address,bool)",
            ["address", "bool"],
            [SPENDER, True],
            {"operator": SPENDER, "approved": "true"},
        ),
    ],
)
def test_erc20_and_operator_calls_decode_with_named_arguments(
    signature: str, types: list[str], values: list[object], expected: dict[str, str]
) -> None:
    decoded = decode_calldata(call(signature, types, values), TOKEN)
    assert decoded.known
    assert decoded.problem is None
    assert decoded.function == signature
    assert decoded.selector == SELECTORS[signature]
    assert decoded.to == TOKEN
    # Addresses come back EIP-55 checksummed whatever case they were encoded from.
    assert arguments(decoded) == expected
    assert decoded.calls == ()


def test_a_hand_built_transfer_matches_the_documented_layout() -> None:
    # Built byte by byte as the ABI specification lays it out: selector, address left-padded to 32 bytes,
    # amount as a 32-byte big-endian integer.
    amount = 1_000_000
    data = bytes.fromhex("a9059cbb") + bytes(12) + bytes.fromhex(RECIPIENT[2:]) + amount.to_bytes(32, "big")
    decoded = decode_calldata(data, TOKEN)
    assert arguments(decoded) == {"to": RECIPIENT, "amount": "1000000"}


def test_the_solidity_documentation_example_is_an_unknown_function_shown_raw() -> None:
    decoded = decode_calldata(SOLIDITY_DOCS_BAZ_CALLDATA, TOKEN)
    assert not decoded.known
    assert decoded.selector == "0xcdcd77c0"
    assert decoded.function is None
    assert decoded.arguments == ()
    assert decoded.data == SOLIDITY_DOCS_BAZ_CALLDATA


def test_empty_calldata_is_a_plain_transfer() -> None:
    decoded = decode_calldata(b"", RECIPIENT)
    assert decoded.known and decoded.is_plain_transfer
    assert decoded.selector is None and decoded.problem is None


@pytest.mark.parametrize(
    ("data", "problem_fragment"),
    [
        # Fewer than four bytes cannot even name a function.
        (bytes.fromhex("a9059c"), "shorter than a 4-byte function selector"),
        # transfer with its amount missing.
        (bytes.fromhex("a9059cbb") + bytes(12) + bytes.fromhex(RECIPIENT[2:]), "not a valid encoding"),
        # transfer with 32 trailing bytes: Solidity would ignore them, an approver must not.
        (
            call("transfer(address,uint256)", ["address", "uint256"], [RECIPIENT, 5]) + bytes(32),
            "not a valid encoding",
        ),
        # An address word with non-zero padding: the upper 12 bytes of an address must be zero.
        (
            bytes.fromhex("a9059cbb") + b"\xff" * 12 + bytes.fromhex(RECIPIENT[2:]) + (5).to_bytes(32, "big"),
            "not a valid encoding",
        ),
        # A bool that is 2.
        (
            bytes.fromhex("a22cb465") + bytes(12) + bytes.fromhex(SPENDER[2:]) + (2).to_bytes(32, "big"),
            "not a valid encoding",
        ),
        # multiSend whose bytes offset points past the end.
        (bytes.fromhex("8d80ff0a") + (4096).to_bytes(32, "big"), "not a valid encoding"),
    ],
)
def test_malformed_calldata_is_undecodable_and_never_raises(data: bytes, problem_fragment: str) -> None:
    decoded = decode_calldata(data, TOKEN)
    assert decoded.problem is not None
    assert problem_fragment in decoded.problem
    assert decoded.arguments == ()
    assert decoded.data == data


def test_calldata_over_the_size_limit_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="larger than the limit"):
        decode_calldata(b"\x00" * (MAX_PAYLOAD_BYTES + 1), TOKEN)


def test_safe_exec_transaction_shows_the_inner_call_and_its_operation() -> None:
    inner = call("transfer(address,uint256)", ["address", "uint256"], [RECIPIENT, 7])
    decoded = decode_calldata(exec_transaction(TOKEN, 0, inner, 0), SAFE)
    assert decoded.known and decoded.problem is None
    assert decoded.name == "execTransaction"
    assert arguments(decoded)["to"] == TOKEN
    assert arguments(decoded)["operation"] == "0"
    (inner_call,) = decoded.calls
    assert inner_call.operation == "CALL"
    assert inner_call.value == 0
    assert inner_call.call.to == TOKEN
    assert inner_call.call.function == "transfer(address,uint256)"
    assert arguments(inner_call.call) == {"to": RECIPIENT, "amount": "7"}


def test_safe_multisend_by_delegatecall_lists_every_packed_call() -> None:
    batch = multisend(
        multisend_entry(0, TOKEN, 0, call("approve(address,uint256)", ["address", "uint256"], [SPENDER, 10])),
        multisend_entry(0, RECIPIENT, 3 * 10**18, b""),
        multisend_entry(1, SPENDER, 0, SOLIDITY_DOCS_BAZ_CALLDATA),
    )
    decoded = decode_calldata(exec_transaction(MULTISEND_CALL_ONLY, 0, batch, 1), SAFE)
    (safe_call,) = decoded.calls
    assert safe_call.operation == "DELEGATECALL"
    assert safe_call.call.name == "multiSend"
    first, second, third = safe_call.call.calls
    assert (first.operation, first.call.to, first.call.name) == ("CALL", TOKEN, "approve")
    assert arguments(first.call) == {"spender": SPENDER, "amount": "10"}
    assert (second.operation, second.value, second.call.is_plain_transfer) == ("CALL", 3 * 10**18, True)
    assert second.call.to == to_checksum_address(RECIPIENT)
    assert third.operation == "DELEGATECALL"
    assert not third.call.known and third.call.selector == "0xcdcd77c0"


def test_a_multisend_entry_that_claims_more_data_than_there_is_is_undecodable() -> None:
    entry = multisend_entry(0, TOKEN, 0, b"\xaa" * 10)
    truncated = entry[:-4]
    decoded = decode_calldata(multisend(truncated), MULTISEND_CALL_ONLY)
    assert decoded.name == "multiSend"
    assert decoded.calls == ()
    assert decoded.problem is not None and "call 1 of the batch claims 10 bytes" in decoded.problem


def test_a_multisend_entry_cut_inside_its_header_is_undecodable() -> None:
    decoded = decode_calldata(multisend(bytes([0]) + bytes.fromhex(TOKEN[2:])), MULTISEND_CALL_ONLY)
    assert decoded.problem is not None and "call 1 of the batch is cut short" in decoded.problem


def test_nesting_is_decoded_to_a_bounded_depth() -> None:
    innermost = call("transfer(address,uint256)", ["address", "uint256"], [RECIPIENT, 1])
    data = innermost
    levels = MAX_NESTING_DEPTH + 2
    for _ in range(levels):
        data = exec_transaction(SAFE, 0, data, 0)
    decoded = decode_calldata(data, SAFE)
    depth = 0
    current = decoded
    while current.calls:
        (inner,) = current.calls
        current = inner.call
        depth += 1
    assert depth == MAX_NESTING_DEPTH
    assert current.name == "execTransaction"
    assert current.problem is not None and f"deeper than {MAX_NESTING_DEPTH} levels" in current.problem


def test_a_multisend_with_too_many_calls_is_not_expanded() -> None:
    entries = [multisend_entry(0, RECIPIENT, 1, b"") for _ in range(MAX_MULTISEND_CALLS + 1)]
    decoded = decode_calldata(multisend(*entries), MULTISEND_CALL_ONLY)
    assert decoded.calls == ()
    assert decoded.problem is not None and f"more than {MAX_MULTISEND_CALLS} calls" in decoded.problem
    exactly_enough = decode_calldata(multisend(*entries[:MAX_MULTISEND_CALLS]), MULTISEND_CALL_ONLY)
    assert len(exactly_enough.calls) == MAX_MULTISEND_CALLS

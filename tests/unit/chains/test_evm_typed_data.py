"""EIP-712: the EIP's own Mail vector, cross-checks against eth-account's encoder, and refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.messages import encode_typed_data

from custody.chains.evm import (
    PayloadKind,
    TypedData,
    address_from_public_point,
    parse_payload,
    parse_typed_data,
    recoverable_signature,
)
from custody.chains.evm.typed_data import MAX_ARRAY_LENGTH, StructTypes
from custody.domain.errors import InvalidInput

VECTORS = Path(__file__).parents[2] / "vectors"
MAIL = json.loads((VECTORS / "eip712_mail.json").read_text())

DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
DOMAIN = {
    "name": "Test",
    "version": "2",
    "chainId": 11155111,
    "verifyingContract": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
}

SAFE_TX = {
    "types": json.loads((Path(__file__).parents[2] / "vectors" / "safe_tx_types.json").read_text())["types"],
    "primaryType": "SafeTx",
    "domain": {"chainId": 1, "verifyingContract": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"},
    "message": {
        "to": "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "value": "250000000000000000",
        "data": "0xa9059cbb000000000000000000000000d1220a0cf47c7b9be7a2e6ba89f429762e7b9adb"
        "00000000000000000000000000000000000000000000000000000000000003e8",
        "operation": 1,
        "safeTxGas": 0,
        "baseGas": 0,
        "gasPrice": 0,
        "gasToken": "0x0000000000000000000000000000000000000000",
        "refundReceiver": "0x0000000000000000000000000000000000000000",
        "nonce": 42,
    },
}

EDGES = {
    "types": {
        "EIP712Domain": DOMAIN_TYPE,
        "Edges": [
            {"name": "i8min", "type": "int8"},
            {"name": "i8max", "type": "int8"},
            {"name": "u8max", "type": "uint8"},
            {"name": "i256min", "type": "int256"},
            {"name": "i256max", "type": "int256"},
            {"name": "u256max", "type": "uint256"},
            {"name": "i24", "type": "int24"},
            {"name": "u160", "type": "uint160"},
            {"name": "flag", "type": "bool"},
            {"name": "blob", "type": "bytes"},
            {"name": "empty", "type": "bytes"},
            {"name": "one", "type": "bytes1"},
            {"name": "word", "type": "bytes32"},
            {"name": "text", "type": "string"},
        ],
    },
    "primaryType": "Edges",
    "domain": DOMAIN,
    "message": {
        "i8min": -128,
        "i8max": 127,
        "u8max": 255,
        "i256min": -(2**255),
        "i256max": 2**255 - 1,
        "u256max": 2**256 - 1,
        "i24": -1,
        "u160": 2**160 - 1,
        "flag": True,
        "blob": "0xdeadbeef00",
        "empty": "0x",
        "one": "0x7f",
        "word": "0x" + "ab" * 32,
        "text": "h\u00e9llo \u2603",
    },
}

NESTED = {
    "types": {
        "EIP712Domain": DOMAIN_TYPE,
        "Person": [{"name": "name", "type": "string"}, {"name": "wallets", "type": "address[]"}],
        "Group": [
            {"name": "members", "type": "Person[]"},
            {"name": "matrix", "type": "uint8[2][3]"},
            {"name": "jagged", "type": "int16[][]"},
            {"name": "tags", "type": "string[]"},
            {"name": "blobs", "type": "bytes[2]"},
            {"name": "leader", "type": "Person"},
            {"name": "pairs", "type": "Person[][1]"},
        ],
    },
    "primaryType": "Group",
    "domain": DOMAIN,
    "message": {
        "members": [
            {"name": "Alice", "wallets": ["0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"]},
            {"name": "Bob", "wallets": []},
        ],
        "matrix": [[1, 2], [3, 4], [5, 255]],
        "jagged": [[-1], [], [32767, -32768, 0]],
        "tags": ["a", "", "c"],
        "blobs": ["0x01", "0x"],
        "leader": {
            "name": "Carol",
            "wallets": [
                "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB",
                "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
            ],
        },
        "pairs": [[{"name": "Dave", "wallets": []}]],
    },
}


def _parse(data: dict[str, Any]) -> TypedData:
    parsed = parse_payload(PayloadKind.TYPED_DATA, json.dumps(data).encode())
    assert isinstance(parsed, TypedData)
    return parsed


def _eth_account_digest(data: dict[str, Any]) -> bytes:
    """eth-account's own EIP-712 implementation, reached through its public signing API."""
    signer = Account.from_key("0x" + "22" * 32)
    return bytes(signer.sign_message(encode_typed_data(full_message=copy.deepcopy(data))).message_hash)


def _hsm_like_sign(digest: bytes) -> tuple[bytes, bytes]:
    """Sign as the HSM does: raw r || s over a prehashed digest, from a secp256k1 key made by cryptography."""
    key = ec.generate_private_key(ec.SECP256K1())
    der = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big"), point


def test_eip712_mail_vector() -> None:
    parsed = _parse(MAIL["typed_data"])
    assert parsed.digest.hex() == MAIL["digest"][2:]
    assert parsed.domain_separator.hex() == MAIL["domain_separator"][2:]
    assert parsed.message_hash.hex() == MAIL["message_hash"][2:]
    assert parsed.chain_id == 1
    assert parsed.to == "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
    assert parsed.value == 0
    assert parsed.transaction_type is None

    published = bytes.fromhex(MAIL["signature"][2:])
    r, s, v = int.from_bytes(published[:32], "big"), int.from_bytes(published[32:64], "big"), published[64]
    result = parsed.assemble(r, s, v - 27)
    assert result.signature == published
    assert result.signed_tx is None and result.tx_hash is None
    signable = encode_typed_data(full_message=MAIL["typed_data"])
    assert Account.recover_message(signable, signature=result.signature) == MAIL["signer_address"]


def test_eip712_mail_internals() -> None:
    types = StructTypes(MAIL["typed_data"]["types"])
    assert types.encode_type("Mail") == MAIL["encode_type"]
    assert types.type_hash("Mail").hex() == MAIL["type_hash"][2:]


@pytest.mark.parametrize(
    "data", [MAIL["typed_data"], SAFE_TX, EDGES, NESTED], ids=["mail", "safe", "edges", "nested"]
)
def test_digest_matches_eth_account_and_signature_recovers(data: dict[str, Any]) -> None:
    parsed = _parse(data)
    assert parsed.digest == _eth_account_digest(data)

    rs, point = _hsm_like_sign(parsed.digest)
    r, s, y_parity = recoverable_signature(rs, parsed.digest, point)
    signature = parsed.assemble(r, s, y_parity).signature
    assert signature[64] in (27, 28)
    recovered = Account.recover_message(
        encode_typed_data(full_message=copy.deepcopy(data)), signature=signature
    )
    assert recovered == address_from_public_point(point)


def test_canonical_form_parses_to_the_same_digest() -> None:
    for data in (MAIL["typed_data"], SAFE_TX, EDGES, NESTED):
        parsed = _parse(data)
        assert parse_payload(PayloadKind.TYPED_DATA, parsed.canonical).digest == parsed.digest


def test_member_order_changes_the_digest() -> None:
    reordered = copy.deepcopy(MAIL["typed_data"])
    reordered["types"]["Person"].reverse()
    assert _parse(reordered).digest != _parse(MAIL["typed_data"]).digest
    assert _parse(reordered).digest == _eth_account_digest(reordered)


def test_integer_spellings_are_equivalent_in_messages() -> None:
    hexed = copy.deepcopy(EDGES)
    hexed["message"].update(
        {"u8max": "0xff", "u256max": hex(2**256 - 1), "i8min": "-128", "i256max": str(2**255 - 1)}
    )
    assert _parse(hexed).digest == _parse(EDGES).digest


def test_safe_summary_shows_delegatecall() -> None:
    summary = _parse(SAFE_TX).summary()
    assert summary["primary_type"] == "SafeTx"
    assert summary["domain_chain_id"] == "1"
    assert summary["domain_verifying_contract"] == "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
    assert summary["safe_operation"] == "DELEGATECALL"
    assert summary["safe_to"] == "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
    assert summary["safe_value_ether"] == "0.25"
    assert summary["safe_selector"] == "0xa9059cbb"
    assert summary["safe_nonce"] == "42"
    call = copy.deepcopy(SAFE_TX)
    call["message"]["operation"] = 0
    assert _parse(call).summary()["safe_operation"] == "CALL"


def test_mail_summary() -> None:
    summary = _parse(MAIL["typed_data"]).summary()
    assert summary["domain_name"] == "Ether Mail"
    assert summary["domain_version"] == "1"
    assert json.loads(summary["message"]) == MAIL["typed_data"]["message"]


def _with(path: list[str | int], value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(base if base is not None else MAIL["typed_data"])
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()

INVALID_CASES = [
    ("domain type missing", _with(["types", "EIP712Domain"], _DELETE), "types.EIP712Domain"),
    ("primary type undeclared", _with(["primaryType"], "Letter"), "primaryType"),
    ("primary type is the domain", _with(["primaryType"], "EIP712Domain"), "primaryType"),
    ("primary type not a string", _with(["primaryType"], 5), "primaryType"),
    ("undeclared member type", _with(["types", "Mail", 0, "type"], "Persona"), "types.Mail[0]"),
    (
        "recursive type",
        _with(["types", "Person", 1], {"name": "friends", "type": "Person[]"}),
        "types.Person",
    ),
    (
        "mutually recursive types",
        _with(["types", "Person", 1], {"name": "mail", "type": "Mail"}),
        "types.Person",
    ),
    ("unsized uint", _with(["types", "Mail", 2], {"name": "contents", "type": "uint"}), "types.Mail[2]"),
    ("int7", _with(["types", "Mail", 2], {"name": "contents", "type": "int7"}), "types.Mail[2]"),
    ("bytes33", _with(["types", "Mail", 2], {"name": "contents", "type": "bytes33"}), "types.Mail[2]"),
    (
        "zero-length fixed array",
        _with(["types", "Mail", 2], {"name": "contents", "type": "string[0]"}),
        "types.Mail[2]",
    ),
    (
        "array suffix with leading zero",
        _with(["types", "Mail", 2], {"name": "contents", "type": "string[01]"}),
        "types.Mail[2]",
    ),
    ("struct named like an atomic type", _with(["types", "address"], []), "types.address"),
    ("invalid type name", _with(["types", "Bad Name"], []), "types.Bad Name"),
    ("duplicate member", _with(["types", "Mail", 1], {"name": "from", "type": "Person"}), "types.Mail[1]"),
    ("member with extra key", _with(["types", "Mail", 1, "indexed"], True), "types.Mail[1]"),
    ("types not an object", _with(["types"], []), "types"),
    (
        "unknown domain field",
        _with(["types", "EIP712Domain", 0], {"name": "title", "type": "string"}),
        "types.EIP712Domain[0]",
    ),
    (
        "domain field wrong type",
        _with(["types", "EIP712Domain", 2], {"name": "chainId", "type": "uint64"}),
        "types.EIP712Domain[2]",
    ),
    ("domain chain id zero", _with(["domain", "chainId"], 0), "domain.chainId"),
    ("domain chain id missing", _with(["domain", "chainId"], _DELETE), "domain.chainId"),
    (
        "domain contract bad checksum",
        _with(["domain", "verifyingContract"], "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccc"),
        "domain.verifyingContract",
    ),
    ("domain extra value", _with(["domain", "salt"], "0x" + "00" * 32), "domain.salt"),
    ("unknown top-level field", _with(["extra"], 1), "extra"),
    ("message missing", _with(["message"], _DELETE), "message"),
    ("message not an object", _with(["message"], "hello"), "message"),
    ("message member missing", _with(["message", "contents"], _DELETE), "message.contents"),
    ("message member extra", _with(["message", "cc"], "x"), "message.cc"),
    ("nested struct member missing", _with(["message", "from", "wallet"], _DELETE), "message.from.wallet"),
    ("string as number", _with(["message", "contents"], 5), "message.contents"),
    ("string with lone surrogate", _with(["message", "contents"], "\ud800"), "message.contents"),
    ("address too short", _with(["message", "to", "wallet"], "0xbBbB"), "message.to.wallet"),
    (
        "address bad checksum",
        _with(["message", "to", "wallet"], "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbb"),
        "message.to.wallet",
    ),
    ("struct given as string", _with(["message", "from"], "Cow"), "message.from"),
    ("uint8 overflow", _with(["message", "u8max"], 256, EDGES), "message.u8max"),
    ("uint8 negative", _with(["message", "u8max"], -1, EDGES), "message.u8max"),
    ("int8 underflow", _with(["message", "i8min"], -129, EDGES), "message.i8min"),
    ("int8 overflow", _with(["message", "i8max"], 128, EDGES), "message.i8max"),
    ("uint256 overflow", _with(["message", "u256max"], 2**256, EDGES), "message.u256max"),
    ("int256 underflow", _with(["message", "i256min"], -(2**255) - 1, EDGES), "message.i256min"),
    ("integer as float", _with(["message", "u8max"], 1.0, EDGES), "message.u8max"),
    ("bool as string", _with(["message", "flag"], "true", EDGES), "message.flag"),
    ("bool as number", _with(["message", "flag"], 1, EDGES), "message.flag"),
    ("bytes odd hex", _with(["message", "blob"], "0xabc", EDGES), "message.blob"),
    ("bytes without 0x", _with(["message", "blob"], "abcd", EDGES), "message.blob"),
    ("bytes32 too short", _with(["message", "word"], "0x" + "ab" * 31, EDGES), "message.word"),
    ("bytes1 too long", _with(["message", "one"], "0x0102", EDGES), "message.one"),
    ("fixed array wrong length", _with(["message", "matrix"], [[1, 2], [3, 4]], NESTED), "message.matrix"),
    ("inner fixed array wrong length", _with(["message", "matrix", 1], [3], NESTED), "message.matrix[1]"),
    ("array given as object", _with(["message", "tags"], {"0": "a"}, NESTED), "message.tags"),
    ("array element wrong", _with(["message", "jagged", 2, 0], 32768, NESTED), "message.jagged[2][0]"),
    (
        "struct array element wrong",
        _with(["message", "members", 1, "wallets"], ["0x01"], NESTED),
        "message.members[1].wallets[0]",
    ),
    ("array too long", _with(["message", "tags"], ["x"] * (MAX_ARRAY_LENGTH + 1), NESTED), "message.tags"),
    (
        "nesting too deep",
        _with(["types", "Mail", 2], {"name": "contents", "type": "uint8" + "[]" * 16}),
        "types.Mail",
    ),
]


@pytest.mark.parametrize(
    ("data", "field"), [case[1:] for case in INVALID_CASES], ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_typed_data_is_refused_naming_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_typed_data(data)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


def test_recursion_error_names_the_cycle() -> None:
    with pytest.raises(InvalidInput, match="Person -> Mail -> Person"):
        parse_typed_data(_with(["types", "Person", 1], {"name": "mail", "type": "Mail"}))


def test_invalid_typed_data_refused_through_json_too() -> None:
    # The JSON path must give the same answers; a lone surrogate escape decodes to an unencodable str.
    payload = json.dumps(_with(["message", "contents"], "\ud800")).encode()
    with pytest.raises(InvalidInput) as refused:
        parse_payload(PayloadKind.TYPED_DATA, payload)
    assert refused.value.field == "message.contents"


def test_depth_limit_allows_sixteen_levels() -> None:
    sixteen = _with(["types", "Mail", 2], {"name": "contents", "type": "uint8" + "[]" * 14})
    sixteen = _with(["message", "contents"], [[[[[[[[[[[[[[1]]]]]]]]]]]]]], sixteen)
    assert _parse(sixteen).digest == _eth_account_digest(sixteen)

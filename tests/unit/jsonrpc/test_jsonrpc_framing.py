"""JSON-RPC 2.0 framing and parameter reading, without a daemon: what a body decodes to, and how each wrong
call or parameter is refused, naming what was wrong."""

from __future__ import annotations

import json

import pytest

from custody.domain.errors import InvalidInput
from custody.jsonrpc import params
from custody.jsonrpc.protocol import Call, JsonRpcError, decode_body

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def test_a_single_call_a_batch_and_notifications_decode_in_order() -> None:
    single = decode_body(b'{"jsonrpc":"2.0","id":"a","method":"eth_accounts"}', 20)
    assert not single.batch and single.entries == [Call("eth_accounts", [], "a")]
    batch = decode_body(
        json.dumps(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                {"jsonrpc": "2.0", "method": "eth_accounts"},
                {"jsonrpc": "2.0", "id": None, "method": "m", "params": {"named": 1}},
            ]
        ).encode(),
        20,
    )
    assert batch.batch
    first, notification, named = batch.entries
    assert isinstance(first, Call) and first.id == 1 and not first.is_notification
    assert isinstance(notification, Call) and notification.is_notification
    assert isinstance(named, Call) and named.id is None and named.params == {"named": 1}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"", -32700, "not valid JSON"),
        (b"\xc3\x28", -32700, "UTF-8"),
        (b'{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}', -32700, "more than once"),
        (b'{"jsonrpc":"2.0","id":NaN,"method":"m"}', -32700, "NaN"),
        (b"[" * 100 + b"]" * 100, -32700, "deep"),
        (b"[]", -32600, "empty"),
        (
            json.dumps([{"jsonrpc": "2.0", "id": n, "method": "m"} for n in range(21)]).encode(),
            -32600,
            "limit is 20",
        ),
    ],
)
def test_a_body_that_is_no_call_is_one_error(body: bytes, code: int, words: str) -> None:
    with pytest.raises(JsonRpcError) as refused:
        decode_body(body, 20)
    assert refused.value.code == code and words in refused.value.message


@pytest.mark.parametrize(
    ("call", "words"),
    [
        ({"id": 1, "method": "m"}, 'jsonrpc must be "2.0"'),
        ({"jsonrpc": "2.0", "id": 1}, "method"),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, "method"),
        ({"jsonrpc": "2.0", "id": 1, "method": "m" * 65}, "method"),
        ({"jsonrpc": "2.0", "id": 1, "method": "m", "params": 3}, "params"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "m"}, "id"),
        ({"jsonrpc": "2.0", "id": True, "method": "m"}, "id"),
        ({"jsonrpc": "2.0", "id": "x" * 129, "method": "m"}, "id"),
        ({"jsonrpc": "2.0", "id": 1, "method": "m", "extra": 0}, "extra"),
    ],
)
def test_an_invalid_call_in_a_batch_is_answered_alone(call: dict[str, object], words: str) -> None:
    decoded = decode_body(json.dumps([call, {"jsonrpc": "2.0", "id": 2, "method": "ok"}]).encode(), 20)
    invalid, valid = decoded.entries
    assert isinstance(invalid, tuple)
    assert invalid[1].code == -32600 and words in invalid[1].message
    assert isinstance(valid, Call) and valid.method == "ok"


def test_a_transaction_in_json_rpc_form_becomes_custodys_payload_fields() -> None:
    read = params.transaction(
        [
            {
                "from": ADDRESS.lower(),
                "to": ADDRESS,
                "gasLimit": "0x5208",
                "input": "0xabcd",
                "data": "0xABCD",
                "value": None,
                "maxFeePerGas": "0x1",
            }
        ],
        "eth_signTransaction",
    )
    assert read.sender == ADDRESS
    # Both spellings of the calldata name the same bytes, so either may stand; null means "not given".
    assert read.fields["data"].lower() == "0xabcd"
    assert {name: value for name, value in read.fields.items() if name != "data"} == {
        "to": ADDRESS,
        "gas": "0x5208",
        "maxFeePerGas": "0x1",
    }
    assert read.missing("nonce") and not read.missing("gas")


@pytest.mark.parametrize(
    ("transaction", "field", "words"),
    [
        ({"to": ADDRESS}, "from", "required"),
        ({"from": "0x1234"}, "from", "40 hex digits"),
        ({"from": ADDRESS, "gas": "0x1", "gasLimit": "0x2"}, "gasLimit", "differs from gas"),
        ({"from": ADDRESS, "data": "0x00", "input": "0x01"}, "input", "differs from data"),
        ({"from": ADDRESS, "blobs": []}, "blobs", "not a transaction field"),
        ({"from": ADDRESS, "sidecar": {}}, "sidecar", "not a transaction field"),
    ],
)
def test_a_wrong_transaction_field_is_named(transaction: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        params.transaction([transaction], "eth_sendTransaction")
    assert refused.value.field == field and words in refused.value.message


def test_message_methods_take_their_own_parameter_order_and_refuse_the_other() -> None:
    assert params.message_and_address(["0x6869", ADDRESS], "personal_sign", address_first=False) == (
        b"hi",
        ADDRESS,
    )
    assert params.message_and_address([ADDRESS, "0x6869"], "eth_sign", address_first=True) == (b"hi", ADDRESS)
    with pytest.raises(InvalidInput, match=r"look like \[address, data\]"):
        params.message_and_address([ADDRESS, "0x6869"], "personal_sign", address_first=False)
    with pytest.raises(InvalidInput, match="password"):
        params.message_and_address(["0x6869", ADDRESS, "secret"], "personal_sign", address_first=False)
    with pytest.raises(InvalidInput) as not_hex:
        params.message_and_address(["hello", ADDRESS], "personal_sign", address_first=False)
    assert not_hex.value.field == "params[0]"


def test_typed_data_is_an_object_or_a_string_and_v3_has_no_arrays() -> None:
    document = {
        "types": {"EIP712Domain": [], "List": [{"name": "items", "type": "uint256[]"}]},
        "primaryType": "List",
        "domain": {},
        "message": {"items": [1, 2]},
    }
    as_object, signer = params.typed_data_and_address([ADDRESS, document], "eth_signTypedData_v4")
    as_string, _ = params.typed_data_and_address([ADDRESS, json.dumps(document)], "eth_signTypedData_v4")
    assert json.loads(as_object) == json.loads(as_string) == document and signer == ADDRESS
    with pytest.raises(InvalidInput, match="eth_signTypedData_v3 does not encode"):
        params.typed_data_and_address([ADDRESS, document], "eth_signTypedData_v3")
    with pytest.raises(InvalidInput, match="legacy typed data form"):
        params.typed_data_and_address(
            [ADDRESS, [{"type": "string", "name": "a", "value": "b"}]], "eth_signTypedData"
        )

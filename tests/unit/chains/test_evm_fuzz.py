"""Whatever bytes arrive, parsing answers with a value or InvalidInput, never another exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.chains.evm import PayloadKind, parse_payload
from custody.domain.errors import InvalidInput

_FIELD_NAMES = [
    "type",
    "chainId",
    "nonce",
    "to",
    "value",
    "gas",
    "gasPrice",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "data",
    "accessList",
    "address",
    "storageKeys",
    "types",
    "primaryType",
    "domain",
    "message",
    "name",
    "version",
    "verifyingContract",
    "salt",
    "EIP712Domain",
    "Mail",
]
_TYPE_NAMES = [
    "uint256",
    "uint8",
    "int8",
    "address",
    "bool",
    "string",
    "bytes",
    "bytes32",
    "Mail",
    "Mail[]",
    "uint8[2]",
    "EIP712Domain",
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**260), max_value=2**260),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "0x",
            "0x00",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xzz",
            "-1",
            "1",
            "0x" + "ab" * 32,
            *_TYPE_NAMES,
        ]
    ),
)
_keys = st.one_of(st.sampled_from(_FIELD_NAMES), st.text(max_size=8))
_json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=6)),
    max_leaves=25,
)

_valid_tx: dict[str, Any] = {
    "chainId": 1,
    "nonce": 0,
    "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "gas": 21000,
    "maxFeePerGas": 2,
    "maxPriorityFeePerGas": 1,
}


def _parse_only_invalid_input(kind: PayloadKind, payload: bytes) -> None:
    try:
        parsed = parse_payload(kind, payload)
    except InvalidInput as error:
        assert error.message
        return
    assert len(parsed.digest) == 32
    assert parse_payload(kind, parsed.canonical).digest == parsed.digest
    assert isinstance(parsed.summary(), dict)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(PayloadKind)), value=_json_values)
def test_arbitrary_json_raises_only_invalid_input(kind: PayloadKind, value: Any) -> None:
    _parse_only_invalid_input(kind, json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(overrides=st.dictionaries(st.sampled_from(_FIELD_NAMES[:11]), _json_values, max_size=4))
def test_mutated_transactions_raise_only_invalid_input(overrides: dict[str, Any]) -> None:
    _parse_only_invalid_input(PayloadKind.TRANSACTION, json.dumps({**_valid_tx, **overrides}).encode())


@settings(max_examples=300, deadline=None)
@given(
    member_type=st.one_of(st.sampled_from(_TYPE_NAMES), st.text(max_size=12)),
    value=_json_values,
    domain=st.dictionaries(st.sampled_from(["name", "chainId", "verifyingContract", "salt"]), _scalars),
)
def test_mutated_typed_data_raises_only_invalid_input(
    member_type: str, value: Any, domain: dict[str, Any]
) -> None:
    data = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}],
            "Mail": [{"name": "x", "type": member_type}],
        },
        "primaryType": "Mail",
        "domain": domain,
        "message": {"x": value},
    }
    _parse_only_invalid_input(PayloadKind.TYPED_DATA, json.dumps(data).encode())


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(list(PayloadKind)), payload=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_invalid_input(kind: PayloadKind, payload: bytes) -> None:
    _parse_only_invalid_input(kind, payload)

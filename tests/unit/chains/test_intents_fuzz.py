"""Fuzzing the intent decoder: whatever a payload holds, decoding answers with an intent tree, never a crash.

The calldata is shaped like the real thing (every known function, its arguments drawn from their ABI types and
encoded with eth_abi, wrapping calls nested inside Safe transactions, MultiSend batches and proposals) and then
mutated: a byte flipped, bytes appended or cut, an offset or length word rewritten. Typed data is drawn from
every type string custody knows, and then has a member renamed, retyped, added or dropped.

The properties: decoding raises nothing and stays fast; the tree is never deeper than the bound; calldata of a
known function that decodes as that function is exactly the canonical encoding of what was decoded (decoded,
then re-encoded, it gives back the same bytes), so a mutation either changes nothing custody shows or makes the
call undecodable; and typed data whose types no longer hash as a known type string is undecodable.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.chains.evm import PayloadKind, parse_payload
from custody.chains.evm.intents import MAX_NESTING_DEPTH, payload_intents
from custody.chains.evm.intents.calls import call_intents
from custody.chains.evm.knowledge import FUNCTIONS_BY_SELECTOR, KNOWN_FUNCTIONS, KNOWN_TYPED_DATA, Parameter
from custody.domain.errors import InvalidInput
from custody.domain.intents import Intent, IntentKind
from tests.fuzzing import cases

CALLDATA_CASES = cases(5_000)
TYPED_DATA_CASES = cases(2_000)
# Far above any honest decode (milliseconds); a decode this slow is a hang in waiting.
SLOWEST_DECODE_SECONDS = 2.0

_SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}

_ADDRESSES = st.one_of(
    st.sampled_from(["0x" + "00" * 20, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"]),
    st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex()),
)
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24)
# Functions whose bytes argument is itself calldata of another call.
_WRAPPED_CALLDATA_NAMES = {"data", "calldatas", "payloads", "payload", "transactions"}


def _uint(bits: int) -> st.SearchStrategy[int]:
    top = 2**bits - 1
    return st.one_of(st.sampled_from([0, 1, top]), st.integers(min_value=0, max_value=top))


def _abi_value(
    json_type: str, parameter: Parameter, calldata: st.SearchStrategy[bytes]
) -> st.SearchStrategy[Any]:
    """Values eth_abi encodes as ``json_type`` (the ABI JSON spelling, with ``tuple`` for structs)."""
    if json_type.endswith("]"):
        element = json_type[: json_type.rindex("[")]
        return st.lists(_abi_value(element, parameter, calldata), max_size=3)
    if json_type == "tuple":
        return st.tuples(*(_abi_value(c.type, c, calldata) for c in parameter.components))
    if json_type == "address":
        return _ADDRESSES
    if json_type == "bool":
        return st.booleans()
    if json_type == "string":
        return _TEXT
    if json_type == "bytes":
        if parameter.name in _WRAPPED_CALLDATA_NAMES:
            return st.one_of(calldata, st.binary(max_size=40))
        return st.binary(max_size=70)
    if json_type.startswith("bytes"):
        size = int(json_type[len("bytes") :])
        return st.binary(min_size=size, max_size=size)
    return _uint(int(json_type[len("uint") :]))


def _multisend_packed(entries: list[tuple[int, str, int, bytes]]) -> bytes:
    return b"".join(
        bytes([operation])
        + bytes.fromhex(to[2:])
        + value.to_bytes(32, "big")
        + len(data).to_bytes(32, "big")
        + data
        for operation, to, value, data in entries
    )


def _known_call(calldata: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    def encode_call(function_index: int, draw: st.DrawFn) -> bytes:
        function = KNOWN_FUNCTIONS[function_index]
        if function.signature == "multiSend(bytes)":
            entries = draw(
                st.lists(st.tuples(st.sampled_from([0, 1, 2]), _ADDRESSES, _uint(256), calldata), max_size=3)
            )
            return function.selector + abi_encode(["bytes"], [_multisend_packed(entries)])
        values = [draw(_abi_value(p.type, p, calldata)) for p in function.parameters]
        return function.selector + abi_encode(list(function.parameter_types), values)

    @st.composite
    def strategy(draw: st.DrawFn) -> bytes:
        return encode_call(draw(st.integers(min_value=0, max_value=len(KNOWN_FUNCTIONS) - 1)), draw)

    return strategy()


_CALLDATA: st.SearchStrategy[bytes] = st.recursive(
    st.one_of(st.just(b""), st.binary(max_size=12)),
    _known_call,
    max_leaves=6,
)


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return data
    mutation = draw(st.sampled_from(["flip", "append", "cut", "word", "none"]))
    if mutation == "flip":
        index = draw(st.integers(min_value=0, max_value=len(data) - 1))
        return data[:index] + bytes([data[index] ^ draw(st.integers(1, 255))]) + data[index + 1 :]
    if mutation == "append":
        return data + draw(st.binary(min_size=1, max_size=40))
    if mutation == "cut":
        return data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
    if mutation == "word" and len(data) >= 36:
        # Rewrite one 32-byte word after the selector, where offsets and lengths live.
        word = draw(st.integers(min_value=0, max_value=(len(data) - 4) // 32 - 1))
        start = 4 + 32 * word
        value = draw(st.sampled_from([0, 1, 32, 64, 2**255, 2**256 - 1]))
        return data[:start] + value.to_bytes(32, "big") + data[start + 32 :]
    return data


def _height(intent: Intent) -> int:
    return 1 + max((_height(child) for child in intent.children), default=0)


def _decoded_as_known(intent: Intent) -> bool:
    return intent.kind not in (IntentKind.UNKNOWN, IntentKind.UNDECODABLE)


def _check_tree(intents: tuple[Intent, ...]) -> None:
    for intent in intents:
        assert _height(intent) <= MAX_NESTING_DEPTH + 2
        for label, value in intent.fields:
            assert isinstance(label, str) and isinstance(value, str)


def test_calldata_fuzzed() -> None:
    counts = {"run": 0, "known": 0}

    @settings(max_examples=CALLDATA_CASES, **_SETTINGS)
    @given(data=st.data(), original=_CALLDATA)
    def fuzz(data: st.DataObject, original: bytes) -> None:
        counts["run"] += 1
        calldata = data.draw(_mutated(original))
        started = time.perf_counter()
        intents = call_intents("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 0, calldata, 0)
        elapsed = time.perf_counter() - started
        assert elapsed < SLOWEST_DECODE_SECONDS, f"decoding {len(calldata)} bytes took {elapsed:.1f} s"
        _check_tree(intents)
        (intent,) = intents
        function = FUNCTIONS_BY_SELECTOR.get(calldata[:4])
        if function is None or not _decoded_as_known(intent):
            return
        counts["known"] += 1
        # Whatever custody decoded is exactly the canonical encoding of what it shows.
        arguments = calldata[4:]
        assert (
            abi_encode(list(function.parameter_types), abi_decode(list(function.parameter_types), arguments))
            == arguments
        )

    fuzz()
    assert counts["run"] >= CALLDATA_CASES
    # The strategies must reach the builders, not only the refusals.
    assert counts["known"] >= counts["run"] // 5, f"only {counts['known']} of {counts['run']} calls decoded"


def test_unmutated_calldata_of_every_known_function_is_never_called_non_canonical() -> None:
    @settings(max_examples=CALLDATA_CASES // 5, **_SETTINGS)
    @given(calldata=_known_call(st.binary(max_size=40)))
    def fuzz(calldata: bytes) -> None:
        (intent, *_) = call_intents("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 0, calldata, 0)
        # An encoding eth_abi produced is canonical; only meaning (a batch that does not add up) can fail.
        assert "not the canonical ABI encoding" not in dict(intent.fields).get("problem", "")

    fuzz()


# Typed data.

_STRUCT = re.compile(r"(\w+)\(([^)]*)\)")
_ATOMIC_TYPES = ["address", "uint256", "uint160", "uint48", "uint8", "bool", "string", "bytes", "bytes32"]


def _structs(type_string: str) -> dict[str, list[dict[str, str]]]:
    return {
        name: [
            {"name": member.split(" ")[1], "type": member.split(" ")[0]}
            for member in body.split(",")
            if member
        ]
        for name, body in _STRUCT.findall(type_string)
    }


def _known_types(entry_index: int) -> tuple[str, dict[str, list[dict[str, str]]]]:
    entry = KNOWN_TYPED_DATA[entry_index]
    if entry.type_string is not None:
        return entry.primary_type, _structs(entry.type_string)
    assert entry.type_prefix is not None
    structs = _structs(entry.type_prefix + "Witness witness)")
    for dependency in entry.dependencies:
        structs.update(_structs(dependency))
    structs["Witness"] = [{"name": "user", "type": "address"}, {"name": "amount", "type": "uint256"}]
    return entry.primary_type, structs


def _typed_value(type_name: str, structs: dict[str, list[dict[str, str]]]) -> st.SearchStrategy[Any]:
    if type_name.endswith("]"):
        return st.lists(_typed_value(type_name[: type_name.rindex("[")], structs), max_size=3)
    if type_name in structs:
        return st.fixed_dictionaries(
            {m["name"]: _typed_value(m["type"], structs) for m in structs[type_name]}
        )
    if type_name == "address":
        return _ADDRESSES
    if type_name == "bool":
        return st.booleans()
    if type_name == "string":
        return _TEXT
    if type_name == "bytes":
        return st.binary(max_size=70).map(lambda raw: "0x" + raw.hex())
    if type_name.startswith("bytes"):
        size = int(type_name[len("bytes") :])
        return st.binary(min_size=size, max_size=size).map(lambda raw: "0x" + raw.hex())
    return _uint(int(type_name[len("uint") :])).map(str)


@st.composite
def _typed_documents(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A typed-data document of a known primary type, and whether its types were mutated."""
    primary, structs = _known_types(draw(st.integers(min_value=0, max_value=len(KNOWN_TYPED_DATA) - 1)))
    mutation = draw(st.sampled_from(["none", "none", "rename", "retype", "add", "drop"]))
    members = structs[primary]
    if mutation != "none" and members:
        index = draw(st.integers(min_value=0, max_value=len(members) - 1))
        if mutation == "rename":
            members[index] = {"name": members[index]["name"] + "X", "type": members[index]["type"]}
        elif mutation == "retype":
            members[index] = {"name": members[index]["name"], "type": draw(st.sampled_from(_ATOMIC_TYPES))}
        elif mutation == "add":
            members.insert(index, {"name": "extra", "type": draw(st.sampled_from(_ATOMIC_TYPES))})
        else:
            del members[index]
    with_contract = draw(st.sampled_from([True, True, True, False]))
    domain_types = [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}]
    domain: dict[str, Any] = {"name": "Fuzz", "chainId": 1}
    if with_contract:
        domain_types.append({"name": "verifyingContract", "type": "address"})
        domain["verifyingContract"] = draw(_ADDRESSES)
    document = {
        "types": {"EIP712Domain": domain_types, **structs},
        "primaryType": primary,
        "domain": domain,
        "message": draw(_typed_value(primary, structs)),
    }
    return document, mutation != "none"


def test_typed_data_fuzzed() -> None:
    # The primary struct of each exact type string, e.g. "Permit(address owner,...,uint256 deadline)".
    known_primary_structs = {
        entry.type_string[: entry.type_string.index(")") + 1]
        for entry in KNOWN_TYPED_DATA
        if entry.type_string is not None
    }
    counts = {"run": 0, "known": 0}

    @settings(max_examples=TYPED_DATA_CASES, **_SETTINGS)
    @given(drawn=_typed_documents())
    def fuzz(drawn: tuple[dict[str, Any], bool]) -> None:
        document, mutated = drawn
        counts["run"] += 1
        try:
            parsed = parse_payload(PayloadKind.TYPED_DATA, json.dumps(document).encode())
        except InvalidInput:
            return
        started = time.perf_counter()
        intents = payload_intents(parsed)
        assert time.perf_counter() - started < SLOWEST_DECODE_SECONDS
        _check_tree(intents)
        (intent,) = intents
        witness = document["primaryType"].endswith("WitnessTransferFrom")
        if _decoded_as_known(intent) and intent.kind is not IntentKind.TYPED_DATA:
            counts["known"] += 1
            assert intent.contract is not None
        if mutated and not witness:
            primary = document["primaryType"]
            members = document["types"][primary]
            primary_struct = f"{primary}({','.join(m['type'] + ' ' + m['name'] for m in members)})"
            if primary_struct not in known_primary_structs:
                assert intent.kind is IntentKind.UNDECODABLE, document["types"]

    fuzz()
    assert counts["run"] >= TYPED_DATA_CASES
    assert counts["known"] >= counts["run"] // 5, (
        f"only {counts['known']} of {counts['run']} documents decoded"
    )

"""Fuzzing the payload parsers: whatever bytes arrive, parsing answers with a value or InvalidInput.

Each parser gets at least 10,000 generated payloads. Most are shaped like the real thing (transactions of
every type, blob and set-code ones with versioned hashes and signed authorizations among them, in every fee
style and spelling; EIP-7702 authorizations to sign; typed data with nested struct graphs and matching
messages; personal messages) and then mutated: fields dropped, swapped for junk, spelled out of range, keys
duplicated, the JSON text cut or its bytes flipped. Random junk alone would stop at the JSON decoder and never
reach the field checks.

The runs are derandomized so CI sees the same cases every time, and each test counts its cases so that a
setting that quietly runs fewer fails here. The properties: only InvalidInput is ever raised, with a
message; no single parse takes long; an accepted payload parses again from its canonical bytes to the same
digest and canonical bytes; and a personal message's digest equals eth-account's EIP-191 hash.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from eth_account.messages import _hash_eip191_message, encode_defunct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.chains.evm import MAX_PAYLOAD_BYTES, PayloadKind, parse_payload
from custody.chains.evm.payload import ParsedPayload
from custody.domain.errors import InvalidInput
from tests import evm_payloads
from tests.fuzzing import cases

T = TypeVar("T")

CASES_PER_PARSER = cases(10_000)
# Far above any honest parse (the largest payloads take milliseconds); a parse this slow is a hang in waiting.
SLOWEST_PARSE_SECONDS = 2.0

_FUZZ_SETTINGS = settings(
    max_examples=CASES_PER_PARSER,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

_ADDRESS_CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
_WRONG_CHECKSUM = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # mixed case, checksum of another address
_ADDRESS_FORMS = [
    _ADDRESS_CHECKSUMMED,
    _ADDRESS_CHECKSUMMED.lower(),
    "0x" + _ADDRESS_CHECKSUMMED[2:].upper(),
    _WRONG_CHECKSUM,
    "0x" + "00" * 20,
    "0x" + "ff" * 20,
    "0x" + "ab" * 19,  # 19 bytes
    "0x" + "ab" * 21,  # 21 bytes
    "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # no prefix
    "0x",
    "",
]

# Strings that break a field in some way: malformed numbers, out-of-range spellings, broken addresses.
_JUNK_STRINGS = [
    "0x",
    "0x0",
    "0x00",
    "0xzz",
    "0X10",
    "-0x1",
    " 1",
    "1 ",
    "1e3",
    "1.0",
    "-1",
    "+1",
    "\u0663",  # an Arabic-Indic digit, which int() would accept
    "0x" + "f" * 64,
    "0x1" + "0" * 64,
    "9" * 81,
    str(2**256),
    str(2**64),
    "\ud800",  # a lone surrogate
    *_ADDRESS_FORMS,
]
_KEY_NAMES = [
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
    "maxFeePerBlobGas",
    "blobVersionedHashes",
    "authorizationList",
    "yParity",
    "r",
    "s",
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
    "",
    "__proto__",
]
_JUNK_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
    st.sampled_from(_JUNK_STRINGS),
)
_JUNK = st.recursive(
    _JUNK_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEY_NAMES), st.text(max_size=8)), children, max_size=4),
    ),
    max_leaves=12,
)

# The spellings of an integer the parsers accept, and three they must refuse (a JSON fraction, a decimal with
# a fraction, and hex too long for 256 bits).
_ACCEPTED_SPELLINGS: list[Callable[[int], Any]] = [int, hex, str]
_REFUSED_SPELLINGS: list[Callable[[int], Any]] = [
    float,
    lambda number: f"{number}.0",
    lambda number: "0x" + format(abs(number), "x").zfill(81),
]

_UINT64 = 2**64 - 1
_UINT256 = 2**256 - 1


class _Shapes:
    """Builds payload-shaped documents from a seeded generator.

    Hypothesis draws the seed and the coarse choices (which shape, which damage); the many leaf values come
    from this generator. Drawing every leaf through Hypothesis costs tens of draws per case, which made 10,000
    cases take minutes; a seed drawn by Hypothesis keeps the runs reproducible and derandomized all the same.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def one_in(self, odds: int) -> bool:
        return self.rng.randrange(odds) == 0

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def distinct(self, options: Sequence[str], count: int) -> list[str]:
        return self.rng.sample(list(options), min(count, len(options)))

    def quantity(self, maximum: int, minimum: int = 0) -> Any:
        """Mostly an integer in ``minimum..maximum`` spelled as accepted; a tenth are edges, values just outside
        the range or refused spellings. A payload has several integers and each refusal hides the rest from the
        test, so refusals are kept rare enough for whole payloads to be accepted often."""
        if self.one_in(10):
            number = self.pick([minimum, minimum - 1, 0, 1, -1, maximum - 1, maximum, maximum + 1])
            return self.pick(_ACCEPTED_SPELLINGS + _REFUSED_SPELLINGS)(number)
        size = self.pick([8, 16, 32, 64, 256])
        number = min(
            maximum, max(minimum, self.rng.getrandbits(size) - (2 ** (size - 1) if minimum < 0 else 0))
        )
        return self.pick(_ACCEPTED_SPELLINGS)(number)

    def hex_bytes(self, max_size: int, min_size: int = 0) -> str:
        return "0x" + self.rng.randbytes(self.rng.randint(min_size, max_size)).hex()

    def address(self) -> str:
        return self.pick(_VALID_ADDRESSES) if not self.one_in(20) else self.pick(_ADDRESS_FORMS)

    def text(self, max_size: int) -> str:
        alphabet = 'abcXYZ 019_$"\\\n\u00e9\u20ac\U0001f600\u0000'
        return "".join(self.pick(alphabet) for _ in range(self.rng.randint(0, max_size)))

    def junk(self, depth: int = 0) -> Any:
        """A JSON value of a random type: the wrong thing in almost any field."""
        roll = self.rng.randrange(10 if depth < 3 else 7)
        if roll == 0:
            return None
        if roll == 1:
            return self.rng.random() < 0.5
        if roll == 2:
            return self.rng.randint(-(2**300), 2**300) >> self.rng.randrange(300)
        if roll == 3:
            return self.rng.uniform(-1e6, 1e6)
        if roll == 4:
            return self.pick(_JUNK_STRINGS)
        if roll in (5, 6):
            return self.text(12)
        if roll in (7, 8):
            return [self.junk(depth + 1) for _ in range(self.rng.randrange(4))]
        return {self.pick(_KEY_NAMES): self.junk(depth + 1) for _ in range(self.rng.randrange(4))}

    def mutate(self, original: dict[str, Any]) -> dict[str, Any]:
        """``original`` with a few fields removed, replaced by junk, or added."""
        obj = dict(original)
        for _ in range(1 + self.rng.randrange(3)):
            action = self.pick(["drop", "junk", "add"])
            keys = sorted(obj)
            if action == "drop" and keys:
                del obj[self.pick(keys)]
            elif action == "junk" and keys:
                obj[self.pick(keys)] = self.junk()
            else:
                obj[self.pick(_KEY_NAMES)] = self.junk()
        return obj

    # Transactions.

    def access_list(self) -> list[Any]:
        entries: list[Any] = []
        for _ in range(self.rng.randrange(4)):
            entry: dict[str, Any] = {"address": self.address()}
            if self.one_in(2):
                entry["storageKeys"] = [
                    self.hex_bytes(32, 32) if not self.one_in(15) else self.junk()
                    for _ in range(self.rng.randrange(4))
                ]
            entries.append(entry)
        return entries

    def transaction(self) -> dict[str, Any]:
        """A transaction of a random type with its fields spelled in random accepted forms."""
        style = self.pick(list(_TYPE_NUMBERS))
        tx: dict[str, Any] = {
            "chainId": self.pick([1, 11155111, 137]) if self.one_in(2) else self.quantity(_UINT64, 1),
            "nonce": self.quantity(_UINT64 - 1),
            "to": self.address(),
            "gas": self.quantity(_UINT64),
        }
        if self.one_in(2):
            tx["value"] = self.quantity(_UINT256)
        if self.one_in(2):
            tx["data"] = self.hex_bytes(80)
        if style in ("eip1559", "eip4844", "eip7702"):
            # The tip is drawn below the fee cap most of the time, since a higher tip is refused.
            fee_cap = self.rng.randrange(10**12)
            tip = fee_cap - self.rng.randint(-3, fee_cap)
            tx["maxFeePerGas"] = self.pick(_ACCEPTED_SPELLINGS)(fee_cap)
            tx["maxPriorityFeePerGas"] = self.pick(_ACCEPTED_SPELLINGS)(tip)
        else:
            tx["gasPrice"] = self.quantity(_UINT256)
        if style != "legacy" and self.one_in(2):
            tx["accessList"] = self.access_list()
        if style == "eip4844":
            tx["maxFeePerBlobGas"] = self.quantity(_UINT256 // 2**20, 1)
            tx["blobVersionedHashes"] = [self.blob_hash() for _ in range(self.rng.randrange(11))]
        if style == "eip7702":
            tx["chainId"] = self.pick(sorted(_SIGNED_AUTHORIZATIONS))
            tx["authorizationList"] = [
                self.authorization_tuple(tx["chainId"]) for _ in range(self.rng.randrange(4))
            ]
        if self.one_in(2) or (style in ("eip4844", "eip7702") and not self.one_in(4)):
            tx["type"] = self.pick(_ACCEPTED_SPELLINGS)(_TYPE_NUMBERS[style])
        return tx

    def blob_hash(self) -> Any:
        """Mostly a versioned hash of version 0x01; now and then another version, length or junk."""
        if self.one_in(20):
            return self.pick([self.hex_bytes(32, 32), self.hex_bytes(31, 31), self.junk()])
        return "0x01" + self.rng.randbytes(31).hex()

    def authorization_tuple(self, chain_id: int) -> Any:
        """A tuple signed for ``chain_id`` or every chain, spelled at random, sometimes damaged: a high s, another
        y-parity, a field dropped or junk."""
        signed = self.pick(_SIGNED_AUTHORIZATIONS[self.pick([chain_id, 0])])
        numbers = {
            name: int(signed[name], 0) if isinstance(signed[name], str) else signed[name]
            for name in signed
            if name != "address"
        }
        if self.one_in(10):
            numbers["s"] = _SECP256K1_N - numbers["s"]
        spelled: dict[str, Any] = {
            name: self.pick(_ACCEPTED_SPELLINGS)(number) for name, number in numbers.items()
        }
        spelled["address"] = signed["address"]
        if self.one_in(10):
            spelled["yParity"] = self.pick([1 - numbers["yParity"], 2, 27, "0x1", True])
        return self.mutate(spelled) if self.one_in(10) else spelled

    def authorization(self) -> dict[str, Any]:
        """An EIP-7702 authorization to sign: a chain id (0 often), a delegate and a nonce."""
        return {
            "chainId": self.pick([0, 1, 11155111]) if self.one_in(2) else self.quantity(_UINT64, 0),
            "address": self.address(),
            "nonce": self.quantity(_UINT64 - 1),
        }

    # Typed data: a random graph of structs, then a message drawn to fit the types.

    def struct_types(self) -> dict[str, list[dict[str, str]]]:
        names = self.distinct(_STRUCT_NAMES, 1 + self.rng.randrange(4))
        types: dict[str, list[dict[str, str]]] = {}
        for index, name in enumerate(names):
            members = []
            for member_name in self.distinct(_MEMBER_NAMES, self.rng.randrange(5)):
                # Mostly reference later structs only, so the graph is acyclic; sometimes any struct, which
                # may make it recursive and must be refused.
                referable = names if self.one_in(20) else names[index + 1 :]
                if self.one_in(40):
                    member_type = self.pick(_BAD_TYPES)
                elif referable and self.one_in(2):
                    member_type = self.pick(referable)
                else:
                    member_type = self.pick(_ATOMIC_TYPES)
                members.append({"name": member_name, "type": member_type + self.pick(_ARRAY_SUFFIXES)})
            types[name] = members
        return types

    def atomic_value(self, type_name: str) -> Any:
        if type_name == "address":
            return self.address()
        if type_name == "bool":
            return self.one_in(2)
        if type_name == "string":
            return self.text(16)
        if type_name == "bytes":
            return self.hex_bytes(40)
        if type_name.startswith("bytes"):
            size = int(type_name[5:])
            return self.hex_bytes(size, size) if not self.one_in(20) else self.hex_bytes(size + 1)
        bits = int(type_name.removeprefix("u").removeprefix("int"))
        if type_name.startswith("u"):
            return self.quantity(2**bits - 1)
        return self.quantity(2 ** (bits - 1) - 1, -(2 ** (bits - 1)))

    def value_for(self, types: dict[str, list[dict[str, str]]], type_name: str, depth: int = 0) -> Any:
        """A value that fits ``type_name`` (junk when the type cannot be filled, or now and then on purpose)."""
        if depth > 6 or self.one_in(100):
            return self.junk()
        if type_name.endswith("]") and "[" in type_name:
            element, _, length_text = type_name[:-1].rpartition("[")
            length = int(length_text) if length_text.isdigit() else self.rng.randrange(3)
            return [self.value_for(types, element, depth + 1) for _ in range(length)]
        if type_name in types:
            return {
                member["name"]: self.value_for(types, member["type"], depth + 1)
                for member in types[type_name]
            }
        if type_name in _ATOMIC_TYPES:
            return self.atomic_value(type_name)
        return self.junk()

    def domain_value(self, name: str) -> Any:
        if name == "chainId":
            return self.quantity(_UINT64, 1)
        if name == "verifyingContract":
            return self.address()
        if name == "salt":
            return self.hex_bytes(32, 32) if not self.one_in(10) else self.hex_bytes(33)
        return self.text(12)

    def typed_data(self) -> dict[str, Any]:
        types = self.struct_types()
        domain_fields = self.distinct(list(_DOMAIN_TYPES), self.rng.randrange(6))
        domain_members = [{"name": name, "type": _DOMAIN_TYPES[name]} for name in domain_fields]
        if self.one_in(20):
            domain_members.append({"name": self.pick(["chainId", "extra"]), "type": "string"})
        # A primary type that is not a declared message type is a legitimate mutation, but a rare one.
        primary = self.pick(["EIP712Domain", "Missing"]) if self.one_in(20) else self.pick(list(types))
        return {
            "types": {"EIP712Domain": domain_members, **types},
            "primaryType": primary,
            "domain": {name: self.domain_value(name) for name in domain_fields},
            "message": self.value_for(types, primary),
        }

    def safe_tx(self) -> dict[str, Any]:
        """A Safe transaction, whose summary reads fields of the message and so must refuse them cleanly."""
        message = {member["name"]: self.atomic_value(member["type"]) for member in _SAFE_TX_TYPES["SafeTx"]}
        return {
            "types": _SAFE_TX_TYPES,
            "primaryType": "SafeTx",
            "domain": {"chainId": 1, "verifyingContract": _ADDRESS_CHECKSUMMED},
            "message": self.mutate(message) if self.one_in(3) else message,
        }


_TYPE_NUMBERS = {"legacy": 0, "eip2930": 1, "eip1559": 2, "eip4844": 3, "eip7702": 4}
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# Authorizations signed by eth-account once, for chains the generated set-code transactions use and for every
# chain (0): signing one per case would make the run slow, and the parser must recover each signer anyway.
_SIGNED_AUTHORIZATIONS = {
    chain_id: [
        evm_payloads.signed_authorization(
            chain_id, evm_payloads.EXAMPLE_DELEGATE, nonce, "0x" + f"{key:02x}" * 32
        )
        for nonce, key in ((0, 0x11), (7, 0x22), (2**64 - 2, 0x33))
    ]
    for chain_id in (0, 1, 11155111, 137)
}
_VALID_ADDRESSES = [address for address in _ADDRESS_FORMS[:6] if address != _WRONG_CHECKSUM]
_STRUCT_NAMES = ["Mail", "Person", "Asset", "Order", "Wallet", "SafeTx"]
_MEMBER_NAMES = ["to", "from", "value", "data", "operation", "nonce", "contents", "wallet", "amount", "tag"]
_ATOMIC_TYPES = [
    "address",
    "bool",
    "string",
    "bytes",
    "bytes1",
    "bytes32",
    "uint8",
    "uint256",
    "int8",
    "int256",
    "uint64",
    "int128",
]
_BAD_TYPES = [
    "uint",
    "int",
    "bytes0",
    "bytes33",
    "uint7",
    "uint264",
    "int0",
    "Undeclared",
    "Mail[0]",
    "Mail[",
    "",
]
_ARRAY_SUFFIXES = ["", "", "", "", "[]", "[2]", "[1][]"]
_DOMAIN_TYPES = {
    "name": "string",
    "version": "string",
    "chainId": "uint256",
    "verifyingContract": "address",
    "salt": "bytes32",
}
# The Safe transaction types, from the vector file that names their source.
_SAFE_TX_TYPES = json.loads((Path(__file__).parents[2] / "vectors" / "safe_tx_types.json").read_text())[
    "types"
]

_SEEDS = st.integers(min_value=0, max_value=2**64)
_BOOLEANS = st.booleans()
# How a document is built: whole, mutated, or pure junk (from Hypothesis's own JSON strategy, which finds
# odd values such as huge integers and exotic text on its own).
_HOW = st.sampled_from(["whole"] * 6 + ["mutated"] * 2 + ["hypothesis-junk"])


def _documents(build: Callable[[_Shapes], dict[str, Any]]) -> st.SearchStrategy[Any]:
    @st.composite
    def documents(draw: st.DrawFn) -> Any:
        how = draw(_HOW)
        if how == "hypothesis-junk":
            return draw(_JUNK)
        shapes = _Shapes(draw(_SEEDS))
        document = build(shapes)
        return shapes.mutate(document) if how == "mutated" else document

    return documents()


_DAMAGES = st.sampled_from(
    ["none"] * 20 + ["truncate", "flip", "duplicate-key", "constant", "wrap", "bom", "latin1", "pad"]
)


@st.composite
def _encoded(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """A document as JSON text, sometimes damaged at the text or byte level afterwards."""
    document = draw(documents)
    damage = draw(_DAMAGES)
    shapes = _Shapes(draw(_SEEDS)) if damage != "none" else None
    # Escaped non-ASCII text reaches the parsers as \\u escapes, lone surrogates included; raw text as UTF-8.
    text = json.dumps(document, ensure_ascii=draw(_BOOLEANS), separators=(",", ":"))
    if shapes is None:
        return text.encode("utf-8", errors="surrogatepass")
    if damage == "truncate" and text:
        text = text[: shapes.rng.randrange(len(text))]
    elif damage == "duplicate-key" and text.startswith("{") and len(text) > 2:
        # A key that appears twice: the parsers must refuse, not pick one of the two values.
        key = shapes.pick(sorted(document)) if isinstance(document, dict) and document else "nonce"
        text = "{" + json.dumps(key) + ":1," + text[1:]
    elif damage == "constant" and text.startswith("{") and len(text) > 2:
        text = (
            '{"value":' + shapes.pick(["NaN", "Infinity", "-Infinity", "1e400", "-0", "1E2"]) + "," + text[1:]
        )
    elif damage == "wrap":
        text = shapes.pick(["[{}]", "[{}, {}]", '"{}"', "{}{}", "{}\x00"]).replace("{}", text, 1)
    elif damage == "pad":
        text = shapes.pick([" ", "\n", "\t", "\u00a0", "\ufeff"]) + text + shapes.pick(["", " ", "x"])
    data = text.encode("utf-8", errors="surrogatepass")
    if damage == "flip" and data:
        position = shapes.rng.randrange(len(data))
        data = data[:position] + bytes([data[position] ^ shapes.rng.randint(1, 255)]) + data[position + 1 :]
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "latin1":
        data = text.encode("latin-1", errors="replace")
    return data


_TRANSACTION_PAYLOADS = _encoded(_documents(_Shapes.transaction))
_AUTHORIZATION_PAYLOADS = _encoded(_documents(_Shapes.authorization))
_TYPED_DATA_PAYLOADS = _encoded(
    _documents(lambda shapes: shapes.safe_tx() if shapes.one_in(4) else shapes.typed_data())
)

_MESSAGES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", errors="surrogatepass")),
    _TRANSACTION_PAYLOADS,
    st.sampled_from(
        [
            b"",
            b"\x00",
            b"\x19Ethereum Signed Message:\n3abc",
            b"a" * MAX_PAYLOAD_BYTES,
            b"a" * (MAX_PAYLOAD_BYTES + 1),
            b"\xff" * 1000,
        ]
    ),
)


def _check(kind: PayloadKind, payload: bytes) -> ParsedPayload | None:
    """Parse; assert only InvalidInput escapes, quickly, and that an accepted payload re-parses the same."""
    started = time.perf_counter()
    try:
        parsed = parse_payload(kind, payload)
    except InvalidInput as error:
        assert error.message.strip()
        return None
    finally:
        elapsed = time.perf_counter() - started
        assert elapsed < SLOWEST_PARSE_SECONDS, f"parsing {len(payload)} bytes took {elapsed:.1f} s"
    assert parsed.kind is kind
    assert len(parsed.digest) == 32
    again = parse_payload(kind, parsed.canonical)
    assert again.digest == parsed.digest
    assert again.canonical == parsed.canonical
    summary = parsed.summary()
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in summary.items())
    return parsed


def _run(kind: PayloadKind, payloads: st.SearchStrategy[bytes]) -> tuple[int, int]:
    """Run the property over ``payloads``; returns (cases run, cases accepted)."""
    counts = [0, 0]

    @_FUZZ_SETTINGS
    @given(payload=payloads)
    def fuzz(payload: bytes) -> None:
        counts[0] += 1
        parsed = _check(kind, payload)
        if parsed is None:
            return
        counts[1] += 1
        if kind is PayloadKind.TRANSACTION:
            assert parsed.nonce_slot is not None and parsed.nonce_slot[0] == "account"
        if kind is PayloadKind.AUTHORIZATION:
            assert parsed.nonce_slot is not None and parsed.nonce_slot[0] == "authorization"
        if kind is PayloadKind.MESSAGE:
            # An independent implementation of EIP-191 must hash the message to the same digest.
            assert parsed.digest == _hash_eip191_message(encode_defunct(primitive=payload))

    fuzz()
    return counts[0], counts[1]


def test_transactions_fuzzed() -> None:
    run, accepted = _run(PayloadKind.TRANSACTION, _TRANSACTION_PAYLOADS)
    assert run >= CASES_PER_PARSER
    # The strategies must reach past the refusals: a run that accepts almost nothing tests only the errors.
    assert accepted >= run // 20, f"only {accepted} of {run} transactions were accepted"


def test_authorizations_fuzzed() -> None:
    run, accepted = _run(PayloadKind.AUTHORIZATION, _AUTHORIZATION_PAYLOADS)
    assert run >= CASES_PER_PARSER
    assert accepted >= run // 20, f"only {accepted} of {run} authorizations were accepted"


def test_typed_data_fuzzed() -> None:
    run, accepted = _run(PayloadKind.TYPED_DATA, _TYPED_DATA_PAYLOADS)
    assert run >= CASES_PER_PARSER
    assert accepted >= run // 20, f"only {accepted} of {run} typed data payloads were accepted"


def test_messages_fuzzed() -> None:
    run, accepted = _run(PayloadKind.MESSAGE, _MESSAGES)
    assert run >= CASES_PER_PARSER
    assert accepted >= run // 2, f"only {accepted} of {run} messages were accepted"


@settings(max_examples=cases(300), deadline=None, derandomize=True, database=None)
@given(
    kind=st.sampled_from([PayloadKind.POLICY_CHANGE, PayloadKind.KEY_UNFREEZE]),
    payload=st.one_of(st.binary(max_size=64), _TRANSACTION_PAYLOADS),
)
def test_kinds_that_are_never_signed_are_refused(kind: PayloadKind, payload: bytes) -> None:
    assert _check(kind, payload) is None

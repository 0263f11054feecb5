"""Fuzzing the approval statement parser: whatever bytes arrive, ``ApprovalStatement.from_bytes`` answers with
the one statement those bytes encode or with InvalidInput.

An approver's Ed25519 signature covers the statement's exact bytes, so the parser must be canonical: if two
byte strings could mean the same statement, a signature over one could be replayed as the other, and the
daemon could not say which bytes were approved. The properties checked here, over more than 10,000 generated
inputs:

- every statement the constructor accepts encodes within the size limit, in ASCII, and parses back to itself
  from exactly those bytes;
- any input either parses to a statement whose ``to_bytes()`` is exactly that input, or raises InvalidInput
  naming the statement, with a message, quickly; no other exception ever escapes;
- an accepted statement's fields are in the formats the constructor documents.

The inputs are random bytes, random JSON behind the right prefix, and valid statements damaged at the byte
level (flips, cuts, insertions), at the field level (one field changed to junk, a near miss or another valid
value, fields dropped, renamed or repeated) and respelled: the same statement in another encoding (key order,
spaces, escapes, number spellings), which must always be refused. As in tests/unit/chains/test_evm_fuzz.py the
runs are derandomized, and each test counts its cases so that a setting that quietly runs fewer fails here.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.domain.approvals import (
    MAX_STATEMENT_BYTES,
    STATEMENT_FIELDS,
    STATEMENT_PREFIX,
    ApprovalStatement,
)
from custody.domain.errors import InvalidInput
from custody.domain.requests import Verdict
from tests.fuzzing import cases

T = TypeVar("T")

ROUND_TRIP_CASES = cases(2_000)
ARBITRARY_CASES = cases(3_000)
MUTATED_CASES = cases(6_000)
# Far above any honest parse of at most 4096 bytes; a parse this slow is a hang in waiting.
SLOWEST_PARSE_SECONDS = 1.0

# The CKA_IDs custody makes are 16 bytes and its HSM layer refuses ids over 64 bytes, so statements about real
# keys never carry longer key ids; longer ones are drawn too, to test what the constructor does with them.
HSM_MAX_KEY_ID_BYTES = 64
MAX_IDENTIFIER_CHARS = 128
UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1


_SEEDS = st.integers(min_value=0, max_value=2**64)


def _fuzz_settings(cases: int) -> settings:
    return settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------------------------------------------------
# The property every input must satisfy.

_KEY_ID_FORMAT = re.compile(r"(?:[0-9a-f]{2})*")


def _check(data: Any) -> ApprovalStatement | None:
    """Parse ``data``; assert that only InvalidInput escapes, quickly, and that what parses is canonical."""
    started = time.perf_counter()
    try:
        statement = ApprovalStatement.from_bytes(data)
    except InvalidInput as error:
        assert error.field == "statement"
        assert error.message.startswith("statement: ") and len(error.message) > len("statement: ")
        return None
    finally:
        elapsed = time.perf_counter() - started
        assert elapsed < SLOWEST_PARSE_SECONDS, f"parsing {len(data)} bytes took {elapsed:.2f} s"
    # The one encoding of the statement is the input itself: no other bytes parse to the same statement.
    assert statement.to_bytes() == data
    _assert_documented_formats(statement)
    return statement


def _assert_documented_formats(statement: ApprovalStatement) -> None:
    """The formats the dataclass documents for each field, checked independently of its own validation."""
    for identifier in (statement.request_id, statement.approver):
        assert 1 <= len(identifier) <= MAX_IDENTIFIER_CHARS and identifier.isprintable()
    assert len(statement.digest) == 32 and len(statement.payload_hash) == 32
    assert statement.chain_id is None or 0 <= statement.chain_id <= UINT64_MAX
    assert _KEY_ID_FORMAT.fullmatch(statement.key_id), f"key id {statement.key_id!r} is not lowercase hex"
    assert len(statement.key_id) <= 2 * HSM_MAX_KEY_ID_BYTES
    assert 1 <= statement.policy_version <= INT64_MAX
    assert 0 <= statement.expires_at <= INT64_MAX
    assert isinstance(statement.decision, Verdict)


def _run(inputs: st.SearchStrategy[Any], cases: int) -> int:
    """Run the property over ``inputs``; returns how many cases ran."""
    run = [0]

    @_fuzz_settings(cases)
    @given(data=inputs)
    def fuzz(data: Any) -> None:
        run[0] += 1
        _check(data)

    fuzz()
    return run[0]


# ------------------------------------------------------------------------------------------------------------
# Valid statements from generated fields.

# Printable characters in the sense of str.isprintable: no controls, formats, surrogates, private use,
# unassigned code points or separators other than the space.
_PRINTABLE_CHARACTERS = st.one_of(
    st.sampled_from(string.ascii_letters + string.digits + string.punctuation + " "),
    st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
)
_IDENTIFIERS = st.one_of(
    st.text(alphabet=_PRINTABLE_CHARACTERS, min_size=1, max_size=MAX_IDENTIFIER_CHARS),
    # The longest encodings: characters outside the Basic Multilingual Plane become 12-byte escape pairs.
    st.text(
        alphabet=st.characters(min_codepoint=0x1F600, max_codepoint=0x1F64F),
        min_size=MAX_IDENTIFIER_CHARS - 2,
        max_size=MAX_IDENTIFIER_CHARS,
    ),
)
_HASHES = st.binary(min_size=32, max_size=32)
_CHAIN_IDS = st.one_of(
    st.none(), st.integers(min_value=0, max_value=UINT64_MAX), st.sampled_from([0, 1, UINT64_MAX])
)
_POLICY_VERSIONS = st.one_of(st.integers(min_value=1, max_value=INT64_MAX), st.sampled_from([1, INT64_MAX]))
_EXPIRIES = st.one_of(st.integers(min_value=0, max_value=INT64_MAX), st.sampled_from([0, INT64_MAX]))
_VALID_KEY_IDS = st.binary(max_size=HSM_MAX_KEY_ID_BYTES).map(bytes.hex)
# Key ids the constructor may refuse: longer than any HSM makes, or text that is almost lowercase hex.
_DOUBTFUL_KEY_IDS = st.one_of(
    st.binary(min_size=HSM_MAX_KEY_ID_BYTES + 1, max_size=2_100).map(bytes.hex),
    st.text(alphabet="0123456789abcdefABx \n\t", max_size=10),
    st.binary(min_size=1, max_size=8).map(lambda raw: raw.hex() + "\n"),
)


@st.composite
def _statement_fields(draw: st.DrawFn) -> dict[str, Any]:
    doubtful = draw(st.integers(min_value=0, max_value=9)) == 0
    return {
        "request_id": draw(_IDENTIFIERS),
        "digest": draw(_HASHES),
        "payload_hash": draw(_HASHES),
        "chain_id": draw(_CHAIN_IDS),
        "key_id": draw(_DOUBTFUL_KEY_IDS if doubtful else _VALID_KEY_IDS),
        "policy_version": draw(_POLICY_VERSIONS),
        "decision": draw(st.sampled_from(Verdict)),
        "approver": draw(_IDENTIFIERS),
        "expires_at": draw(_EXPIRIES),
    }


def test_every_constructible_statement_round_trips_from_its_own_bytes() -> None:
    counts = [0, 0]

    @_fuzz_settings(ROUND_TRIP_CASES)
    @given(fields=_statement_fields())
    def fuzz(fields: dict[str, Any]) -> None:
        counts[0] += 1
        try:
            statement = ApprovalStatement(**fields)
        except InvalidInput as error:
            # Only the doubtful key ids may be refused, and the refusal names the key id.
            assert error.field == "key_id"
            assert not (
                _KEY_ID_FORMAT.fullmatch(fields["key_id"])
                and len(fields["key_id"]) <= 2 * HSM_MAX_KEY_ID_BYTES
            )
            return
        counts[1] += 1
        encoded = statement.to_bytes()
        assert encoded.startswith(STATEMENT_PREFIX) and encoded.isascii()
        assert len(encoded) <= MAX_STATEMENT_BYTES, f"a valid statement encodes to {len(encoded)} bytes"
        parsed = _check(encoded)
        assert parsed == statement

    fuzz()
    assert counts[0] >= ROUND_TRIP_CASES
    # Nine in ten draws have a key id of HSM size, so almost every case must reach the round trip.
    assert counts[1] >= counts[0] * 8 // 10, f"only {counts[1]} of {counts[0]} statements were constructible"


def test_the_longest_statement_a_real_key_can_have_round_trips() -> None:
    widest = "\U0001f600" * MAX_IDENTIFIER_CHARS
    statement = ApprovalStatement(
        request_id=widest,
        digest=b"\xff" * 32,
        payload_hash=b"\xff" * 32,
        chain_id=UINT64_MAX,
        key_id="ff" * HSM_MAX_KEY_ID_BYTES,
        policy_version=INT64_MAX,
        decision=Verdict.REJECT,
        approver=widest,
        expires_at=INT64_MAX,
    )
    encoded = statement.to_bytes()
    assert len(encoded) <= MAX_STATEMENT_BYTES
    assert _check(encoded) == statement


# ------------------------------------------------------------------------------------------------------------
# Arbitrary input.

_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["approve", "reject", "0x" + "ab" * 32, "00ff", ""]),
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(sorted(STATEMENT_FIELDS)), st.text(max_size=6)), children),
    ),
    max_leaves=10,
)


def _json_bytes(value: Any, ensure_ascii: bool) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii)
    return text.encode("utf-8", errors="surrogatepass")


_ARBITRARY_INPUTS = st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=600).map(lambda body: STATEMENT_PREFIX + body),
    st.builds(_json_bytes, _JSON_VALUES, st.booleans()).map(lambda body: STATEMENT_PREFIX + body),
    # Objects with exactly the statement's fields, each holding a random JSON value, so the field checks run.
    # Their values come from a seeded generator: drawing nine nested values through Hypothesis per case made
    # this the slowest test of the file.
    st.builds(
        _json_bytes,
        _SEEDS.map(lambda seed: {name: _Mutator(seed).junk() for name in sorted(STATEMENT_FIELDS)}),
        st.booleans(),
    ).map(lambda body: STATEMENT_PREFIX + body),
    st.sampled_from(
        [
            b"",
            STATEMENT_PREFIX,
            STATEMENT_PREFIX[:-1],
            STATEMENT_PREFIX + b"{}",
            STATEMENT_PREFIX + b"null",
            STATEMENT_PREFIX + b"\x00",
            STATEMENT_PREFIX + b"{" * 2_000,
            STATEMENT_PREFIX + b"[" * 4_000,
            STATEMENT_PREFIX + b" " * (MAX_STATEMENT_BYTES - len(STATEMENT_PREFIX)),
            STATEMENT_PREFIX + b" " * (MAX_STATEMENT_BYTES - len(STATEMENT_PREFIX) + 1),
            b"\xff" * (MAX_STATEMENT_BYTES + 1),
        ]
    ),
    # Not bytes at all, as a careless caller might pass; the parser documents InvalidInput for these too.
    st.sampled_from([STATEMENT_PREFIX.decode() + "{}", bytearray(STATEMENT_PREFIX + b"{}"), None, 7]),
)


def test_arbitrary_input_parses_canonically_or_is_invalid_input() -> None:
    assert _run(_ARBITRARY_INPUTS, ARBITRARY_CASES) >= ARBITRARY_CASES


# ------------------------------------------------------------------------------------------------------------
# Valid statements, damaged.

# For each field: values that are junk, near misses of its format, or out of its range.
_NEAR_MISSES: dict[str, list[Any]] = {
    "hash": [
        "0x" + "AB" * 32,
        "0X" + "ab" * 32,
        "ab" * 32,
        "0x" + "ab" * 31 + "a",
        "0x" + "ab" * 32 + "a",
        "0x" + "ab" * 32 + "\n",
        " 0x" + "ab" * 32,
        "0x" + "\uff10" * 64,  # fullwidth digits, which some parsers read as digits
        "0x",
        "",
        0,
        None,
        [171] * 32,
    ],
    "integer": [
        -1,
        0,
        1,
        INT64_MAX,
        INT64_MAX + 1,
        UINT64_MAX,
        UINT64_MAX + 1,
        1.0,
        1e3,
        "1",
        True,
        False,
        None,
    ],
    "identifier": [
        "",
        "a" * MAX_IDENTIFIER_CHARS,
        "a" * (MAX_IDENTIFIER_CHARS + 1),
        "alice\n",
        "\u0000",
        "al\u200bice",  # a zero-width space, a format character
        "\ud800",  # a lone surrogate
        "\u00a0",  # a no-break space, a separator other than the space
        " ",
        7,
        None,
        ["alice"],
    ],
    "key_id": ["", "AB", "a", "ab\n", "0xab", " ab", "ab" * 65, "\uff10\uff10", None, 171],
    "decision": ["approve", "reject", "APPROVE", "approve ", "approved", "", None, 1, ["approve"]],
}
_FIELD_FORMS = {
    "request_id": "identifier",
    "approver": "identifier",
    "digest": "hash",
    "payload_hash": "hash",
    "chain_id": "integer",
    "policy_version": "integer",
    "expires_at": "integer",
    "key_id": "key_id",
    "decision": "decision",
}
_IDENTIFIER_ALPHABET = string.ascii_letters + string.digits + "_-.@ é€\U0001f600"
_JUNK_KEYS = ["Approver", "approver ", "note", "", "__proto__", "request-id", "chainId"]
_EXTENSIONS = [b" ", b"\n", b"\r\n", b"\x00", b"}", b",", b'{"a":1}', b"\xef\xbb\xbf", b"\xff", b"//"]


class _Mutator:
    """Valid statements and their damaged forms, from a seeded generator.

    Hypothesis draws the seed and which damage to do; the many small choices come from this generator, which
    keeps each case cheap (as in test_evm_fuzz) while the runs stay reproducible.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def one_in(self, odds: int) -> bool:
        return self.rng.randrange(odds) == 0

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def identifier(self) -> str:
        return "".join(self.pick(_IDENTIFIER_ALPHABET) for _ in range(self.rng.randint(1, 24)))

    def integer(self, low: int, high: int) -> int:
        return self.pick([low, high, self.rng.randint(low, high), self.rng.randint(low, min(high, 10**10))])

    def statement(self) -> ApprovalStatement:
        return ApprovalStatement(
            request_id=self.identifier(),
            digest=self.rng.randbytes(32),
            payload_hash=self.rng.randbytes(32),
            chain_id=None if self.one_in(4) else self.integer(0, UINT64_MAX),
            key_id="" if self.one_in(4) else self.rng.randbytes(self.rng.randint(1, 32)).hex(),
            policy_version=self.integer(1, INT64_MAX),
            decision=self.pick(list(Verdict)),
            approver=self.identifier(),
            expires_at=self.integer(0, INT64_MAX),
        )

    def junk(self, depth: int = 0) -> Any:
        """A JSON value of a random type, often a near miss of some field's format."""
        roll = self.rng.randrange(9 if depth < 2 else 6)
        if roll == 0:
            return None
        if roll == 1:
            return self.one_in(2)
        if roll == 2:
            return self.rng.randint(-(2**70), 2**70) >> self.rng.randrange(70)
        if roll == 3:
            return self.rng.uniform(-1e20, 1e20)
        if roll == 4:
            return self.pick(_NEAR_MISSES[self.pick(sorted(_NEAR_MISSES))])
        if roll == 5:
            return self.identifier()
        if roll == 6:
            return self.valid_value(self.pick(sorted(STATEMENT_FIELDS)))
        if roll == 7:
            return [self.junk(depth + 1) for _ in range(self.rng.randrange(3))]
        return {self.pick(_JUNK_KEYS): self.junk(depth + 1) for _ in range(self.rng.randrange(3))}

    def valid_value(self, name: str) -> Any:
        """Another valid value for field ``name``, as it appears in the JSON document."""
        return json.loads(self.statement().to_bytes()[len(STATEMENT_PREFIX) :])[name]

    # Byte-level damage.

    def flip(self, data: bytes) -> bytes:
        position = self.rng.randrange(len(data))
        return data[:position] + bytes([data[position] ^ self.rng.randint(1, 255)]) + data[position + 1 :]

    def truncate(self, data: bytes) -> bytes:
        return data[: self.rng.randrange(len(data))]

    def extend(self, data: bytes) -> bytes:
        extra = self.pick(_EXTENSIONS) if self.one_in(2) else self.rng.randbytes(self.rng.randint(1, 8))
        return data + extra

    def insert(self, data: bytes) -> bytes:
        position = self.rng.randrange(len(data) + 1)
        extra = self.pick([b" ", b"\\", b'"', b"0", b"\n", b"\xc3", self.rng.randbytes(1)])
        return data[:position] + extra + data[position:]

    def delete(self, data: bytes) -> bytes:
        start = self.rng.randrange(len(data))
        return data[:start] + data[start + self.rng.randint(1, 4) :]

    def prefix(self, data: bytes) -> bytes:
        body = data[len(STATEMENT_PREFIX) :]
        other = self.pick(
            [
                b"custody approval statement v2\n",
                b"custody approval statement v1\r\n",
                b"custody approval statement v1",
                b"Custody approval statement v1\n",
                b"custody approval statement v1\n\n",
                b"\xef\xbb\xbfcustody approval statement v1\n",
                b"",
            ]
        )
        return other + body

    # Field-level damage: the document is changed, then encoded canonically so that the parser reaches the
    # field checks instead of stopping at the canonical-form check.

    def change_field(self, document: dict[str, Any]) -> dict[str, Any]:
        names = sorted(STATEMENT_FIELDS & document.keys())
        if not names:
            return self.change_keys(document)
        name = self.pick(names)
        roll = self.rng.randrange(3)
        if roll == 0:
            document[name] = self.pick(_NEAR_MISSES[_FIELD_FORMS[name]])
        elif roll == 1:
            document[name] = self.valid_value(name)
        else:
            document[name] = self.pick(_NEAR_MISSES[self.pick(sorted(_NEAR_MISSES))])
        return document

    def change_keys(self, document: dict[str, Any]) -> dict[str, Any]:
        name = self.pick(sorted(document))
        roll = self.rng.randrange(3)
        if roll == 0:
            del document[name]
        elif roll == 1:
            document[self.pick(_JUNK_KEYS)] = document.pop(name)
        else:
            document[self.pick(_JUNK_KEYS)] = self.pick(_NEAR_MISSES["identifier"])
        return document

    def encode(self, document: dict[str, Any]) -> bytes:
        return STATEMENT_PREFIX + _json_bytes(document, ensure_ascii=True)

    def duplicate_key(self, data: bytes, document: dict[str, Any]) -> bytes:
        """A repeated field, once with its own value and once with another: two readings of one statement."""
        name = self.pick(sorted(document))
        value = self.pick([document[name], self.valid_value(name)]) if name in STATEMENT_FIELDS else 1
        pair = json.dumps(name) + ":" + json.dumps(value, ensure_ascii=True)
        body = data[len(STATEMENT_PREFIX) :]
        if self.one_in(2):
            return STATEMENT_PREFIX + b"{" + pair.encode() + b"," + body[1:]
        return STATEMENT_PREFIX + body[:-1] + b"," + pair.encode() + b"}"

    def damage(self, name: str, data: bytes, original: ApprovalStatement) -> bytes:
        """``data`` with the damage called ``name``; damage that needs a JSON object falls back to a flip."""
        if name == "respell":
            return self.respell(original)
        if name == "prefix":
            return self.prefix(data)
        if name in ("extend", "insert"):
            return self.extend(data) if name == "extend" else self.insert(data)
        if name in ("field", "keys", "duplicate"):
            document = _object_in(data)
            if document is not None and name == "duplicate":
                return self.duplicate_key(data, document)
            if document is not None:
                return self.encode(
                    self.change_field(document) if name == "field" else self.change_keys(document)
                )
            name = "flip"
        if name in ("flip", "truncate", "delete") and data:
            return {"flip": self.flip, "truncate": self.truncate, "delete": self.delete}[name](data)
        return data

    # Respelling: the same statement in another encoding, which must always be refused.

    def respell(self, statement: ApprovalStatement) -> bytes:
        body = statement.to_bytes()[len(STATEMENT_PREFIX) :].decode("ascii")
        document = json.loads(body)
        roll = self.rng.randrange(8)
        if roll == 0:
            keys = sorted(document)
            while keys == sorted(document):
                self.rng.shuffle(keys)
            text = json.dumps({key: document[key] for key in keys}, separators=(",", ":"))
        elif roll == 1:
            text = json.dumps(
                document, sort_keys=True, separators=self.pick([(", ", ":"), (",", ": "), (",", ":  ")])
            )
        elif roll == 2:
            text = (
                self.pick([" ", "\n", "\t", "\r"]) + body if self.one_in(2) else body + self.pick([" ", "\n"])
            )
        elif roll == 3:
            # Raw UTF-8 instead of escapes; identical to the canonical bytes only if the text is pure ASCII.
            text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        elif roll == 4:
            text = self._escape_a_character(body)
        elif roll == 5:
            # Hex digits of an escape in upper case ("\u00E9" for "\u00e9").
            text = re.sub(r"\\u([0-9a-f]{4})", lambda match: "\\u" + match.group(1).upper(), body, count=1)
        elif roll == 6:
            # Another spelling of a number: a fraction, an exponent, a negative zero.
            name = self.pick(
                [name for name in ("expires_at", "policy_version", "chain_id") if document[name] is not None]
            )
            number = document[name]
            spelling = self.pick(
                [f"{number}.0", f"{number}e0", f"{number}E+0", "-0" if number == 0 else f"{number}.00"]
            )
            text = body.replace(f'"{name}":{number}', f'"{name}":{spelling}', 1)
        else:
            text = body.replace("/", "\\/") if "/" in body else body.replace(":", " : ", 1)
        return STATEMENT_PREFIX + text.encode("utf-8")

    def _escape_a_character(self, body: str) -> str:
        """Write one character inside a string value as a \\u escape, which JSON reads as the same text."""
        positions = [
            literal.start(1) + piece.start()
            for literal in re.finditer(r'"((?:[^"\\]|\\.)*)"', body)
            for piece in re.finditer(r"\\u[0-9a-f]{4}|\\.|([A-Za-z0-9])", literal.group(1))
            if piece.group(1)
        ]
        index = self.pick(positions)
        return body[:index] + f"\\u{ord(body[index]):04x}" + body[index + 1 :]


def _object_in(data: bytes) -> dict[str, Any] | None:
    """The non-empty JSON object after the prefix, or None when ``data`` is not a statement-shaped object."""
    if not data.startswith(STATEMENT_PREFIX + b"{") or not data.endswith(b"}"):
        return None
    try:
        document = json.loads(data[len(STATEMENT_PREFIX) :])
    except ValueError:
        return None
    return document if isinstance(document, dict) and document else None


_DAMAGES = st.sampled_from(
    [
        "flip",
        "truncate",
        "extend",
        "insert",
        "delete",
        "prefix",
        "field",
        "field",
        "field",
        "keys",
        "duplicate",
    ]
    + ["respell"] * 3
    + ["none"]
)


@st.composite
def _mutated_statements(draw: st.DrawFn) -> tuple[bytes, ApprovalStatement, bool]:
    """(input, the statement it was made from, whether the input is a respelling of that statement)."""
    mutator = _Mutator(draw(_SEEDS))
    original = mutator.statement()
    data = original.to_bytes()
    damages = [draw(_DAMAGES) for _ in range(draw(st.integers(min_value=1, max_value=2)))]
    respelled = damages == ["respell"]
    for damage in damages:
        data = mutator.damage(damage, data, original)
    return data, original, respelled


def test_damaged_statements_parse_canonically_or_are_invalid_input() -> None:
    counts = {"run": 0, "accepted": 0, "unchanged": 0, "respelled": 0}

    @_fuzz_settings(MUTATED_CASES)
    @given(case=_mutated_statements())
    def fuzz(case: tuple[bytes, ApprovalStatement, bool]) -> None:
        data, original, respelled = case
        counts["run"] += 1
        statement = _check(data)
        if data == original.to_bytes():
            # Only the canonical bytes of the original may give it back, and they must.
            assert statement == original
            counts["unchanged"] += 1
            return
        if respelled:
            # The same statement in another encoding: accepting it would give a signature two messages.
            assert statement is None, f"a respelling of a statement was accepted: {data!r}"
            counts["respelled"] += 1
        if statement is not None:
            # Different bytes were accepted, so they must say something different.
            assert statement != original
            counts["accepted"] += 1

    fuzz()
    assert counts["run"] >= MUTATED_CASES
    # The damage must reach every outcome: different statements accepted, respellings refused.
    assert counts["accepted"] >= counts["run"] // 50, counts
    assert counts["respelled"] >= counts["run"] // 50, counts

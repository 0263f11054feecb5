"""The JSON depth check reads hostile text once: strings, escapes and brackets at the payload size limit.

The check refuses nesting deeper than MAX_JSON_DEPTH before the recursive decoder sees it, and must agree with
the decoder about what is inside a string: brackets in a string do not nest, a backslash escapes the next
character, an escaped quote does not close the string. The payloads below are the worst ones for a check
that skips strings with a backtracking regular expression (quotes and escaped quotes in a string that never
closes, long runs of backslashes), each exactly MAX_PAYLOAD_BYTES long. These tests check the verdicts only;
bench/json_depth_check.py measures the time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custody.chains.evm import MAX_PAYLOAD_BYTES, PayloadKind, parse_payload
from custody.chains.evm.values import MAX_JSON_DEPTH, load_json_object
from custody.domain.errors import InvalidInput
from tests.fuzzing import cases

ACCEPTED = "accepted"
TOO_DEEP = "too deep"
NOT_JSON = "not JSON"


def at_size_limit(prefix: str, unit: str, suffix: str = "") -> bytes:
    """``prefix``, then ``unit`` as many times as fits, then ``suffix``, padded with spaces to the size limit.

    The spaces come last: after a complete document they are whitespace the decoder skips, and in a string
    that never closes they are more of that string, so they change no verdict.
    """
    repeats = (MAX_PAYLOAD_BYTES - len(prefix) - len(suffix)) // len(unit)
    text = prefix + unit * repeats + suffix
    payload = (text + " " * (MAX_PAYLOAD_BYTES - len(text))).encode("ascii")
    assert len(payload) == MAX_PAYLOAD_BYTES
    return payload


ESCAPED_QUOTE = '\\"'
ESCAPED_BACKSLASH = "\\\\"
HALF = MAX_PAYLOAD_BYTES // 2

# (name, payload, verdict): every payload is MAX_PAYLOAD_BYTES long.
HOSTILE_PAYLOADS: list[tuple[str, bytes, str]] = [
    ("a quote and escaped quotes, never closed", at_size_limit('"', ESCAPED_QUOTE), NOT_JSON),
    ("escaped quotes in a member that never closes", at_size_limit('{"memo":"', ESCAPED_QUOTE), NOT_JSON),
    ("escaped quotes in an array element that never closes", at_size_limit('["', ESCAPED_QUOTE), NOT_JSON),
    (
        "an object of escaped quotes in a closed string",
        at_size_limit('{"memo":"', ESCAPED_QUOTE, '"}'),
        ACCEPTED,
    ),
    ("quotes, each opening a string that never closes", at_size_limit("", '"'), NOT_JSON),
    ("escaped quotes after a closed string", at_size_limit('{"a":"b","c":"', ESCAPED_QUOTE), NOT_JSON),
    ("a quote and backslashes, never closed", at_size_limit('"', "\\"), NOT_JSON),
    ("escaped backslashes in a closed string", at_size_limit('{"memo":"', ESCAPED_BACKSLASH, '"}'), ACCEPTED),
    (
        # The backslashes pair up, so the quote after them closes the string and the brackets nest.
        "escaped backslashes, then a closing quote and 65 levels",
        at_size_limit('{"memo":"', ESCAPED_BACKSLASH, '","deep":' + "[" * 65 + "]" * 65 + "}"),
        TOO_DEEP,
    ),
    (
        # An odd backslash escapes the quote, so the string goes on and the brackets are text.
        "escaped backslashes, then an escaped quote and brackets in the string",
        at_size_limit('{"memo":"', ESCAPED_BACKSLASH, ESCAPED_QUOTE + "[" * 65 + '"}'),
        ACCEPTED,
    ),
    (
        "a backslash and a quote after each other, repeated, in a closed string",
        at_size_limit('{"memo":"', ESCAPED_BACKSLASH + ESCAPED_QUOTE, '"}'),
        ACCEPTED,
    ),
    ("opening brackets in a closed string", at_size_limit('{"memo":"', "[{", '"}'), ACCEPTED),
    ("opening brackets in a string that never closes", at_size_limit('{"memo":"', "[{"), NOT_JSON),
    ("short strings of brackets", at_size_limit('{"list":[', '"[{[{",', '""]}'), ACCEPTED),
    (
        "escaped quotes and brackets in short strings",
        at_size_limit('{"list":[', '"\\"[\\"{",', '""]}'),
        ACCEPTED,
    ),
    ("nesting half the payload deep", ("[" * HALF + "]" * HALF).encode("ascii"), TOO_DEEP),
    ("objects nested far too deep", at_size_limit("", '{"a":'), TOO_DEEP),
    (
        "64 levels around a string of escaped quotes",
        at_size_limit('{"a":' + "[" * (MAX_JSON_DEPTH - 1) + '"', ESCAPED_QUOTE, '"' + "]" * 63 + "}"),
        ACCEPTED,
    ),
    (
        "65 levels around a string of escaped quotes",
        at_size_limit('{"a":' + "[" * MAX_JSON_DEPTH + '"', ESCAPED_QUOTE, '"' + "]" * MAX_JSON_DEPTH + "}"),
        TOO_DEEP,
    ),
]


def _verdict(payload: bytes) -> tuple[str, Any]:
    try:
        value = load_json_object(payload, "transaction")
    except InvalidInput as error:
        assert error.field == "payload", error
        if error.message == f"payload: the transaction nests JSON more than {MAX_JSON_DEPTH} levels deep":
            return TOO_DEEP, None
        assert error.message.startswith("payload: the transaction is not valid JSON"), error.message
        return NOT_JSON, None
    return ACCEPTED, value


def test_hostile_payloads_at_the_size_limit_are_refused_or_read_as_the_decoder_reads_them() -> None:
    # One test over the whole table: a check that is quadratic in such text keeps a run of the table going for
    # many minutes, past the suite's timeout, while a linear check answers each in milliseconds.
    for name, payload, expected in HOSTILE_PAYLOADS:
        verdict, value = _verdict(payload)
        assert verdict == expected, f"{name}: {verdict}, expected {expected}"
        if verdict == ACCEPTED:
            # The value is what Python's decoder reads from the same text, untouched by the check.
            assert value == json.loads(payload), name


@pytest.mark.parametrize("kind", [PayloadKind.TRANSACTION, PayloadKind.TYPED_DATA])
def test_each_json_payload_kind_refuses_escaped_quotes_that_never_close(kind: PayloadKind) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_payload(kind, at_size_limit('{"memo":"', ESCAPED_QUOTE))
    assert refused.value.field == "payload"
    assert "is not valid JSON" in refused.value.message


# Text full of the characters the check has to tell apart: quotes, backslashes and brackets.
_TRICKY_TEXT = st.text(alphabet='"\\[]{}a \u00e9\U0001f600', max_size=10)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TRICKY_TEXT, children, max_size=3),
    max_leaves=12,
)


def _depth(value: Any) -> int:
    """How deep the decoded value nests: each array or object is one level."""
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


@settings(max_examples=cases(500), deadline=None, derandomize=True, database=None)
@given(
    value=_VALUES,
    wrappers=st.lists(st.sampled_from(["array", "object"]), min_size=55, max_size=70),
    ensure_ascii=st.booleans(),
)
def test_depth_is_refused_exactly_when_the_decoded_value_nests_too_deep(
    value: Any, wrappers: list[str], ensure_ascii: bool
) -> None:
    document: Any = value
    for wrapper in wrappers:
        document = [document] if wrapper == "array" else {'k"[\\': document}
    text = json.dumps({"v": document}, ensure_ascii=ensure_ascii)
    decoded = json.loads(text)
    verdict, value_read = _verdict(text.encode("utf-8"))
    if _depth(decoded) > MAX_JSON_DEPTH:
        assert verdict == TOO_DEEP
    else:
        assert verdict == ACCEPTED
        assert value_read == decoded

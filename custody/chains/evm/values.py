"""Strict readers for the JSON values that make up Ethereum payloads.

Integers are accepted in three spellings, because wallets, eth-account and JSON-RPC tools each produce a
different one: a JSON integer (``21000``), a ``0x``-prefixed hexadecimal string (``"0x5208"``, the JSON-RPC
convention) or a string of decimal digits (``"21000"``, which survives JavaScript tools that would round a
large JSON number). Fractions, exponents, booleans, empty strings, signs on hex strings and whitespace are
all refused, and so are leading zeros and a sign on zero in a decimal string ("007", "-0"): an amount of
money must have exactly one reading, and a decimal string one spelling per number. Byte strings are
``0x``-prefixed hex of even length.
"""

from __future__ import annotations

import json
import re
from typing import Any

from custody.domain.canonical_json import canonical_json
from custody.domain.errors import InvalidInput

# The policy formats amounts too, and the domain must not import the chain adapters, so the formatting lives
# in the domain and is re-exported here for the adapters and their callers.
from custody.domain.evm_notation import format_ether, format_gwei

__all__ = ["format_ether", "format_gwei"]  # re-exported; everything defined here is public as usual

# Payloads are refused above this size before any parsing, so a hostile request costs little.
MAX_PAYLOAD_BYTES = 128 * 1024

_HEX_QUANTITY = re.compile(r"0x[0-9a-fA-F]+")
# A decimal string has one spelling per number: no leading zero ("007") and no sign on zero ("-0"). A negative
# one is read so that its error can say it is below the minimum.
_DECIMAL_QUANTITY = re.compile(r"0|-?[1-9][0-9]*")
_DECIMAL_DIGITS = re.compile(r"-?[0-9]+")
_HEX_BYTES = re.compile(r"0x(?:[0-9a-fA-F]{2})*")

# Deeper JSON than this is refused before decoding. Python's C decoder recurses per level and, when the
# interpreter's recursion limit has been raised (test runners do), a deep enough document overflows the C
# stack and kills the process instead of raising; so the depth is counted first, without recursion.
MAX_JSON_DEPTH = 64

# The largest chain id custody accepts, in a transaction or a typed data domain: EIP-2294's bound,
# floor((2**64 - 1) / 2) - 36 = 2**63 - 37. EIP-155 puts chainId * 2 + 35 + y_parity in a legacy transaction's v,
# and up to this bound v fits in the 64 bits that signers and nodes commonly give it. The store keeps chain ids
# in BIGINT columns (signed 64-bit, at most 2**63 - 1) and a policy, written in TOML, cannot name a larger one
# either. So a larger chain id could be neither signed portably, nor recorded, nor allowed by a rule; refusing
# it when the payload is parsed names the field instead of failing later in the store.
MAX_CHAIN_ID = (2**64 - 1) // 2 - 36

# A hex or decimal spelling longer than this cannot fit in 256 bits, so it is refused before conversion.
_MAX_QUANTITY_CHARS = 80


class _FractionalNumber:
    """Marks a JSON number written with a fraction or exponent, which no Ethereum integer field accepts."""

    def __init__(self, text: str) -> None:
        self.text = text


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two readers of one JSON object must never disagree about its content, and with duplicate keys one
    # parser keeps the first value and another the last; so duplicates are refused outright.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(f"the key {key!r} appears more than once in one JSON object", field=key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a valid JSON number", field="payload")


def load_json_object(payload: bytes, what: str) -> dict[str, Any]:
    """Decode ``payload`` as one UTF-8 JSON object, refusing oversized input, duplicate keys and NaN."""
    check_payload_size(payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"the {what} is not valid UTF-8", field="payload") from None
    check_json_depth(text, what)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_refuse_duplicate_keys,
            parse_float=_FractionalNumber,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise InvalidInput(f"the {what} nests JSON too deeply", field="payload") from None
    except ValueError as error:
        # JSONDecodeError (a ValueError) carries the position, which lets the sender find the typo in the file
        # the payload came from; other ValueErrors come from over-long integers.
        detail = (
            f"{error.msg} at line {error.lineno}, column {error.colno}"
            if isinstance(error, json.JSONDecodeError)
            else "a number is too long"
        )
        raise InvalidInput(f"the {what} is not valid JSON: {detail}", field="payload") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"the {what} must be a JSON object", field="payload")
    return value


def check_json_depth(text: str, what: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH, reading the text once, character by character.

    Outside a string an opening bracket goes one level deeper and a closing one comes back; a quote opens a
    string, inside which a backslash escapes the next character and an unescaped quote closes it; brackets
    inside strings do not count. The cost is one step per character whatever the text holds. (A regular
    expression that skipped strings retried from every quote of a string that never closes, which made a
    payload of escaped quotes quadratic: 85 s at the size limit.) Text that is not JSON is read the same way:
    the decoder refuses it afterwards, and it stops at the first character where its reading and this one
    could differ, so it never descends further than counted here.
    """
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidInput(
                    f"the {what} nests JSON more than {MAX_JSON_DEPTH} levels deep", field="payload"
                )
        elif char in "]}":
            depth -= 1


def check_payload_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            f"the payload is {len(payload)} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
            field="payload",
        )


def canonical_payload(value: Any) -> bytes:
    """A payload as canonical UTF-8 JSON: one byte string per value, so stored payloads hash stably."""
    return canonical_json(value, ascii_only=False).encode("utf-8")


def parse_integer(value: object, field: str, *, minimum: int, maximum: int) -> int:
    """Read an integer in one of the three accepted spellings and check ``minimum <= value <= maximum``."""
    number: int
    if isinstance(value, bool):
        raise InvalidInput("must be an integer, not a boolean", field=field)
    if isinstance(value, int):
        number = value
    elif isinstance(value, _FractionalNumber):
        raise InvalidInput(f"must be a whole number, got {value.text[:40]}", field=field)
    elif isinstance(value, str):
        if len(value) > _MAX_QUANTITY_CHARS:
            raise InvalidInput("is too long to be a 256-bit integer", field=field)
        if _HEX_QUANTITY.fullmatch(value):
            number = int(value[2:], 16)
        elif _DECIMAL_QUANTITY.fullmatch(value):
            number = int(value, 10)
        elif _DECIMAL_DIGITS.fullmatch(value):
            raise InvalidInput(
                f"a decimal string must have no leading zero and no sign on zero, got {value[:40]!r}: each"
                " integer has exactly one spelling",
                field=field,
            )
        else:
            raise InvalidInput(
                "must be an integer as a JSON number, a 0x-hex string or a decimal string,"
                f" got {value[:40]!r}",
                field=field,
            )
    else:
        raise InvalidInput(f"must be an integer, got {json_type_name(value)}", field=field)
    if number < minimum:
        raise InvalidInput(f"must be at least {minimum}, got {number}", field=field)
    if number > maximum:
        raise InvalidInput(f"must be at most {maximum}, got {number}", field=field)
    return number


def parse_chain_id(value: object, field: str) -> int:
    """Read a chain id: an integer from 1 to MAX_CHAIN_ID, in one of the three accepted spellings."""
    chain_id = parse_integer(value, field, minimum=1, maximum=2**256 - 1)
    if chain_id > MAX_CHAIN_ID:
        raise InvalidInput(
            f"must be at most {MAX_CHAIN_ID} (2**63 - 37, the largest chain id EIP-155's v and the store can"
            f" hold), got {chain_id}",
            field=field,
        )
    return chain_id


def parse_hex_bytes(value: object, field: str, *, max_length: int, exact_length: int | None = None) -> bytes:
    """Read ``0x``-prefixed hex of even length (``"0x"`` is the empty byte string)."""
    if not isinstance(value, str):
        raise InvalidInput(f"must be a 0x-prefixed hex string, got {json_type_name(value)}", field=field)
    if len(value) > 2 + 2 * max_length:
        raise InvalidInput(f"is longer than the limit of {max_length} bytes", field=field)
    if not _HEX_BYTES.fullmatch(value):
        raise InvalidInput("must be a 0x-prefixed hex string with an even number of hex digits", field=field)
    data = bytes.fromhex(value[2:])
    if exact_length is not None and len(data) != exact_length:
        raise InvalidInput(f"must be exactly {exact_length} bytes, got {len(data)}", field=field)
    return data


def json_type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | _FractionalNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def shorten_hex(data: bytes, keep_bytes: int = 64) -> str:
    """Hex of ``data``, cut in the middle when long so that a summary stays readable."""
    if len(data) <= 2 * keep_bytes:
        return "0x" + data.hex()
    return f"0x{data[:keep_bytes].hex()}...{data[-keep_bytes:].hex()}"

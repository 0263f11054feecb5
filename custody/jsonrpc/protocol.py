"""JSON-RPC 2.0 framing: decoding a body into calls, and encoding answers and errors.

Nothing here knows custody's methods. A body is one call object or a batch (an array) of at most
``[jsonrpc] max_batch`` of them; each call gets an answer except notifications (calls without an ``id``), as
the specification says. What cannot be read as JSON is one parse error (-32700); a call object that is not one
(no ``jsonrpc: "2.0"``, no method name, params neither an array nor an object, an id that is neither a string,
a number nor null) is an invalid request (-32600) that names what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from custody.api.errors import JSONRPC_INVALID_REQUEST, JSONRPC_PARSE_ERROR
from custody.chains.evm.values import check_json_depth
from custody.domain.errors import InvalidInput

# An id is echoed back in the answer, so a long one would let a caller make the daemon write any amount.
MAX_ID_CHARS = 128
MAX_METHOD_CHARS = 64


class JsonRpcError(Exception):
    """An error answer: ``code`` and ``message`` as the client sees them, ``data`` when there is more to say
    (a pending request's id and state)."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


_NO_ID = object()


@dataclass(frozen=True)
class Call:
    """One call of a body. ``id`` is _NO_ID for a notification, which gets no answer."""

    method: str
    params: list[Any] | dict[str, Any]
    id: Any = field(default=_NO_ID)

    @property
    def is_notification(self) -> bool:
        return self.id is _NO_ID


@dataclass(frozen=True)
class Body:
    """A decoded body: its calls in order, each either a Call or the error that its object earned."""

    entries: list[Call | tuple[Any, JsonRpcError]]
    batch: bool


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A call read one way here and another way by a proxy in front of the daemon must not exist: duplicates
    # are refused, as in payloads.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears more than once in one object")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode_body(body: bytes, max_batch: int) -> Body:
    """The calls of ``body``; raises JsonRpcError for a body that is no call at all (answered once, id null)."""
    try:
        text = body.decode("utf-8")
        check_json_depth(text, "request body")
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise JsonRpcError(JSONRPC_PARSE_ERROR, "parse error: the body is not UTF-8 text") from None
    except InvalidInput as error:
        raise JsonRpcError(JSONRPC_PARSE_ERROR, f"parse error: {error.message}") from None
    except RecursionError:
        raise JsonRpcError(JSONRPC_PARSE_ERROR, "parse error: the body nests JSON too deeply") from None
    except ValueError as error:
        detail = (
            f"{error.msg} at line {error.lineno}, column {error.colno}"
            if isinstance(error, json.JSONDecodeError)
            else str(error)
        )
        raise JsonRpcError(
            JSONRPC_PARSE_ERROR, f"parse error: the body is not valid JSON ({detail})"
        ) from None
    if isinstance(document, list):
        if not document:
            raise JsonRpcError(JSONRPC_INVALID_REQUEST, "invalid request: the batch is empty")
        if len(document) > max_batch:
            raise JsonRpcError(
                JSONRPC_INVALID_REQUEST,
                f"invalid request: the batch holds {len(document)} calls; the limit is {max_batch}"
                " ([jsonrpc] max_batch)",
            )
        return Body(entries=[_decode_call(item) for item in document], batch=True)
    return Body(entries=[_decode_call(document)], batch=False)


def _decode_call(item: Any) -> Call | tuple[Any, JsonRpcError]:
    if not isinstance(item, dict):
        return None, _invalid("a call must be a JSON object")
    call_id = item.get("id", _NO_ID)
    if call_id is not _NO_ID and not _valid_id(call_id):
        return None, _invalid("id must be a string, an integer or null, of at most 128 characters")
    answer_id = None if call_id is _NO_ID else call_id
    unknown = sorted(set(item) - {"jsonrpc", "method", "params", "id"})
    if unknown:
        return answer_id, _invalid(
            f"unknown member {unknown[0]!r}; a call has jsonrpc, method, params and id"
        )
    if item.get("jsonrpc") != "2.0":
        return answer_id, _invalid('jsonrpc must be "2.0"')
    method = item.get("method")
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD_CHARS:
        return answer_id, _invalid(
            f"method must be a non-empty string of at most {MAX_METHOD_CHARS} characters"
        )
    params = item.get("params", [])
    if not isinstance(params, list | dict):
        return answer_id, _invalid("params must be an array or an object")
    return Call(method=method, params=params, id=call_id)


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return len(str(value)) <= MAX_ID_CHARS
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS


def _invalid(problem: str) -> JsonRpcError:
    return JsonRpcError(JSONRPC_INVALID_REQUEST, f"invalid request: {problem}")


def result_answer(call_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "result": result}


def error_answer(call_id: Any, error: JsonRpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "error": error.to_json()}


def encode(answer: Any) -> bytes:
    return json.dumps(answer, separators=(",", ":"), ensure_ascii=True).encode("ascii")

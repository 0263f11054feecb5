"""The tables that map custody's typed errors to gRPC status codes and to JSON-RPC error codes.

The mapping is by type, walking the class hierarchy from the most specific class, never by matching message
text. Anything not a CustodyError becomes INTERNAL with a correlation id; its details go to the log only.
"""

from __future__ import annotations

import logging
import uuid
from typing import TypeVar

import grpc

from custody.domain import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.CustodyError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ConfigurationError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message a client may see for ``error``."""
    return _by_type(error, STATUS_BY_ERROR, grpc.StatusCode.INTERNAL)


_Code = TypeVar("_Code")


def _by_type(
    error: BaseException, table: dict[type[errors.CustodyError], _Code], internal: _Code
) -> tuple[_Code, str]:
    """The code ``table`` gives the most specific class of ``error`` and its user-facing message; anything not
    a CustodyError is ``internal`` with a correlation id, its details going to the log only."""
    if isinstance(error, errors.CustodyError) and not isinstance(error, errors.InternalError):
        for cls in type(error).__mro__:
            code = table.get(cls)
            if code is not None:
                return code, error.message
    correlation_id = uuid.uuid4().hex[:16]
    log.error("internal error, correlation id %s", correlation_id, exc_info=error)
    return internal, f"internal error (correlation id {correlation_id}); see the daemon's log"


# JSON-RPC error codes. -32700..-32600 are JSON-RPC 2.0's own, 4100 is EIP-1193's "unauthorized", -32001..-32005
# are EIP-1474's; -32010 and up are custody's. docs/design.md and the README list them.
JSONRPC_PARSE_ERROR = -32700
JSONRPC_INVALID_REQUEST = -32600
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INVALID_PARAMS = -32602
JSONRPC_INTERNAL_ERROR = -32603
JSONRPC_UNAUTHORIZED = 4100
JSONRPC_RESOURCE_NOT_FOUND = -32001
JSONRPC_RESOURCE_UNAVAILABLE = -32002
JSONRPC_TRANSACTION_REJECTED = -32003
JSONRPC_LIMIT_EXCEEDED = -32005
JSONRPC_PENDING_APPROVAL = -32010
JSONRPC_POLICY_DENIED = -32011
JSONRPC_KEY_FROZEN = -32012
JSONRPC_NONCE_CONFLICT = -32013
JSONRPC_NOT_SIGNED = -32014
JSONRPC_UNAUTHENTICATED = -32015
# eth_sendTransaction signed, but the upstream node could not say whether it received the transaction.
JSONRPC_BROADCAST_UNKNOWN = -32016

JSONRPC_CODE_BY_ERROR: dict[type[errors.CustodyError], int] = {
    errors.InvalidInput: JSONRPC_INVALID_PARAMS,
    errors.NotFound: JSONRPC_RESOURCE_NOT_FOUND,
    errors.AlreadyExists: JSONRPC_INVALID_PARAMS,
    errors.Unauthenticated: JSONRPC_UNAUTHENTICATED,
    errors.PermissionDenied: JSONRPC_UNAUTHORIZED,
    errors.PolicyDenied: JSONRPC_POLICY_DENIED,
    errors.KeyFrozen: JSONRPC_KEY_FROZEN,
    errors.NonceConflict: JSONRPC_NONCE_CONFLICT,
    errors.WrongState: JSONRPC_NOT_SIGNED,
    errors.FailedPrecondition: JSONRPC_TRANSACTION_REJECTED,
    errors.Aborted: JSONRPC_RESOURCE_UNAVAILABLE,
    errors.Unavailable: JSONRPC_RESOURCE_UNAVAILABLE,
    errors.ResourceExhausted: JSONRPC_LIMIT_EXCEEDED,
    errors.ConfigurationError: JSONRPC_TRANSACTION_REJECTED,
    errors.InternalError: JSONRPC_INTERNAL_ERROR,
}


def jsonrpc_error_for(error: BaseException) -> tuple[int, str]:
    """The JSON-RPC error code and the message a client may see for ``error``, by type as ``status_for``."""
    return _by_type(error, JSONRPC_CODE_BY_ERROR, JSONRPC_INTERNAL_ERROR)

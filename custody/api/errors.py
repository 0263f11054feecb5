"""The one table that maps custody's typed errors to gRPC status codes.

The mapping is by type, walking the class hierarchy from the most specific class, never by matching message
text. Anything not a CustodyError becomes INTERNAL with a correlation id; its details go to the log only.
"""

from __future__ import annotations

import logging
import uuid

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
    if isinstance(error, errors.CustodyError) and not isinstance(error, errors.InternalError):
        for cls in type(error).__mro__:
            code = STATUS_BY_ERROR.get(cls)
            if code is not None:
                return code, error.message
    correlation_id = uuid.uuid4().hex[:16]
    log.error("internal error, correlation id %s", correlation_id, exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error (correlation id {correlation_id}); see the daemon's log"

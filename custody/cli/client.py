"""The gRPC side of the command line: one mTLS channel per command, and gRPC errors as custody errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from custody.api._gen import custody_pb2_grpc
from custody.cli.errors import DaemonUnreachable
from custody.cli.options import ClientOptions
from custody.cli.profile import ClientProfile, find_profile_path, load_profile
from custody.client.transport import ERRORS_BY_STATUS, secure_channel
from custody.domain import errors

# Unary calls answer in milliseconds; the limit only keeps a stuck daemon from hanging a script forever.
UNARY_TIMEOUT_SECONDS = 60.0

# gRPC's own wording when no connection could be made at all (refused, unresolvable, TLS handshake failed);
# the daemon's UNAVAILABLE answers (HSM or database down) are sentences of ours and never start like this.
_TRANSPORT_FAILURE_MARKERS = (
    "failed to connect to all addresses",
    "dns resolution failed",
    "connections to all backends failing",
    "empty address list",
    "ssl handshake failed",
    "connection refused",
    "errors resolving",
)

# gRPC's words for a failed TLS handshake, whichever side refused the other's certificate.
_TLS_FAILURE_MARKERS = ("ssl", "tls", "handshake", "certificate")
# gRPC's words for an address that names no host (a typo in --server, an unknown name, a bad port).
_ADDRESS_FAILURE_MARKERS = (
    "dns resolution failed",
    "empty address list",
    "errors resolving",
    "lookup failed",
)

# The generated gRPC module has no type annotations; going through Any keeps the untyped constructor calls out
# of mypy's way without an ignore comment that would turn stale once typed stubs are generated.
_KEY_SERVICE_STUB: Any = custody_pb2_grpc.KeyServiceStub
_SIGNING_SERVICE_STUB: Any = custody_pb2_grpc.SigningServiceStub
_APPROVAL_SERVICE_STUB: Any = custody_pb2_grpc.ApprovalServiceStub
_POLICY_SERVICE_STUB: Any = custody_pb2_grpc.PolicyServiceStub
_AUDIT_SERVICE_STUB: Any = custody_pb2_grpc.AuditServiceStub

# What grpcio says for a method the server does not know, or whose servicer is still the generated stub; the
# daemon's own UNIMPLEMENTED answers are sentences and are shown as they are.
_GRPC_DEFAULT_UNIMPLEMENTED_DETAILS = frozenset({"Method not found!", "Method not implemented!"})


@dataclass(frozen=True)
class Connection:
    address: str
    profile: ClientProfile
    keys: custody_pb2_grpc.KeyServiceStub
    signing: custody_pb2_grpc.SigningServiceStub
    approvals: custody_pb2_grpc.ApprovalServiceStub
    policy: custody_pb2_grpc.PolicyServiceStub
    audit: custody_pb2_grpc.AuditServiceStub


@contextmanager
def connect(options: ClientOptions) -> Iterator[Connection]:
    """Open a channel as the options' profile says, and turn gRPC errors raised inside into custody errors."""
    profile = load_profile(find_profile_path(options.profile))
    address = options.server or profile.server
    channel = secure_channel(profile, address)
    try:
        yield Connection(
            address=address,
            profile=profile,
            keys=_KEY_SERVICE_STUB(channel),
            signing=_SIGNING_SERVICE_STUB(channel),
            approvals=_APPROVAL_SERVICE_STUB(channel),
            policy=_POLICY_SERVICE_STUB(channel),
            audit=_AUDIT_SERVICE_STUB(channel),
        )
    except grpc.RpcError as error:
        raise custody_error_from_rpc(error, address=address, profile=profile) from None
    finally:
        channel.close()


def custody_error_from_rpc(
    error: grpc.RpcError, *, address: str, profile: ClientProfile | None = None
) -> errors.CustodyError:
    """The custody error a failed call stands for, with a message that is one sentence."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or ""
    if code is grpc.StatusCode.UNAVAILABLE and _is_transport_failure(details):
        profile_hint = f" and that {profile.path} names the right address and certificates" if profile else ""
        return DaemonUnreachable(
            f"could not reach the custody daemon at {address} ({_transport_cause(details)});"
            f" check that `custody serve` is running there{profile_hint}."
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"the custody daemon at {address} did not answer in time.")
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return errors.CustodyError(
            details
            if details and details not in _GRPC_DEFAULT_UNIMPLEMENTED_DETAILS
            else f"the custody daemon at {address} does not offer this operation yet."
        )
    error_class = ERRORS_BY_STATUS.get(code, errors.CustodyError)
    return error_class(details or f"the custody daemon answered {code.name} without details.")


def _is_transport_failure(details: str) -> bool:
    lowered = details.lower()
    return any(marker in lowered for marker in _TRANSPORT_FAILURE_MARKERS)


def _transport_cause(details: str) -> str:
    """What gRPC's wording means for the user, in a few words: its raw text (addresses, TLS library errors,
    status names) repeats what the user knows or names internals they cannot act on."""
    lowered = details.lower()
    if any(marker in lowered for marker in _TLS_FAILURE_MARKERS):
        return (
            "the TLS handshake failed: the daemon's certificate is not signed by the profile's CA, or the"
            " daemon does not accept the profile's client certificate"
        )
    if "connection refused" in lowered:
        return "nothing accepts connections there"
    if any(marker in lowered for marker in _ADDRESS_FAILURE_MARKERS):
        return "the address does not resolve to a host"
    return "no connection could be made"

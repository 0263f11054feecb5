"""The gRPC channel to a custody daemon, as a profile describes it, and the daemon's status codes read back as
custody's typed errors. The command line (custody.cli.client) and the Python client share both."""

from __future__ import annotations

import grpc

from custody.client.profile import ClientProfile, read_profile_file
from custody.domain import errors

# Payloads are limited to 128 KiB and lists to 1000 entries, so 4 MiB leaves room without inviting abuse.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# The inverse of the daemon's error table: the status code says which kind of custody error the daemon raised,
# and its details are already the user-facing sentence.
ERRORS_BY_STATUS: dict[grpc.StatusCode, type[errors.CustodyError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInput,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.Aborted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
}


def secure_channel(profile: ClientProfile, address: str) -> grpc.Channel:
    """An mTLS channel to ``address`` with the profile's CA, client certificate and key."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_profile_file(profile, "ca_file", profile.ca_file),
        private_key=read_profile_file(profile, "key_file", profile.key_file),
        certificate_chain=read_profile_file(profile, "cert_file", profile.cert_file),
    )
    return grpc.secure_channel(
        address,
        credentials,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )

"""`custody health`: ask a daemon whether it serves, through the standard gRPC health service.

Container health checks, load balancers' probes and monitoring scripts branch on the exit code: 0 when the
daemon answers SERVING, 1 when it answers anything else (it runs, but its HSM or database is unusable, or it is
still waiting for its token), 4 when it cannot be reached at all. The call goes over the profile's mTLS
channel like every other command; the health service checks only that the client certificate comes from the
custody CA, so any profile will do, and a dedicated certificate without roles is the least-privileged choice.
"""

from __future__ import annotations

from typing import Any

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custody.cli.client import custody_error_from_rpc
from custody.cli.options import client_options, options_of
from custody.cli.output import emit_json
from custody.cli.profile import find_profile_path, load_profile
from custody.client.transport import secure_channel
from custody.domain.errors import NotFound
from custody.exit_codes import EXIT_ERROR, EXIT_OK

# A health check that takes longer than this is as good as failed: probes run every few seconds, and a
# container engine kills a check that hangs.
DEFAULT_TIMEOUT_SECONDS = 5.0

# The generated health stub has no type annotations; going through Any keeps the untyped constructor call out
# of mypy's way, as the client module does for custody's own stubs.
_HEALTH_STUB: Any = health_pb2_grpc.HealthStub


@click.command("health")
@client_options
@click.option(
    "--service",
    default="",
    metavar="NAME",
    help="A full service name, e.g. custody.v1.SigningService; the daemon as a whole when omitted.",
)
@click.option(
    "--timeout",
    "timeout_seconds",
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Give up (exit 4) when the daemon has not answered within this time.",
)
@click.pass_context
def health(context: click.Context, service: str, timeout_seconds: float) -> None:
    """Print SERVING or NOT_SERVING; exit 0 only when the daemon is SERVING, 4 when it cannot be reached."""
    options = options_of(context)
    profile = load_profile(find_profile_path(options.profile))
    address = options.server or profile.server
    with secure_channel(profile, address) as channel:
        try:
            response = _HEALTH_STUB(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_seconds
            )
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"the custody daemon at {address} reports no health status for the service {service!r}"
                ) from None
            raise custody_error_from_rpc(error, address=address, profile=profile) from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if options.json_output:
        emit_json({"address": address, "service": service, "status": status})
    else:
        click.echo(status)
    context.exit(EXIT_OK if response.status == health_pb2.HealthCheckResponse.SERVING else EXIT_ERROR)

"""`custody serve`: run the daemon in the foreground."""

from __future__ import annotations

import os
from pathlib import Path

import click

from custody.cli.errors import SERVE_EXIT_CODES_EPILOG


@click.command("serve", epilog=SERVE_EXIT_CODES_EPILOG)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The daemon's server.toml.",
)
@click.option(
    "--listen", metavar="HOST:PORT", help="Address of the gRPC listener, overriding the configuration's."
)
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="Address of the Prometheus metrics listener, overriding the configuration's [metrics] listen.",
)
@click.option(
    "--jsonrpc-listen",
    metavar="HOST:PORT",
    help="Address of the JSON-RPC endpoint, overriding the configuration's [jsonrpc] listen (and turning it on).",
)
@click.pass_context
def serve(
    context: click.Context,
    config_path: Path,
    listen: str | None,
    metrics_listen: str | None,
    jsonrpc_listen: str | None,
) -> None:
    """Run the custody daemon until it is stopped (SIGTERM or Ctrl-C).

    Under systemd (Type=notify) it reports READY once it serves and feeds the watchdog while it is alive;
    whether the HSM and the database are usable is what the gRPC health service reports.
    """
    # gRPC's core library logs in its own format on stderr (a failed bind, for one, comes before the daemon's
    # own sentence about it); the daemon reports what matters in its own words and logs. The core reads the
    # setting when gRPC is first imported, which on this path is below; an operator who wants the core's lines
    # sets GRPC_VERBOSITY (ERROR, INFO or DEBUG) themselves.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # Imported here so that client commands do not load the HSM, database and server machinery.
    from custody.bootstrap import serve as serve_daemon

    context.exit(serve_daemon(config_path, listen, metrics_listen, jsonrpc_listen))

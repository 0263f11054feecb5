"""`custody serve`: run the daemon in the foreground."""

from __future__ import annotations

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
@click.pass_context
def serve(context: click.Context, config_path: Path, listen: str | None, metrics_listen: str | None) -> None:
    """Run the custody daemon until it is stopped (SIGTERM or Ctrl-C).

    Under systemd (Type=notify) it reports READY once it serves and feeds the watchdog while it is alive;
    whether the HSM and the database are usable is what the gRPC health service reports.
    """
    # Imported here so that client commands do not load the HSM, database and server machinery.
    from custody.bootstrap import serve as serve_daemon

    context.exit(serve_daemon(config_path, listen, metrics_listen))

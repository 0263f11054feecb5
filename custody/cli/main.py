"""The `custody` command: entry point and the one place where errors become messages and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import grpc

from custody.cli.approve import approve, reject
from custody.cli.approver_key import approver_key_group
from custody.cli.audit import audit_group
from custody.cli.client import client_options, custody_error_from_rpc
from custody.cli.dev import dev_group
from custody.cli.errors import EXIT_CODES_EPILOG, exit_code_for
from custody.cli.health import health
from custody.cli.keys import keys_group
from custody.cli.policy import policy_group
from custody.cli.requests import requests_group
from custody.cli.serve import serve
from custody.cli.sign import sign_group
from custody.domain.errors import CustodyError
from custody.exit_codes import EXIT_INTERRUPTED, EXIT_OK


@click.group("custody", epilog=EXIT_CODES_EPILOG)
@client_options
def cli() -> None:
    """Key custody and signing: talk to a custody daemon, or run one.

    Every command accepts --profile FILE (or CUSTODY_PROFILE), --server HOST:PORT and --json, before or after
    the command name.
    """


cli.add_command(serve)
cli.add_command(dev_group)
cli.add_command(keys_group)
cli.add_command(sign_group)
cli.add_command(requests_group)
cli.add_command(approve)
cli.add_command(reject)
cli.add_command(approver_key_group)
cli.add_command(policy_group)
cli.add_command(audit_group)
cli.add_command(health)


def run(arguments: Sequence[str] | None = None) -> int:
    """Run the command line with ``arguments``; return the exit code. Expected errors print one sentence."""
    try:
        result = cli.main(
            args=list(arguments) if arguments is not None else None,
            prog_name="custody",
            standalone_mode=False,
        )
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except CustodyError as error:
        return _report(error)
    except grpc.RpcError as error:
        # Calls are made inside connect(), which translates their errors; this covers any made elsewhere.
        return _report(custody_error_from_rpc(error, address="the configured address"))
    # In non-standalone mode click returns the code of ctx.exit(...) calls, and a command's return value
    # (None) otherwise.
    return result if isinstance(result, int) else EXIT_OK


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


def _report(error: CustodyError) -> int:
    click.echo(f"error: {_sentence(error.message)}", err=True)
    return exit_code_for(error)


def _sentence(message: str) -> str:
    message = message.strip()
    return message if message.endswith((".", "!", "?")) else message + "."

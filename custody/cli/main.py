"""The `custody` command: entry point and the one place where errors become messages and exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import click
import grpc

from custody.cli.approve import approve, reject
from custody.cli.approver_key import approver_key_group
from custody.cli.audit import audit_group
from custody.cli.client import client_options, custody_error_from_rpc
from custody.cli.dev import dev_group
from custody.cli.errors import EXIT_CODES_EPILOG, error_code_for, exit_code_for
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
    """Run the command line with ``arguments``; return the exit code. Expected errors print one sentence,
    prefixed "error: " on stderr, or as one JSON object on stdout when --json was given."""
    argument_list = list(arguments) if arguments is not None else sys.argv[1:]
    json_errors = _asks_for_json(argument_list)
    try:
        result = cli.main(args=argument_list, prog_name="custody", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        error.show()
        return error.exit_code
    except click.UsageError as error:
        if not json_errors and error.ctx is not None:
            # The usage line and the hint help a person; the error itself is spelled as every other one is.
            click.echo(error.ctx.get_usage(), err=True)
            click.echo(f"Try '{error.ctx.command_path} {error.ctx.help_option_names[0]}' for help.", err=True)
        return _report("usage", error.format_message(), error.exit_code, json_errors=json_errors)
    except click.ClickException as error:
        return _report("error", error.format_message(), error.exit_code, json_errors=json_errors)
    except click.Abort:
        return _report("aborted", "aborted; nothing was done", EXIT_INTERRUPTED, json_errors=json_errors)
    except KeyboardInterrupt:
        return _report("interrupted", "interrupted", EXIT_INTERRUPTED, json_errors=json_errors)
    except CustodyError as error:
        return _report_custody_error(error, json_errors=json_errors)
    except grpc.RpcError as error:
        # Calls are made inside connect(), which translates their errors; this covers any made elsewhere.
        translated = custody_error_from_rpc(error, address="the configured address")
        return _report_custody_error(translated, json_errors=json_errors)
    # In non-standalone mode click returns the code of ctx.exit(...) calls, and a command's return value
    # (None) otherwise.
    return result if isinstance(result, int) else EXIT_OK


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


def _asks_for_json(arguments: list[str]) -> bool:
    """Whether --json is among the options; read from the raw arguments because an error can come before (or
    instead of) click parsing them. Arguments after "--" are values, not options."""
    options = arguments[: arguments.index("--")] if "--" in arguments else arguments
    return "--json" in options


def _report_custody_error(error: CustodyError, *, json_errors: bool) -> int:
    return _report(error_code_for(error), error.message, exit_code_for(error), json_errors=json_errors)


def _report(code: str, message: str, exit_code: int, *, json_errors: bool) -> int:
    """Print one error, on stdout as ``{"error": {"code", "message"}}`` with --json, else on stderr."""
    if json_errors:
        click.echo(json.dumps({"error": {"code": code, "message": _sentence(message)}}, indent=2))
    else:
        click.echo(f"error: {_sentence(message)}", err=True)
    return exit_code


def _sentence(message: str) -> str:
    message = message.strip()
    return message if message.endswith((".", "!", "?")) else message + "."

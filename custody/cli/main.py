"""The `custody` command: entry point and the one place where errors become messages and exit codes.

Start-up is kept short because approvers and scripts run many short commands: this module imports only click
and the error types, and each subcommand's module (with gRPC, the generated stubs, eth-account or
cryptography, as it needs them) is imported when that command runs. `custody --help` lists the commands from
a table of names and one-line helps; a test keeps the table equal to the commands themselves.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import click

from custody.cli.errors import EXIT_CODES_EPILOG, error_code_for, exit_code_for
from custody.cli.options import client_options
from custody.domain.errors import CustodyError
from custody.exit_codes import EXIT_INTERRUPTED, EXIT_OK


@dataclass(frozen=True)
class CommandEntry:
    """Where a top-level command lives and the one line `custody --help` shows for it."""

    module: str
    attribute: str
    short_help: str


# The top-level commands, in the order `custody --help` lists them (alphabetical, as click's own listing is).
COMMANDS: dict[str, CommandEntry] = {
    "approve": CommandEntry(
        "custody.cli.approve",
        "approve",
        "Review a request and sign your approval of it with your approver key.",
    ),
    "approver-key": CommandEntry(
        "custody.cli.approver_key",
        "approver_key_group",
        "Your approver key: create it where your profile says, or show its public key.",
    ),
    "audit": CommandEntry(
        "custody.cli.audit", "audit_group", "The tamper-evident audit log (auditor and admin roles)."
    ),
    "dev": CommandEntry("custody.cli.dev", "dev_group", "Local development helpers."),
    "health": CommandEntry(
        "custody.cli.health",
        "health",
        "Print SERVING or NOT_SERVING; exit 0 only when the daemon is SERVING, 4 when it cannot be reached.",
    ),
    "keys": CommandEntry("custody.cli.keys", "keys_group", "Signing keys held in the HSM."),
    "policy": CommandEntry(
        "custody.cli.policy", "policy_group", "The signing policy: rules, approvers and quorums."
    ),
    "reject": CommandEntry(
        "custody.cli.approve",
        "reject",
        "Review a request and sign your rejection of it; one rejection ends the request REJECTED.",
    ),
    "requests": CommandEntry("custody.cli.requests", "requests_group", "Signing requests and their state."),
    "serve": CommandEntry(
        "custody.cli.serve", "serve", "Run the custody daemon until it is stopped (SIGTERM or Ctrl-C)."
    ),
    "sign": CommandEntry(
        "custody.cli.sign", "sign_group", "Ask the daemon for a signature (the policy decides)."
    ),
}


class LazyCommandGroup(click.Group):
    """A group whose subcommands are imported from COMMANDS when one is invoked (or its help is asked for)."""

    def list_commands(self, context: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry.module), entry.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry.module}.{entry.attribute} is not a click command")
        return command

    def format_commands(self, context: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing asks every command for its help, which would import them all.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name].short_help) for name in self.list_commands(context)])


@click.group("custody", cls=LazyCommandGroup, epilog=EXIT_CODES_EPILOG)
@client_options
def cli() -> None:
    """Key custody and signing: talk to a custody daemon, or run one.

    Every command that talks to the daemon accepts --profile FILE (or CUSTODY_PROFILE), --server HOST:PORT and
    --json, before or after the command name.
    """


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
    except Exception as error:
        # Calls are made inside connect(), which translates their errors; this covers any made elsewhere. gRPC
        # is imported only by the commands that call the daemon, so an error of its kind means it is loaded.
        grpc = sys.modules.get("grpc")
        if grpc is None or not isinstance(error, grpc.RpcError):
            raise
        from custody.cli.client import custody_error_from_rpc

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

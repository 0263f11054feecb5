"""The options commands share (--profile, --server, --json), kept apart from the gRPC client so that a command
declares them without importing gRPC.

People write both `custody --json keys list` and `custody keys list --json`; the values land in one
ClientOptions object on the root context, a subcommand's own value winning over the group's. A command
declares only the options that do something for it: those that call the daemon take all three, those that
work locally (`dev init`, `approver-key create`) only the ones they use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import click

from custody.cli.profile import PROFILE_ENVIRONMENT_VARIABLE

F = TypeVar("F", bound=Any)


@dataclass
class ClientOptions:
    """The shared options, collected from the top-level group and the subcommand."""

    profile: str | None = None
    server: str | None = None
    json_output: bool = False


def client_options(command: F) -> F:
    """--profile, --server and --json: for the commands that call the daemon (and the groups holding them)."""
    return profile_option(server_option(json_option(command)))


def json_option(command: F) -> F:
    """--json: print machine-readable JSON (and errors as one JSON object)."""
    return click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        callback=_remember_option,
        help="Print machine-readable JSON.",
    )(command)


def server_option(command: F) -> F:
    """--server: the daemon's address, overriding the profile's."""
    return click.option(
        "--server",
        metavar="HOST:PORT",
        expose_value=False,
        callback=_remember_option,
        help="Daemon address, overriding the profile's.",
    )(command)


def profile_option(command: F) -> F:
    """--profile: the client profile (TOML) naming the daemon, the certificates and the approver key."""
    return click.option(
        "--profile",
        metavar="FILE",
        expose_value=False,
        callback=_remember_option,
        help=f"Client profile (TOML); defaults to ${PROFILE_ENVIRONMENT_VARIABLE}.",
    )(command)


def options_of(context: click.Context) -> ClientOptions:
    """The shared options collected for the command being run."""
    return context.find_root().ensure_object(ClientOptions)


def _remember_option(context: click.Context, parameter: click.Parameter, value: object) -> None:
    options = options_of(context)
    # Callbacks run for every declared option, given or not; only a given value may override one given
    # earlier on the command line.
    if parameter.name == "json_output":
        options.json_output = options.json_output or bool(value)
    elif value is not None and parameter.name in ("profile", "server"):
        setattr(options, parameter.name, value)

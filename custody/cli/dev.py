"""`custody dev ...`: a local development environment."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from custody.app.dev_env import DevEnvironment, init_dev_environment
from custody.cli.client import client_options, options_of
from custody.cli.output import emit_json


@click.group("dev")
@client_options
def dev_group() -> None:
    """Local development helpers."""


@dev_group.command("init")
@client_options
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--database",
    "database_url",
    metavar="URL",
    help="Keep state in this database (postgresql://...) instead of a SQLite file in DIRECTORY.",
)
@click.pass_context
def dev_init(context: click.Context, directory: Path, database_url: str | None) -> None:
    """Build a complete local environment in DIRECTORY: SoftHSM2 token, PKI, approver keys, configuration,
    policy and client profiles."""
    environment = init_dev_environment(directory, database_url)
    if options_of(context).json_output:
        emit_json(_environment_json(environment))
    else:
        click.echo(_next_steps(environment))


def _environment_json(environment: DevEnvironment) -> dict[str, object]:
    return {
        "directory": str(environment.directory),
        "server_config": str(environment.server_config),
        "policy_file": str(environment.policy_file),
        "database": environment.redacted_database,
        "hsm_pin_file": str(environment.hsm_pin_file),
        "softhsm_config": str(environment.softhsm_config),
        "ca_file": str(environment.ca_file),
        "profiles": {name: str(path) for name, path in environment.profiles.items()},
        "approver_keys": {name: str(path) for name, path in environment.approver_keys.items()},
        "examples": {
            "transaction": str(environment.example_transaction),
            "typed_data": str(environment.example_typed_data),
        },
    }


def _next_steps(environment: DevEnvironment) -> str:
    def quoted(path: Path) -> str:
        return shlex.quote(str(path))

    admin = quoted(environment.profiles["admin"])
    backend = quoted(environment.profiles["backend"])
    return f"""\
Created a custody development environment in {environment.directory}
  server configuration  {environment.server_config}
  policy                {environment.policy_file}
  database              {environment.redacted_database}
  HSM                   SoftHSM2 token "custody-dev" ({environment.softhsm_config}); PIN in {environment.hsm_pin_file}
  client profiles       {', '.join(sorted(environment.profiles))} in {environment.profiles["admin"].parent}
  approver keys         {', '.join(sorted(environment.approver_keys))} in {environment.approver_keys["alice"].parent}

Next steps (the daemon runs in the foreground, so use a second terminal for the rest):
  custody serve --config {quoted(environment.server_config)}
  custody --profile {admin} keys create --label ops
  custody --profile {backend} sign tx --key ops --file {quoted(environment.example_transaction)}
  custody --profile {backend} sign typed-data --key ops --file {quoted(environment.example_typed_data)}
  custody --profile {backend} sign message --key ops --text "hello"
  custody --profile {admin} requests list

{environment.example_transaction.name} is an EIP-1559 transfer of 0.01 ether on Sepolia (chain id 11155111), which
the development policy lets key "ops" sign at once; {environment.example_typed_data.name} is the EIP-712 "Mail" example.
Everything here is for development only: the keys and PINs sit unencrypted or next to their passphrases."""

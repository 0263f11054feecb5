"""`custody dev ...`: a local development environment."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from custody.cli.client import client_options, options_of
from custody.cli.dev_env import (
    DEFAULT_LISTEN,
    METRICS_PORT_OFFSET,
    SOFTHSM_LABEL,
    DevEnvironment,
    init_dev_environment,
)
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
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help=f"The daemon's gRPC address, which the profiles connect to (default {DEFAULT_LISTEN}); the metrics"
    f" address, commented out in server.toml, is PORT+{METRICS_PORT_OFFSET}.",
)
@click.pass_context
def dev_init(context: click.Context, directory: Path, database_url: str | None, listen: str | None) -> None:
    """Build a complete local environment in DIRECTORY: SoftHSM2 token, PKI, approver keys, configuration,
    policy and client profiles."""
    environment = init_dev_environment(directory, database_url, listen)
    if options_of(context).json_output:
        emit_json(_environment_json(environment))
    else:
        click.echo(_next_steps(environment))


def _environment_json(environment: DevEnvironment) -> dict[str, object]:
    return {
        "directory": str(environment.directory),
        "listen": environment.listen,
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
    alice = quoted(environment.profiles["alice"])
    bob = quoted(environment.profiles["bob"])
    transaction = environment.example_transaction
    typed_data = environment.example_typed_data
    lines = [
        f"Created a custody development environment in {environment.directory}",
        f"  server configuration  {environment.server_config} (listens on {environment.listen})",
        f"  policy                {environment.policy_file}",
        f"  database              {environment.redacted_database}",
        f'  HSM                   SoftHSM2 token "{SOFTHSM_LABEL}" ({environment.softhsm_config})',
        f"  HSM PIN               in {environment.hsm_pin_file}",
        f"  client profiles       {', '.join(environment.profiles)}"
        f" in {environment.profiles['admin'].parent}",
        f"  approver keys         {', '.join(environment.approver_keys)}"
        f" in {environment.approver_keys['alice'].parent}",
        "",
        "Next steps (the daemon runs in the foreground, so use a second terminal for the rest):",
        f"  custody serve --config {quoted(environment.server_config)}",
        f"  custody --profile {admin} keys create --label ops",
        f"  custody --profile {backend} sign tx --key ops --file {quoted(transaction)}",
        f"  custody --profile {backend} sign typed-data --key ops --file {quoted(typed_data)}",
        f'  custody --profile {backend} sign message --key ops --text "hello"',
        f"  custody --profile {admin} requests list",
        "",
        'The treasury flow: key "treasury" signs only after 2 of alice, bob and carol approve. The sign command',
        "prints the request id; each approver reviews the decoded request and signs an approval statement:",
        f"  custody --profile {admin} keys create --label treasury",
        f"  custody --profile {backend} sign tx --key treasury --file {quoted(transaction)}",
        f"  custody --profile {alice} approve REQUEST_ID",
        f"  custody --profile {bob} approve REQUEST_ID",
        f"  custody --profile {backend} requests show REQUEST_ID",
        "",
        f"{transaction.name} is an EIP-1559 transfer of 0.01 ether on Sepolia (chain id 11155111), which the",
        f'development policy lets key "ops" sign at once; {typed_data.name} is the EIP-712 "Mail" example.',
        "dave is the security approver who may freeze a key (keys freeze LABEL); unfreezing and policy changes",
        "(policy propose FILE) need 2 of alice, bob, carol and dave.",
        "This environment is for development only: its keys and PINs lie in plain files next to each other.",
    ]
    return "\n".join(lines)

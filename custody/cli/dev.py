"""`custody dev ...`: a local development environment."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from custody.cli.dev_env import (
    DEFAULT_LISTEN,
    METRICS_PORT_OFFSET,
    SOFTHSM_LABEL,
    AddedIdentity,
    DevEnvironment,
    add_dev_identity,
    init_dev_environment,
)
from custody.cli.options import json_option, options_of
from custody.cli.output import emit_json
from custody.domain.errors import InvalidInput
from custody.domain.principals import Role


@click.group("dev")
@json_option
def dev_group() -> None:
    """Local development helpers."""


@dev_group.command("init")
@json_option
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
@click.option(
    "--daemon-starts-next",
    is_flag=True,
    hidden=True,
    help="The caller starts the daemon right after (`make run` does), so the next steps leave out `custody serve`.",
)
@click.pass_context
def dev_init(
    context: click.Context,
    directory: Path,
    database_url: str | None,
    listen: str | None,
    daemon_starts_next: bool,
) -> None:
    """Build a complete local environment in DIRECTORY: SoftHSM2 token, PKI, approver keys, configuration,
    policy and client profiles."""
    environment = init_dev_environment(directory, database_url, listen)
    if options_of(context).json_output:
        emit_json(_environment_json(environment))
    else:
        click.echo(_next_steps(environment, daemon_starts_next=daemon_starts_next))


@dev_group.command("add-identity")
@json_option
@click.argument("name")
@click.option(
    "--roles",
    default="requester",
    show_default=True,
    metavar="R,...",
    help="Comma-separated roles to suggest for server.toml: " + ", ".join(role.value for role in Role) + ".",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=".",
    show_default=True,
    help="The development environment made by `custody dev init`.",
)
@click.pass_context
def dev_add_identity(context: click.Context, name: str, roles: str, directory: Path) -> None:
    """Issue a client certificate for NAME from the environment's CA and write profiles/NAME.toml.

    Nothing is granted: the command prints what to add to server.toml's principals (and, for an approver,
    how to create the approver key and add it to the policy).
    """
    added = add_dev_identity(directory, name, _parse_roles(roles))
    if options_of(context).json_output:
        emit_json(
            {
                "name": added.name,
                "roles": [role.value for role in added.roles],
                "certificate": str(added.certificate),
                "private_key": str(added.private_key),
                "profile": str(added.profile),
                "approver_key_file": None
                if added.approver_key_file is None
                else str(added.approver_key_file),
                "token_file": str(added.token_file),
                "token_hash": added.token_hash,
            }
        )
    else:
        click.echo(_identity_next_steps(added, directory))


def _parse_roles(text: str) -> tuple[Role, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {role.value: role for role in Role}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InvalidInput(
            f"unknown role(s) {', '.join(unknown) or '(none given)'}; the roles are {', '.join(known)}",
            field="--roles",
        )
    return tuple(dict.fromkeys(known[name] for name in names))


def _identity_next_steps(added: AddedIdentity, directory: Path) -> str:
    profile = shlex.quote(str(added.profile))
    roles = ", ".join(f'"{role.value}"' for role in added.roles)
    lines = [
        f"Issued a client certificate for {added.name!r} from the development CA",
        f"  certificate  {added.certificate}",
        f"  private key  {added.private_key}",
        f"  profile      {added.profile}",
        "",
        f"The daemon knows {added.name} once {directory / 'server.toml'} names it (then restart the daemon):",
        "",
        f"[principals.{added.name}]",
        f"roles = [{roles}]",
    ]
    if Role.REQUESTER in added.roles:
        lines.append('keys = ["ops"]                # the key labels it may request signatures with')
    lines += [
        "",
        f"Its bearer token for the JSON-RPC endpoint is in {added.token_file}; the endpoint accepts it once",
        "server.toml's [jsonrpc.tokens] table lists its hash:",
        f'{added.name} = "{added.token_hash}"',
    ]
    if added.approver_key_file is not None:
        admin = shlex.quote(str(directory / "profiles" / "admin.toml"))
        lines += [
            "",
            f"To approve, {added.name} needs an approver key in the policy:",
            f"  custody --profile {profile} approver-key create      # asks for a passphrase twice",
            f"  custody --profile {admin} policy show > policy-next.toml",
            f"  # add the [approvers.{added.name}] table it printed, with its groups; raise version by one",
            f"  custody --profile {admin} policy propose policy-next.toml",
            "The proposal takes effect once the admin quorum approves it (custody approve REQUEST_ID).",
        ]
    return "\n".join(lines)


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


def _next_steps(environment: DevEnvironment, *, daemon_starts_next: bool) -> str:
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
        f"  JSON-RPC endpoint     https://{environment.jsonrpc_listen} (TLS with {environment.ca_file});"
        f" backend's bearer token in {environment.backend_token}",
        "",
        *(
            ["Next steps, in a second terminal once the daemon below says it is listening:"]
            if daemon_starts_next
            else [
                "Next steps (the daemon runs in the foreground, so use a second terminal for the rest):",
                f"  custody serve --config {quoted(environment.server_config)}",
            ]
        ),
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

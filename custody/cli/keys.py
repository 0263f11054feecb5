"""`custody keys ...`: create, list, show, freeze and unfreeze signing keys."""

from __future__ import annotations

import click

from custody.api._gen import custody_pb2
from custody.cli.client import UNARY_TIMEOUT_SECONDS, connect
from custody.cli.options import client_options, options_of
from custody.cli.output import (
    emit_json,
    key_text,
    key_to_json,
    keys_table,
    quorum_text,
    request_text,
    request_to_json,
)


@click.group("keys")
@client_options
def keys_group() -> None:
    """Signing keys held in the HSM."""


@keys_group.command("create")
@client_options
@click.option("--label", required=True, help="Label of the new key, e.g. ops or treasury.")
@click.pass_context
def create_key(context: click.Context, label: str) -> None:
    """Generate a new secp256k1 key inside the HSM (admin)."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.keys.CreateKey(
            custody_pb2.CreateKeyRequest(label=label), timeout=UNARY_TIMEOUT_SECONDS
        )
    _print_key(response.key, json_output=options.json_output)


@keys_group.command("list")
@client_options
@click.pass_context
def list_keys(context: click.Context) -> None:
    """List every key."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.keys.ListKeys(custody_pb2.ListKeysRequest(), timeout=UNARY_TIMEOUT_SECONDS)
    if options.json_output:
        emit_json([key_to_json(key) for key in response.keys])
    else:
        click.echo(keys_table(response.keys))


@keys_group.command("show")
@client_options
@click.argument("label")
@click.pass_context
def show_key(context: click.Context, label: str) -> None:
    """Show one key: address, state, public key."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.keys.GetKey(
            custody_pb2.GetKeyRequest(label=label), timeout=UNARY_TIMEOUT_SECONDS
        )
    _print_key(response.key, json_output=options.json_output)


@keys_group.command("freeze")
@client_options
@click.argument("label")
@click.option("--reason", default="", help="Why the key is frozen, for the audit log.")
@click.pass_context
def freeze_key(context: click.Context, label: str, reason: str) -> None:
    """Freeze a key at once: it signs nothing, even with approvals complete, until unfrozen (security)."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.keys.FreezeKey(
            custody_pb2.FreezeKeyRequest(label=label, reason=reason), timeout=UNARY_TIMEOUT_SECONDS
        )
    _print_key(response.key, json_output=options.json_output)


@keys_group.command("unfreeze")
@client_options
@click.argument("label")
@click.option("--reason", default="", help="Why the key may sign again, for the approvers and the audit log.")
@click.pass_context
def unfreeze_key(context: click.Context, label: str, reason: str) -> None:
    """Propose to unfreeze a frozen key; it signs again once the admin quorum approves the request this makes."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.keys.UnfreezeKey(
            custody_pb2.UnfreezeKeyRequest(label=label, reason=reason), timeout=UNARY_TIMEOUT_SECONDS
        )
    request = response.request
    if options.json_output:
        emit_json(request_to_json(request))
        return
    click.echo(request_text(request))
    click.echo(
        f"\nKey {label} stays frozen until {quorum_text(request.decision) or 'the admin quorum'} approve"
        f" request {request.request_id} (custody approve {request.request_id})."
    )


def _print_key(key: custody_pb2.Key, *, json_output: bool) -> None:
    if json_output:
        emit_json(key_to_json(key))
    else:
        click.echo(key_text(key))

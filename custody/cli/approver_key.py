"""`custody approver-key create` and `custody approver-key show`: an approver's own Ed25519 key.

An approver signs approval statements with a key only they hold: an encrypted PKCS#8 file, or a key inside
their own PKCS#11 token. The profile says which (see custody.cli.profile). `create` makes that key where the
profile points and prints its public key in the form the policy's `[approvers.ID]` table takes; the policy
administrators add it with `custody policy propose`, and the admin quorum approves the change. `show` unlocks
the key the profile names and prints its public key, so an approver can check that what they hold is what the
policy lists. Neither command talks to the daemon, and neither prints a passphrase, PIN or private key.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from custody.approver_keys import read_secret
from custody.cli.approve import (
    PASSPHRASE_ENVIRONMENT_VARIABLE,
    approver_key_kind,
    load_approver_signer,
    profile_identity,
    secret_from_profile,
    token_pin,
    token_settings,
)
from custody.cli.options import json_option, options_of, profile_option
from custody.cli.output import emit_json, mapping_text
from custody.cli.profile import ClientProfile, find_profile_path, load_profile
from custody.domain.errors import InvalidInput


@click.group("approver-key")
def approver_key_group() -> None:
    """Your approver key: create it where your profile says, or show its public key."""


@approver_key_group.command("create")
@profile_option
@json_option
@click.pass_context
def create(context: click.Context) -> None:
    """Create the approver key your profile names and print its public key for the policy.

    With approver_key_file: a new Ed25519 key in that file, encrypted with your passphrase (an existing file is
    never overwritten). With approver_pkcs11_module, approver_token_label and approver_key_label: a new Ed25519
    key pair in your token, the private key sensitive and not extractable.
    """
    options = options_of(context)
    profile = load_profile(find_profile_path(options.profile))
    approver = profile_identity(profile)
    key_file = profile.approver_key_file
    if approver_key_kind(profile) == "file" and key_file is not None:
        from custody.approver_keys.pkcs8_file import check_new_passphrase, generate_encrypted_key_file

        passphrase = _new_passphrase(profile, key_file)
        check_new_passphrase(passphrase, approver)
        public_key = generate_encrypted_key_file(key_file, passphrase)
    else:
        # Imported here so that approvers with a key file never load a PKCS#11 library.
        from custody.approver_keys.pkcs11_token import generate_token_key

        module, token_label, key_label = token_settings(profile)
        public_key = generate_token_key(module, token_label, key_label, token_pin(profile))
    _print_public_key(profile, approver, public_key, json_output=options.json_output, created=True)


@approver_key_group.command("show")
@profile_option
@json_option
@click.pass_context
def show(context: click.Context) -> None:
    """Unlock the approver key your profile names and print its public key (compare it with `policy show`)."""
    options = options_of(context)
    profile = load_profile(find_profile_path(options.profile))
    approver = profile_identity(profile)
    with contextlib.ExitStack() as cleanup:
        signer = load_approver_signer(profile)
        # A token signer holds a logged-in session until it is closed; a key-file signer needs no closing.
        if isinstance(signer, contextlib.AbstractContextManager):
            cleanup.enter_context(signer)
        public_key = signer.public_key()
    _print_public_key(profile, approver, public_key, json_output=options.json_output, created=False)


def _new_passphrase(profile: ClientProfile, key_file: Path) -> bytes:
    """The passphrase for a new key file: from the profile's file or the environment, as when signing, else
    typed twice, because a mistyped passphrase on a new key would lock its owner out for good."""
    if profile.approver_passphrase_file is not None or PASSPHRASE_ENVIRONMENT_VARIABLE in os.environ:
        return secret_from_profile(profile.approver_passphrase_file, PASSPHRASE_ENVIRONMENT_VARIABLE, "")
    first = read_secret(
        file=None, env=None, prompt=f"New passphrase for approver key {os.path.normpath(key_file)}: "
    )
    second = read_secret(file=None, env=None, prompt="The same passphrase again: ")
    if first != second:
        raise InvalidInput("the two passphrases typed differ; no key was created", field="passphrase")
    return first


def _stored_in(profile: ClientProfile) -> str:
    if approver_key_kind(profile) == "file":
        # The profile joins its relative paths onto its own folder; "profiles/../approvers/k" reads better as
        # "approvers/k".
        return f"file {os.path.normpath(str(profile.approver_key_file))}"
    _, token_label, key_label = token_settings(profile)
    return f"token {token_label!r}, key {key_label!r}"


def _print_public_key(
    profile: ClientProfile, approver: str, public_key: bytes, *, json_output: bool, created: bool
) -> None:
    stored_in = _stored_in(profile)
    if json_output:
        emit_json({"approver": approver, "public_key": public_key.hex(), "stored_in": stored_in})
        return
    click.echo(mapping_text({"approver": approver, "public key": public_key.hex(), "stored in": stored_in}))
    if created:
        click.echo(
            "\nGive the public key to your policy administrators. The next policy they propose names you as\n\n"
            f"[approvers.{approver}]\n"
            f'public_key = "{public_key.hex()}"\n'
            'groups = ["..."]\n\n'
            "and once the admin quorum has approved that policy, your approvals count."
        )

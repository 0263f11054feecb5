"""`custody approve ID` and `custody reject ID --reason TEXT`: review a request, then sign a verdict on it.

The flow: fetch the request; recompute its digest and payload hash from the payload and refuse if the daemon's
differ; show the payload in full and what it does (its intent tree, decoded here from the same bytes); ask for
confirmation (unless --yes); build the approval statement from the recomputed values; sign it with the approver
key the profile names; send it. Nothing is signed before the approver has seen the review and said yes, and no
secret is ever printed. Nothing on the review is abbreviated: a review too long for one screen is only
approved with --full, by which the approver says they read all of it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click
import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.api._gen import custody_pb2
from custody.approver_keys import ApproverSigner, read_secret
from custody.cli.client import UNARY_TIMEOUT_SECONDS, Connection, connect
from custody.cli.errors import NotConfirmed
from custody.cli.options import client_options, options_of
from custody.cli.output import flag_words, payload_kind_name, request_state_name
from custody.cli.profile import ClientProfile, find_profile_path, read_profile_file
from custody.cli.requests import print_request
from custody.cli.review import (
    MAX_SCREEN_ROWS,
    RecomputedHashes,
    check_server_hashes,
    domain_request,
    recompute_hashes,
    review_text,
    screen_rows,
    too_long_to_confirm,
)
from custody.domain.approvals import ApprovalStatement
from custody.domain.errors import (
    AlreadyExists,
    ConfigurationError,
    FailedPrecondition,
    InternalError,
    PermissionDenied,
)
from custody.domain.intents import all_flags
from custody.domain.requests import Verdict
from custody.tls.certificates import certificate_identity

# The names of the environment variables that may hold the secrets, not secrets themselves.
PASSPHRASE_ENVIRONMENT_VARIABLE = "CUSTODY_APPROVER_PASSPHRASE"  # noqa: S105
PIN_ENVIRONMENT_VARIABLE = "CUSTODY_APPROVER_PIN"
DEFAULT_STATEMENT_LIFETIME_SECONDS = 600
# The daemon refuses statements good for longer than a day (custody.domain.approvals).
MAX_STATEMENT_LIFETIME_SECONDS = 24 * 60 * 60

_expires_in_option = click.option(
    "--expires-in",
    "expires_in",
    type=click.IntRange(1, MAX_STATEMENT_LIFETIME_SECONDS),
    default=DEFAULT_STATEMENT_LIFETIME_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="How long the signed statement stays valid (at most 86400).",
)
_yes_option = click.option(
    "--yes", "assume_yes", is_flag=True, help="Do not ask for confirmation (the review is still printed)."
)
_full_option = click.option(
    "--full",
    is_flag=True,
    help=f"Approve even when the review is longer than {MAX_SCREEN_ROWS} lines (it is always printed in full).",
)


@dataclass(frozen=True)
class SignedVerdict:
    statement: bytes
    signature: bytes


@click.command("approve")
@client_options
@click.argument("request_id")
@_yes_option
@_full_option
@_expires_in_option
@click.pass_context
def approve(context: click.Context, request_id: str, assume_yes: bool, full: bool, expires_in: int) -> None:
    """Review a request and sign your approval of it with your approver key."""
    _give_verdict(
        context, request_id, Verdict.APPROVE, "", assume_yes=assume_yes, full=full, expires_in=expires_in
    )


@click.command("reject")
@client_options
@click.argument("request_id")
@click.option("--reason", required=True, help="Why you reject it, for the requester and the audit log.")
@_yes_option
@_expires_in_option
@click.pass_context
def reject(context: click.Context, request_id: str, reason: str, assume_yes: bool, expires_in: int) -> None:
    """Review a request and sign your rejection of it; one rejection ends the request REJECTED."""
    if not reason.strip():
        raise click.BadParameter("say why you reject the request.", param_hint="--reason")
    # A rejection signs nothing but the verdict, so a long review does not need --full to be rejected.
    _give_verdict(
        context, request_id, Verdict.REJECT, reason, assume_yes=assume_yes, full=True, expires_in=expires_in
    )


def _give_verdict(
    context: click.Context,
    request_id: str,
    verdict: Verdict,
    reason: str,
    *,
    assume_yes: bool,
    full: bool,
    expires_in: int,
) -> None:
    options = options_of(context)
    interactive = sys.stdin.isatty()
    # A missing profile is reported first: with --yes added, as the next refusal suggests, it would fail anyway.
    find_profile_path(options.profile)
    # Refused before anything is fetched: without a terminal to answer on, the summary would go unread.
    if not assume_yes and not interactive:
        raise NotConfirmed(_cannot_ask_message(request_id, verdict, reason))
    with connect(options) as connection:
        request = connection.signing.GetRequest(
            custody_pb2.GetRequestRequest(request_id=request_id), timeout=UNARY_TIMEOUT_SECONDS
        ).request
        active_policy = (
            _active_policy_document(connection)
            if payload_kind_name(request.kind) == "POLICY_CHANGE"
            else None
        )
        signed = review_and_sign(
            request,
            verdict=verdict,
            approver=profile_identity(connection.profile),
            signer_factory=lambda: load_approver_signer(connection.profile),
            assume_yes=assume_yes,
            interactive=interactive,
            expires_in=expires_in,
            full=full,
            active_policy=active_policy,
            # With --json, stdout carries only the JSON answer; the summary and the question go to stderr.
            to_stderr=options.json_output,
        )
        if verdict is Verdict.APPROVE:
            answer = connection.approvals.Approve(
                custody_pb2.ApproveRequest(
                    request_id=request_id, statement=signed.statement, signature=signed.signature
                ),
                timeout=UNARY_TIMEOUT_SECONDS,
            ).request
        else:
            answer = connection.approvals.Reject(
                custody_pb2.RejectRequest(
                    request_id=request_id,
                    statement=signed.statement,
                    signature=signed.signature,
                    reason=reason,
                ),
                timeout=UNARY_TIMEOUT_SECONDS,
            ).request
    if not options.json_output:
        click.echo("")
    print_request(answer, json_output=options.json_output)


def review_and_sign(
    request: custody_pb2.SigningRequest,
    *,
    verdict: Verdict,
    approver: str,
    signer_factory: Callable[[], ApproverSigner],
    assume_yes: bool,
    interactive: bool,
    expires_in: int,
    full: bool = False,
    active_policy: str | None = None,
    to_stderr: bool = False,
    now: Callable[[], float] = time.time,
) -> SignedVerdict:
    """Check, show, confirm and sign: the approver's side of a verdict, without the network.

    Raises ServerDisagrees when the daemon's digest or payload hash is not the payload's, FailedPrecondition
    when the request no longer waits for approvals, PermissionDenied for the approver's own request,
    AlreadyExists when the approver already gave a verdict on it, and NotConfirmed when the approver does not
    say yes, or when an approval's review is longer than one screen and ``full`` was not given. The signer is
    only created (and its passphrase or PIN only asked for) after the approver said yes.
    """
    recomputed = recompute_hashes(request)
    check_server_hashes(request, recomputed)
    state = request_state_name(request.state)
    if state != "PENDING_APPROVAL":
        raise FailedPrecondition(f"request {request.request_id} is {state}, not waiting for approvals")
    # Refused before the review is printed, with the daemon's own words: it would refuse the verdict anyway
    # (custody/domain/quorum.py), and a full review read for nothing buries the one line that matters.
    if request.requester == approver:
        raise PermissionDenied(
            f"{approver} submitted request {request.request_id} and cannot {verdict.value} it;"
            " the requester's own verdict never counts"
        )
    if any(record.approver == approver for record in request.approvals):
        raise AlreadyExists(f"{approver} already gave a verdict on request {request.request_id}")
    statement_request = domain_request(request, recomputed)
    review = review_text(request, recomputed, active_policy=active_policy)
    # Only payloads the HSM signs need --full: a policy change ends in its diff against the active policy, which
    # is the part an approver reads, right above the question.
    needs_full = verdict is Verdict.APPROVE and recomputed.parsed is not None
    if needs_full and not full and too_long_to_confirm(review):
        raise NotConfirmed(_too_long_message(request.request_id, review, recomputed))
    click.echo(review, err=to_stderr)
    if not assume_yes:
        if not interactive:
            raise NotConfirmed(_cannot_ask_message(request.request_id, verdict))
        question = f"{verdict.value.capitalize()} request {request.request_id}?"
        if not click.confirm(question, default=False, err=to_stderr):
            raise NotConfirmed(
                f"you did not {verdict.value} request {request.request_id}; nothing was signed."
            )
    statement = ApprovalStatement.for_request(
        statement_request, approver=approver, decision=verdict, expires_at=int(now()) + expires_in
    ).to_bytes()
    with contextlib.ExitStack() as cleanup:
        signer = signer_factory()
        # A token signer holds a logged-in session until closed; a key-file signer needs no closing.
        if isinstance(signer, contextlib.AbstractContextManager):
            cleanup.enter_context(signer)
        signature = signer.sign(statement)
        _check_own_signature(signer.public_key(), statement, signature)
    return SignedVerdict(statement=statement, signature=signature)


def profile_identity(profile: ClientProfile) -> str:
    """The approver id: the common name of the profile's client certificate, which the daemon authenticates."""
    return certificate_identity(read_profile_file(profile, "cert_file", profile.cert_file))


def approver_key_kind(profile: ClientProfile) -> Literal["file", "token"]:
    """Which kind of approver key the profile names; refuses a profile that names both kinds, or neither, or
    a token without the labels that find the key in it."""
    if profile.approver_key_file is not None and profile.approver_pkcs11_module is not None:
        raise ConfigurationError(
            f"client profile {profile.path} names both approver_key_file and approver_pkcs11_module;"
            " keep the one that holds your approver key."
        )
    if profile.approver_key_file is not None:
        return "file"
    if profile.approver_pkcs11_module is not None:
        if profile.approver_token_label is None or profile.approver_key_label is None:
            raise ConfigurationError(
                f"client profile {profile.path} names approver_pkcs11_module but not both approver_token_label"
                " and approver_key_label."
            )
        return "token"
    raise ConfigurationError(
        f"client profile {profile.path} names no approver key; add approver_key_file (an encrypted Ed25519"
        " PKCS#8 file) or approver_pkcs11_module, approver_token_label and approver_key_label."
    )


def load_approver_signer(profile: ClientProfile) -> ApproverSigner:
    """The approver key the profile names, unlocked with its passphrase or PIN (file, environment or prompt)."""
    key_file = profile.approver_key_file
    if approver_key_kind(profile) == "file" and key_file is not None:
        from custody.approver_keys.pkcs8_file import Pkcs8FileSigner

        passphrase = secret_from_profile(
            profile.approver_passphrase_file,
            PASSPHRASE_ENVIRONMENT_VARIABLE,
            f"Passphrase for approver key {key_file}: ",
        )
        return Pkcs8FileSigner(key_file, passphrase)
    # Imported here so that approvers with a key file never load a PKCS#11 library.
    from custody.approver_keys.pkcs11_token import Pkcs11TokenSigner

    module, token_label, key_label = token_settings(profile)
    return Pkcs11TokenSigner(module, token_label, key_label, token_pin(profile))


def token_settings(profile: ClientProfile) -> tuple[str, str, str]:
    """The PKCS#11 module, token label and key label of a profile whose approver key is in a token."""
    module, token_label, key_label = (
        profile.approver_pkcs11_module,
        profile.approver_token_label,
        profile.approver_key_label,
    )
    if approver_key_kind(profile) != "token" or module is None or token_label is None or key_label is None:
        raise ConfigurationError(f"client profile {profile.path} names no approver key in a PKCS#11 token.")
    return module, token_label, key_label


def token_pin(profile: ClientProfile) -> str:
    """The PIN of the approver's token, from the profile's file, the environment or a prompt."""
    _, token_label, _ = token_settings(profile)
    pin = secret_from_profile(
        profile.approver_pin_file, PIN_ENVIRONMENT_VARIABLE, f"PIN of token {token_label}: "
    )
    try:
        return pin.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"the PIN for token {token_label} is not UTF-8 text.") from None


def secret_from_profile(file: Path | None, environment_variable: str, prompt: str) -> bytes:
    """A passphrase or PIN: the profile's file wins, then the environment, then a prompt."""
    if file is not None:
        return read_secret(file=file, env=None, prompt=None)
    if environment_variable in os.environ:
        return read_secret(file=None, env=environment_variable, prompt=None)
    return read_secret(file=None, env=None, prompt=prompt)


def _check_own_signature(public_key: bytes, statement: bytes, signature: bytes) -> None:
    # A token or key file that signs wrongly would only be caught by the daemon, with a confusing refusal;
    # checking here names the real cause.
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, statement)
    except (InvalidSignature, ValueError):
        raise InternalError(
            "the approver key produced a signature that does not verify with its own public key;"
            " nothing was sent."
        ) from None


def _active_policy_document(connection: Connection) -> str | None:
    """The active policy's TOML for a diff, or None when the daemon will not show it to this identity."""
    try:
        response = connection.policy.GetPolicy(custody_pb2.GetPolicyRequest(), timeout=UNARY_TIMEOUT_SECONDS)
    except grpc.RpcError:
        return None
    document: str = response.document
    return document


def _cannot_ask_message(request_id: str, verdict: Verdict, reason: str = "") -> str:
    # The suggested command must run as it is: a rejection needs its --reason, quoted for the shell.
    reason_option = f" --reason {shlex.quote(reason)}" if reason else ""
    return (
        f"standard input is not a terminal, so custody cannot ask you to confirm; review the request with"
        f" `custody requests show {request_id}`, then run `custody {verdict.value} {request_id}{reason_option}`"
        f" again with --yes."
    )


def _too_long_message(request_id: str, review: str, recomputed: RecomputedHashes) -> str:
    flags = flag_words(all_flags(recomputed.intents))
    flagged = f" and flags {flags}" if flags else ""
    return (
        f"the review of request {request_id} is {screen_rows(review)} lines long{flagged}, more than one screen"
        f" shows, so nothing was signed: read it with `custody requests show {request_id}`, then approve with"
        f" `custody approve {request_id} --full`, which prints all of it before asking."
    )

"""`custody sign ...`: submit a transaction, EIP-712 typed data, an EIP-191 message or an EIP-7702 authorization for
signing.

The payload goes to the daemon byte for byte: the daemon parses it and computes the digest itself, so the
command line checks only that the input can be read and is within the size limit.
"""

from __future__ import annotations

import json
import sys

import click

from custody.api._gen import custody_pb2
from custody.cli.client import UNARY_TIMEOUT_SECONDS, connect
from custody.cli.options import client_options, options_of
from custody.cli.requests import conclude
from custody.domain.errors import InvalidInput

# The daemon's parsers refuse larger payloads; refusing here too saves sending them.
MAX_PAYLOAD_BYTES = 128 * 1024

_key_option = click.option("--key", "key_label", required=True, help="Label of the key to sign with.")
_wait_option = click.option(
    "--wait", is_flag=True, help="Wait until the request is signed or ends unsigned (e.g. after approvals)."
)


@click.group("sign")
@client_options
def sign_group() -> None:
    """Ask the daemon for a signature (the policy decides)."""


@sign_group.command("tx")
@client_options
@_key_option
@click.option(
    "--file", "file_name", required=True, help="Transaction JSON (eth-account field names); - for stdin."
)
@click.option(
    "--replaces",
    "replaces_request_id",
    metavar="REQUEST_ID",
    help="Replace this earlier request for the same nonce (a fee bump or a cancellation); the policy must"
    " allow replacements.",
)
@_wait_option
@click.pass_context
def sign_transaction(
    context: click.Context, key_label: str, file_name: str, replaces_request_id: str | None, wait: bool
) -> None:
    """Sign a legacy, EIP-2930, EIP-1559, EIP-4844 blob or EIP-7702 set-code transaction.

    A blob transaction is signed without its blobs: the answer is the bare transaction, and the sender adds the
    network wrapper (blobs, commitments, proofs). A set-code transaction carries authorizations already signed
    by their accounts; each is checked and its signer shown to approvers.
    """
    _submit(
        context,
        submit_request(
            key_label,
            custody_pb2.PAYLOAD_KIND_TRANSACTION,
            read_json_payload(file_name),
            replaces_request_id=replaces_request_id,
        ),
        wait=wait,
    )


@sign_group.command("typed-data")
@client_options
@_key_option
@click.option("--file", "file_name", required=True, help="EIP-712 typed data JSON; - for stdin.")
@_wait_option
@click.pass_context
def sign_typed_data(context: click.Context, key_label: str, file_name: str, wait: bool) -> None:
    """Sign EIP-712 typed data (eth_signTypedData_v4)."""
    _submit(
        context,
        submit_request(key_label, custody_pb2.PAYLOAD_KIND_TYPED_DATA, read_json_payload(file_name)),
        wait=wait,
    )


@sign_group.command("message")
@client_options
@_key_option
@click.option("--text", help="The message, signed as its UTF-8 bytes.")
@click.option("--file", "file_name", help="A file whose bytes are the message; - for stdin.")
@_wait_option
@click.pass_context
def sign_message(
    context: click.Context, key_label: str, text: str | None, file_name: str | None, wait: bool
) -> None:
    """Sign an EIP-191 personal message."""
    if text is not None and file_name is None:
        payload = text.encode("utf-8")
        _check_size(len(payload), "--text")
    elif file_name is not None and text is None:
        payload = read_payload(file_name)
    else:
        raise click.UsageError("give the message with exactly one of --text or --file.")
    _submit(context, submit_request(key_label, custody_pb2.PAYLOAD_KIND_MESSAGE, payload), wait=wait)


@sign_group.command("authorization")
@client_options
@_key_option
@click.option(
    "--file",
    "file_name",
    required=True,
    help='EIP-7702 authorization JSON {"chainId", "address", "nonce"}; - for stdin.',
)
@_wait_option
@click.pass_context
def sign_authorization(context: click.Context, key_label: str, file_name: str, wait: bool) -> None:
    """Sign an EIP-7702 authorization: DANGER, the key's account will run the code at "address".

    Once a set-code transaction carries the signed authorization, the key's account runs that contract's code
    until another authorization replaces it, and whoever controls the code controls everything the account
    holds; chainId 0 makes it valid on every chain. The answer is the signed tuple as eth-account's
    sign_authorization returns it: y_parity, r and s, and the 65-byte signature r || s || y_parity.
    """
    _submit(
        context,
        submit_request(key_label, custody_pb2.PAYLOAD_KIND_AUTHORIZATION, read_json_payload(file_name)),
        wait=wait,
    )


def read_payload(file_name: str) -> bytes:
    """The bytes of ``file_name`` (stdin for "-"), refusing more than MAX_PAYLOAD_BYTES."""
    try:
        if file_name == "-":
            payload = sys.stdin.buffer.read(MAX_PAYLOAD_BYTES + 1)
        else:
            with open(file_name, "rb") as stream:
                payload = stream.read(MAX_PAYLOAD_BYTES + 1)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InvalidInput(f"cannot read {file_name}: {reason}", field="--file") from None
    _check_size(len(payload), "--file")
    return payload


def read_json_payload(file_name: str) -> bytes:
    """The bytes of a JSON ``file_name``, refused here, with the line and column, when they are not JSON.

    The daemon checks the payload in full; this only lets a typo be found in the file without a round trip.
    """
    payload = read_payload(file_name)
    try:
        json.loads(payload)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"{file_name} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}",
            field="--file",
        ) from None
    except (RecursionError, ValueError):
        # Bytes that are not UTF-8, nesting too deep and over-long numbers are the daemon's to refuse, with
        # the same words for every client.
        pass
    return payload


def _check_size(size: int, field: str) -> None:
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            f"the payload is larger than the limit of {MAX_PAYLOAD_BYTES} bytes (128 KiB)", field=field
        )


def submit_request(
    key_label: str,
    kind: custody_pb2.PayloadKind,
    payload: bytes,
    *,
    replaces_request_id: str | None = None,
) -> custody_pb2.SubmitRequestRequest:
    """The SubmitRequest message the command sends; ``replaces_request_id`` None means no replacement.

    A blank id is refused: the proto reads an empty string as "no replacement", so sending it would quietly
    submit a second payload for the nonce instead of the replacement that was asked for.
    """
    if replaces_request_id is not None and not replaces_request_id.strip():
        raise InvalidInput("the request id to replace is empty", field="--replaces")
    return custody_pb2.SubmitRequestRequest(
        key_label=key_label, kind=kind, payload=payload, replaces_request_id=replaces_request_id or ""
    )


def _submit(context: click.Context, message: custody_pb2.SubmitRequestRequest, *, wait: bool) -> None:
    with connect(options_of(context)) as connection:
        response = connection.signing.SubmitRequest(message, timeout=UNARY_TIMEOUT_SECONDS)
        conclude(context, connection, response.request, wait=wait)

"""`custody requests ...`: list, show, wait for and cancel signing requests."""

from __future__ import annotations

import random
import sys
import time

import click
import grpc

from custody.api._gen import custody_pb2
from custody.cli.client import UNARY_TIMEOUT_SECONDS, Connection, connect
from custody.cli.options import client_options, options_of
from custody.cli.output import (
    emit_json,
    ended_unsigned,
    intent_flag_lines,
    intents_to_json,
    is_final,
    ordered_flags,
    quorum_text,
    request_state_name,
    request_state_value,
    request_text,
    request_to_json,
    requests_table,
)
from custody.domain.intents import all_flags
from custody.exit_codes import EXIT_REQUEST_UNSIGNED

_STATE_NAMES = (
    "PENDING_APPROVAL",
    "APPROVED",
    "SIGNED",
    "DENIED",
    "REJECTED",
    "EXPIRED",
    "CANCELLED",
    "FAILED",
)
_MAX_LIST_LIMIT = 1000
# While the daemon refuses more watch streams, the request is read with GetRequest this often (seconds, drawn
# at random in the range so that many waiting clients do not poll in step), and a watch is tried again.
_POLL_SECONDS = (1.0, 2.0)
# A watch that ended sooner than this is not followed at once by the next: a daemon configured with a very
# short [limits] watch_seconds must not turn waiting into a busy loop.
_MIN_SUBSCRIPTION_SECONDS = 1.0


@click.group("requests")
@client_options
def requests_group() -> None:
    """Signing requests and their state."""


@requests_group.command("list")
@client_options
@click.option(
    "--state", type=click.Choice(_STATE_NAMES, case_sensitive=False), help="Only requests in this state."
)
@click.option("--key", "key_label", help="Only requests for this key label.")
@click.option(
    "--limit",
    type=click.IntRange(1, _MAX_LIST_LIMIT),
    default=100,
    show_default=True,
    help="At most this many requests, newest first.",
)
@click.pass_context
def list_requests(context: click.Context, state: str | None, key_label: str | None, limit: int) -> None:
    """List signing requests."""
    options = options_of(context)
    query = custody_pb2.ListRequestsRequest(
        state=request_state_value(state) if state else custody_pb2.REQUEST_STATE_UNSPECIFIED,
        key_label=key_label or "",
        limit=limit,
    )
    with connect(options) as connection:
        response = connection.signing.ListRequests(query, timeout=UNARY_TIMEOUT_SECONDS)
    if options.json_output:
        emit_json([request_to_json(request) for request in response.requests])
    else:
        click.echo(requests_table(response.requests))


@requests_group.command("show")
@client_options
@click.argument("request_id")
@click.pass_context
def show_request(context: click.Context, request_id: str) -> None:
    """Show one request, its decision and, once signed, its signature; for a payload the HSM signs, also the
    payload in full and what it does (its intents), recomputed here from the payload."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.signing.GetRequest(
            custody_pb2.GetRequestRequest(request_id=request_id), timeout=UNARY_TIMEOUT_SECONDS
        )
    print_reviewed_request(response.request, json_output=options.json_output)


@requests_group.command("wait")
@client_options
@click.argument("request_id")
@click.pass_context
def wait_request(context: click.Context, request_id: str) -> None:
    """Wait until a request is signed (a policy change or unfreeze: approved) or ends unsigned, then show it
    (exit code 3 when unsigned)."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.signing.GetRequest(
            custody_pb2.GetRequestRequest(request_id=request_id), timeout=UNARY_TIMEOUT_SECONDS
        )
        conclude(context, connection, response.request, wait=True)


@requests_group.command("cancel")
@client_options
@click.argument("request_id")
@click.option("--reason", default="", help="Why the request is cancelled, for the audit log.")
@click.pass_context
def cancel_request(context: click.Context, request_id: str, reason: str) -> None:
    """Cancel a request that is not signed yet."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.signing.CancelRequest(
            custody_pb2.CancelRequestRequest(request_id=request_id, reason=reason),
            timeout=UNARY_TIMEOUT_SECONDS,
        )
    print_request(response.request, json_output=options.json_output)


def conclude(
    context: click.Context, connection: Connection, request: custody_pb2.SigningRequest, *, wait: bool
) -> None:
    """Print a request (after following it to a final state when ``wait``); exit 3 if it ended unsigned."""
    if wait:
        request = follow_to_final_state(connection, request, progress=WaitProgress())
    json_output = options_of(context).json_output
    print_request(request, json_output=json_output)
    if not json_output and request_state_name(request.state) == "PENDING_APPROVAL":
        # The id is what the approvers need; said on stderr, after the request, as the next thing to do.
        click.echo(
            f"\nThe request waits for {quorum_text(request.decision) or 'approvals'}. Each approver runs:\n"
            f"  custody approve {request.request_id}\n"
            f"To wait until it is signed or ends:\n"
            f"  custody requests wait {request.request_id}",
            err=True,
        )
    if ended_unsigned(request):
        context.exit(EXIT_REQUEST_UNSIGNED)


class WaitProgress:
    """Tells the person waiting which request it is and each change of its state, on stderr, so that
    ``--json`` output on stdout stays one document; on a terminal each line also says how long it has waited.
    Nothing but plain lines is written: no spinner or cursor codes, which a log file would keep as noise.
    """

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._last_state: str | None = None
        self._on_terminal = sys.stderr.isatty()

    def saw(self, request: custody_pb2.SigningRequest) -> None:
        """Report ``request`` if its state differs from the one last reported."""
        state = request_state_name(request.state)
        if state == self._last_state:
            return
        first = self._last_state is None
        self._last_state = state
        line = f"request {request.request_id}: {state}"
        if first and not is_final(request):
            line += " (waiting; Ctrl-C stops waiting and leaves the request as it is)"
        if self._on_terminal and not first:
            line += f" after {_elapsed_text(time.monotonic() - self._started)}"
        click.echo(line, err=True)


def _elapsed_text(seconds: float) -> str:
    minutes, whole_seconds = divmod(int(seconds), 60)
    return f"{minutes}m{whole_seconds:02d}s" if minutes else f"{whole_seconds}s"


def follow_to_final_state(
    connection: Connection, request: custody_pb2.SigningRequest, *, progress: WaitProgress | None = None
) -> custody_pb2.SigningRequest:
    """The request as it is once final, following WatchRequest; a request already final is returned as is.

    A governance request (policy change, unfreeze) is final once APPROVED: the change has taken effect.

    The daemon ends every watch after [limits] watch_seconds, and refuses one with RESOURCE_EXHAUSTED when it
    already serves as many as it allows; either way this keeps waiting, subscribing again or reading the
    request with GetRequest until a watch is admitted, so the caller sees no difference.
    """
    # No overall deadline: approvals take as long as people take; Ctrl-C ends the wait without touching the
    # request.
    if progress is not None:
        progress.saw(request)
    while not is_final(request):
        started = time.monotonic()
        try:
            request = _watch_once(connection, request, progress)
        except grpc.RpcError as error:
            if not isinstance(error, grpc.Call) or error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            time.sleep(random.uniform(*_POLL_SECONDS))  # noqa: S311 -- spreads polls, guards nothing
            request = connection.signing.GetRequest(
                custody_pb2.GetRequestRequest(request_id=request.request_id), timeout=UNARY_TIMEOUT_SECONDS
            ).request
            if progress is not None:
                progress.saw(request)
            continue
        if not is_final(request):
            time.sleep(max(0.0, _MIN_SUBSCRIPTION_SECONDS - (time.monotonic() - started)))
    return request


def _watch_once(
    connection: Connection, request: custody_pb2.SigningRequest, progress: WaitProgress | None
) -> custody_pb2.SigningRequest:
    """Follow one WatchRequest stream until the request is final or the daemon ends the stream; returns the
    request as last seen."""
    stream = connection.signing.WatchRequest(custody_pb2.WatchRequestRequest(request_id=request.request_id))
    try:
        for update in stream:
            request = update
            if progress is not None:
                progress.saw(request)
            if is_final(request):
                break
    finally:
        stream.cancel()
    return request


def print_request(request: custody_pb2.SigningRequest, *, json_output: bool) -> None:
    if json_output:
        emit_json(request_to_json(request))
    else:
        click.echo(request_text(request))


def print_reviewed_request(request: custody_pb2.SigningRequest, *, json_output: bool) -> None:
    """A request with its payload in full and its intent tree, decoded here from the payload bytes.

    As for an approval, the daemon's digest and payload hash must be the payload's (ServerDisagrees
    otherwise), so the intents shown are those of the bytes the HSM signs. Governance requests, which the HSM
    never signs, are shown as ``print_request`` shows them.
    """
    # Imported here because decoding payloads loads eth-account (half a second), which listing, waiting for
    # and cancelling requests do not need.
    from custody.cli.review import check_server_hashes, payload_lines, recompute_hashes

    recomputed = recompute_hashes(request)
    check_server_hashes(request, recomputed)
    if recomputed.parsed is None:
        print_request(request, json_output=json_output)
        return
    if json_output:
        answer = request_to_json(request)
        answer["intents"] = intents_to_json(recomputed.intents)
        answer["intent_flags"] = [flag.value for flag in ordered_flags(all_flags(recomputed.intents))]
        emit_json(answer)
        return
    lines = [*intent_flag_lines(recomputed.intents, indent=0)] if recomputed.intents else []
    lines.append(request_text(request, summary=False))
    lines.append("payload (recomputed here from its bytes; nothing is abbreviated):")
    lines += payload_lines(recomputed)
    click.echo("\n".join(lines))

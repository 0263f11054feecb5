"""`custody policy ...`: show the active policy, propose a new version, explain a request's decision."""

from __future__ import annotations

from typing import Any

import click

from custody.api._gen import custody_pb2
from custody.cli.client import UNARY_TIMEOUT_SECONDS, connect
from custody.cli.options import client_options, options_of
from custody.cli.output import (
    decision_to_json,
    emit_json,
    hex_bytes,
    quorum_text,
    request_text,
    request_to_json,
)
from custody.domain.errors import InvalidInput

# A policy document is a page or two of TOML. The daemon refuses one larger than 64 KiB
# (custody.app.policy.MAX_POLICY_DOCUMENT_BYTES); the CLI refuses it first, with the file's name.
MAX_POLICY_BYTES = 64 * 1024


@click.group("policy")
@client_options
def policy_group() -> None:
    """The signing policy: rules, approvers and quorums."""


@policy_group.command("show")
@client_options
@click.pass_context
def show_policy(context: click.Context) -> None:
    """Print the active policy's document (its version and hash go to stderr)."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.policy.GetPolicy(custody_pb2.GetPolicyRequest(), timeout=UNARY_TIMEOUT_SECONDS)
    if options.json_output:
        emit_json(
            {
                "version": response.version,
                "document": response.document,
                "document_hash": hex_bytes(response.document_hash),
            }
        )
        return
    # The header goes to stderr so that stdout is exactly the document: `policy show > file`, an edit and
    # `policy propose file` must not carry the header into the next version.
    click.echo(
        f"# active policy version {response.version}, document hash {hex_bytes(response.document_hash)}",
        err=True,
    )
    click.echo(response.document.rstrip("\n"))


@policy_group.command("propose")
@client_options
@click.argument("file_name", metavar="FILE")
@click.pass_context
def propose_policy(context: click.Context, file_name: str) -> None:
    """Propose FILE (TOML) as the next policy version; it takes effect once the admin quorum approves."""
    options = options_of(context)
    document = read_policy_document(file_name)
    with connect(options) as connection:
        request = connection.policy.ProposePolicy(
            custody_pb2.ProposePolicyRequest(document=document), timeout=UNARY_TIMEOUT_SECONDS
        ).request
    if options.json_output:
        emit_json(request_to_json(request))
        return
    click.echo(request_text(request))
    click.echo(
        f"\nThe new policy takes effect once {quorum_text(request.decision) or 'the admin quorum'} approve"
        f" request {request.request_id} (custody approve {request.request_id})."
    )


@policy_group.command("explain")
@client_options
@click.argument("request_id")
@click.pass_context
def explain_request(context: click.Context, request_id: str) -> None:
    """Show which rule decided a request, and the outcome of each condition of every rule tried."""
    options = options_of(context)
    with connect(options) as connection:
        response = connection.policy.ExplainRequest(
            custody_pb2.ExplainRequestRequest(request_id=request_id), timeout=UNARY_TIMEOUT_SECONDS
        )
    if options.json_output:
        emit_json(explanation_to_json(response))
    else:
        click.echo(explanation_text(request_id, response))


def read_policy_document(file_name: str) -> str:
    """The UTF-8 text of a policy file, refusing unreadable, oversized and non-UTF-8 files."""
    try:
        with open(file_name, "rb") as stream:
            data = stream.read(MAX_POLICY_BYTES + 1)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InvalidInput(f"cannot read {file_name}: {reason}", field="FILE") from None
    if len(data) > MAX_POLICY_BYTES:
        raise InvalidInput(f"{file_name} is larger than the limit of {MAX_POLICY_BYTES} bytes", field="FILE")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"{file_name} is not UTF-8 text (byte {error.start})", field="FILE") from None


def explanation_to_json(response: custody_pb2.ExplainRequestResponse) -> dict[str, Any]:
    """The proto's shape: {decision, rules: [{rule, matched, conditions: [{condition, matched, detail}]}]}."""
    return {
        "decision": {
            **decision_to_json(response.decision),
            "quorum": [
                {"group": term.group, "threshold": term.threshold} for term in response.decision.quorum
            ],
            "timelock_seconds": response.decision.timelock_seconds,
        },
        "rules": [
            {
                "rule": rule.rule,
                "matched": rule.matched,
                "conditions": [
                    {
                        "condition": condition.condition,
                        "matched": condition.matched,
                        "detail": condition.detail,
                    }
                    for condition in rule.conditions
                ],
            }
            for rule in response.rules
        ],
    }


def explanation_text(request_id: str, response: custody_pb2.ExplainRequestResponse) -> str:
    decision = response.decision
    lines = [
        f"request {request_id}: {decision.action or 'none'}"
        + (f" by rule {decision.rule}" if decision.rule else " (no rule matched: deny by default)")
        + f" under policy version {decision.policy_version}",
    ]
    if decision.reason:
        lines.append(f"  reason: {decision.reason}")
    if decision.quorum:
        lines.append(f"  quorum: {quorum_text(decision)}")
    if decision.timelock_seconds:
        lines.append(f"  time-lock: {decision.timelock_seconds} s")
    if not response.rules:
        lines.append("no rule was tried.")
    for rule in response.rules:
        lines.append(f"rule {rule.rule}: {'MATCHED' if rule.matched else 'did not match'}")
        for condition in rule.conditions:
            mark = "yes" if condition.matched else "NO "
            detail = f" ({condition.detail})" if condition.detail else ""
            lines.append(f"  [{mark}] {condition.condition}{detail}")
    return "\n".join(lines)

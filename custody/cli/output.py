"""How keys and requests look on the terminal: JSON objects for scripts, aligned text for people.

The JSON shapes are a contract: field names, 0x-prefixed lowercase hex for bytes, state and kind names without
the proto enum prefixes, null for absent values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import click

from custody.api._gen import custody_pb2

FINAL_STATES = frozenset({"SIGNED", "DENIED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"})
UNSIGNED_FINAL_STATES = FINAL_STATES - {"SIGNED"}
GOVERNANCE_KINDS = frozenset({"POLICY_CHANGE", "KEY_UNFREEZE"})


def hex_bytes(data: bytes) -> str:
    return "0x" + data.hex()


def enum_name(enum_type: Any, value: int, prefix: str) -> str:
    """The name of a proto enum value without its prefix, e.g. REQUEST_STATE_SIGNED -> SIGNED."""
    name: str = enum_type.Name(value)
    return name.removeprefix(prefix)


def request_state_name(value: int) -> str:
    return enum_name(custody_pb2.RequestState, value, "REQUEST_STATE_")


def request_state_value(name: str) -> custody_pb2.RequestState:
    """The proto value of a state name as printed (case-insensitive), e.g. "pending_approval"."""
    return cast(custody_pb2.RequestState, custody_pb2.RequestState.Value("REQUEST_STATE_" + name.upper()))


def payload_kind_name(value: int) -> str:
    return enum_name(custody_pb2.PayloadKind, value, "PAYLOAD_KIND_")


def is_final(request: custody_pb2.SigningRequest) -> bool:
    """Whether the request will change no more: a governance request also ends once APPROVED, because for a
    policy change or an unfreeze approval is the moment the change takes effect (nothing is signed)."""
    state = request_state_name(request.state)
    return state in FINAL_STATES or (
        state == "APPROVED" and payload_kind_name(request.kind) in GOVERNANCE_KINDS
    )


def ended_unsigned(request: custody_pb2.SigningRequest) -> bool:
    """Whether the request ended without the outcome it asked for (exit code 3)."""
    return request_state_name(request.state) in UNSIGNED_FINAL_STATES


def key_state_name(value: int) -> str:
    return enum_name(custody_pb2.KeyState, value, "KEY_STATE_")


def key_to_json(key: custody_pb2.Key) -> dict[str, Any]:
    return {
        "label": key.label,
        "key_id": key.key_id,
        "address": key.address,
        "public_key": hex_bytes(key.public_key),
        "state": key_state_name(key.state),
        "created_at": key.created_at,
    }


def request_to_json(request: custody_pb2.SigningRequest) -> dict[str, Any]:
    kind = payload_kind_name(request.kind)
    state = request_state_name(request.state)
    answer: dict[str, Any] = {
        "request_id": request.request_id,
        "state": state,
        "key": request.key_label,
        "key_id": request.key_id,
        "address": request.address,
        "requester": request.requester,
        "kind": kind,
        # The proto uses zero for "no chain id"; no chain has id zero, so null says it plainly.
        "chain_id": request.chain_id or None,
        "replaces": request.replaces or None,
        "payload_hash": hex_bytes(request.payload_hash),
        "digest": hex_bytes(request.digest),
        "decision": decision_to_json(request.decision),
        "summary": dict(sorted(request.summary.items())),
        "quorum": quorum_to_json(request.decision),
        "quorum_progress": request.quorum_progress or None,
        "approvals": [approval_to_json(approval) for approval in request.approvals],
        "expires_at": request.expires_at or None,
        "not_before": request.not_before or None,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
    }
    if request.signature:
        answer["signature"] = hex_bytes(request.signature)
    if request.signed_tx:
        answer["signed_tx"] = hex_bytes(request.signed_tx)
    if request.tx_hash:
        answer["tx_hash"] = hex_bytes(request.tx_hash)
    if state == "FAILED" or request.error:
        answer["error"] = request.error
    return answer


def decision_to_json(decision: custody_pb2.Decision) -> dict[str, Any]:
    return {
        "action": decision.action,
        "rule": decision.rule or None,
        "reason": decision.reason,
        "policy_version": decision.policy_version,
    }


def quorum_to_json(decision: custody_pb2.Decision) -> list[dict[str, Any]]:
    return [{"group": term.group, "threshold": term.threshold} for term in decision.quorum]


def approval_to_json(approval: custody_pb2.ApprovalRecord) -> dict[str, Any]:
    return {
        "approver": approval.approver,
        "verdict": approval.verdict,
        "reason": approval.reason or None,
        "created_at": approval.created_at,
    }


def quorum_text(decision: custody_pb2.Decision) -> str:
    """E.g. "2 of treasury AND 1 of security"."""
    return " AND ".join(f"{term.threshold} of {term.group}" for term in decision.quorum)


def approval_text(approval: custody_pb2.ApprovalRecord) -> str:
    text = f"{approval.verdict} by {approval.approver} at {approval.created_at}"
    return text + (f": {approval.reason}" if approval.reason else "")


def emit_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


def key_text(key: custody_pb2.Key) -> str:
    return _fields(
        [
            ("label", key.label),
            ("address", key.address),
            ("state", key_state_name(key.state)),
            ("key id", key.key_id),
            ("public key", hex_bytes(key.public_key)),
            ("created", key.created_at),
        ]
    )


def keys_table(keys: Sequence[custody_pb2.Key]) -> str:
    if not keys:
        return "no keys yet; create one with `custody keys create --label LABEL`."
    rows = [(key.label, key_state_name(key.state), key.address, key.created_at) for key in keys]
    return _table(("LABEL", "STATE", "ADDRESS", "CREATED"), rows)


def request_text(request: custody_pb2.SigningRequest) -> str:
    state = request_state_name(request.state)
    decision = request.decision
    decision_line = decision.action or "none"
    if decision.rule:
        decision_line += f" by rule {decision.rule}"
    if decision.reason:
        decision_line += f": {decision.reason}"
    if decision.policy_version:
        decision_line += f" (policy version {decision.policy_version})"
    lines: list[tuple[str, str]] = [
        ("request", request.request_id),
        ("state", state),
        ("key", f"{request.key_label} ({request.address})"),
        ("requester", request.requester),
        ("kind", payload_kind_name(request.kind)),
        ("chain", str(request.chain_id) if request.chain_id else "none"),
    ]
    if request.replaces:
        lines.append(("replaces", f"{request.replaces} (same nonce, explicit replacement)"))
    lines += [(name, value) for name, value in sorted(request.summary.items())]
    lines += [("digest", hex_bytes(request.digest)), ("decision", decision_line)]
    if request.decision.quorum:
        lines.append(("quorum", quorum_text(request.decision)))
    if request.quorum_progress:
        lines.append(("progress", request.quorum_progress))
    if request.decision.timelock_seconds:
        lines.append(("time-lock", f"{request.decision.timelock_seconds} s after approval"))
    lines += [("approval", approval_text(approval)) for approval in request.approvals]
    if request.expires_at:
        lines.append(("expires", request.expires_at))
    if request.not_before:
        lines.append(("not before", request.not_before))
    if request.error:
        lines.append(("error", request.error))
    if request.signature:
        lines.append(("signature", hex_bytes(request.signature)))
    if request.tx_hash:
        lines.append(("tx hash", hex_bytes(request.tx_hash)))
    text = _fields(lines)
    if request.signed_tx:
        text += f"\nsigned transaction (send with eth_sendRawTransaction): {hex_bytes(request.signed_tx)}"
    return text


def requests_table(requests: Sequence[custody_pb2.SigningRequest]) -> str:
    if not requests:
        return "no requests match."
    rows = [
        (
            request.request_id,
            request_state_name(request.state),
            request.key_label or "-",
            payload_kind_name(request.kind),
            str(request.chain_id) if request.chain_id else "-",
            request.requester,
            request.quorum_progress or "-",
            request.expires_at or "-",
            request.created_at,
        )
        for request in requests
    ]
    return _table(
        ("ID", "STATE", "KEY", "KIND", "CHAIN", "REQUESTER", "APPROVALS", "EXPIRES", "CREATED"), rows
    )


def _fields(lines: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def mapping_text(values: Mapping[str, str]) -> str:
    return _fields(list(values.items()))

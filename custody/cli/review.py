"""What an approver sees before signing: the request recomputed from its payload, in full, and what it does.

The daemon's word is not taken for what will be signed. The digest and payload hash are recomputed here from
the payload bytes the daemon sent, and if the daemon's copies differ the approval stops before anything is
shown or signed. Everything printed is derived from the payload itself, except what only the daemon knows
(key label and address, the rule, the quorum, the approvals so far), which is labelled as the daemon's.

What the payload does is its intent tree, computed here from the same bytes by the function whose result the
daemon's policy judged (custody.chains.evm.intents.payload_intents); the daemon never sends intents. Its flags
(DELEGATECALL, UNLIMITED APPROVAL, ...) come first, then every field of the payload and every intent, nothing
abbreviated: a review too long for one screen is approved only with --full (custody/cli/approve.py).

Text from a payload (messages, typed data strings, policy documents) is printed with control characters
escaped, so a payload cannot move the cursor, clear the screen or reverse text to hide what it says.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from custody.api._gen import custody_pb2
from custody.chains.evm import Authorization, Message, ParsedPayload, Transaction, TypedData, parse_payload
from custody.chains.evm.authorizations import EVERY_CHAIN, clears_delegation, delegation_warning
from custody.chains.evm.intents import payload_intents
from custody.chains.evm.values import format_ether, format_gwei
from custody.cli.errors import ServerDisagrees
from custody.cli.output import (
    approval_text,
    intent_flag_lines,
    intent_tree_lines,
    payload_kind_name,
    printable,
    quorum_text,
    reason_beyond_rule,
    request_state_name,
)
from custody.domain.errors import InvalidInput
from custody.domain.intents import Intent
from custody.domain.requests import (
    Decision,
    DecisionAction,
    PayloadKind,
    QuorumTerm,
    RequestState,
    SigningRequest,
)

# An approver confirms what they have read. A review longer than this scrolls its top (the flags) out of sight,
# so approving it needs --full, by which the approver says they will read all of it.
MAX_SCREEN_ROWS = 200
# Rows are counted as a terminal this wide shows them: one long value takes several rows.
SCREEN_COLUMNS = 100


@dataclass(frozen=True)
class RecomputedHashes:
    """What the approver's CLI computed from the payload bytes, independently of the daemon."""

    digest: bytes
    payload_hash: bytes
    chain_id: int | None
    parsed: ParsedPayload | None  # None for governance requests, which the HSM never signs
    # What the payload does, decoded here from the same bytes the digest was computed from; empty for
    # governance requests.
    intents: tuple[Intent, ...] = ()


def payload_kind(request: custody_pb2.SigningRequest) -> PayloadKind:
    """The domain payload kind of a proto request; InvalidInput for a kind this CLI does not know."""
    name = payload_kind_name(request.kind)
    try:
        return PayloadKind[name]
    except KeyError:
        raise InvalidInput(
            f"request {request.request_id} has payload kind {name}, which this version of custody cannot review",
            field="kind",
        ) from None


def decision_action(request: custody_pb2.SigningRequest) -> DecisionAction:
    """The domain decision action of a proto request; InvalidInput for an action this CLI does not know."""
    try:
        return DecisionAction(request.decision.action)
    except ValueError:
        raise InvalidInput(
            f"request {request.request_id} has decision {request.decision.action!r}, which this version of"
            " custody cannot review",
            field="decision",
        ) from None


def recompute_hashes(request: custody_pb2.SigningRequest) -> RecomputedHashes:
    """The digest and payload hash of ``request`` computed from its payload bytes alone.

    Signing kinds are parsed as the daemon parses them (``custody.chains.evm.parse_payload``); for the
    governance kinds, which are never signed by the HSM, the digest is the SHA-256 of the payload.
    """
    kind = payload_kind(request)
    payload = bytes(request.payload)
    payload_hash = hashlib.sha256(payload).digest()
    if kind.is_governance:
        return RecomputedHashes(digest=payload_hash, payload_hash=payload_hash, chain_id=None, parsed=None)
    parsed = parse_payload(kind, payload)
    return RecomputedHashes(
        digest=parsed.digest,
        payload_hash=payload_hash,
        chain_id=parsed.chain_id,
        parsed=parsed,
        intents=payload_intents(parsed),
    )


def check_server_hashes(request: custody_pb2.SigningRequest, recomputed: RecomputedHashes) -> None:
    """Raise ServerDisagrees unless the daemon's digest, payload hash and chain id are the recomputed ones."""
    checks = (
        ("digest", "0x" + bytes(request.digest).hex(), "0x" + recomputed.digest.hex()),
        ("payload hash", "0x" + bytes(request.payload_hash).hex(), "0x" + recomputed.payload_hash.hex()),
        # The proto writes "no chain id" as 0, which is also an EIP-7702 authorization's chain id for every
        # chain; so both sides are compared as the proto carries them.
        ("chain id", str(request.chain_id), str(recomputed.chain_id or 0)),
    )
    for name, daemon_value, own_value in checks:
        if daemon_value != own_value:
            raise ServerDisagrees(
                f"the daemon says request {request.request_id} has {name} {daemon_value}, but its payload gives"
                f" {own_value}; custody signed nothing, so report this to whoever runs the daemon."
            )


def domain_request(request: custody_pb2.SigningRequest, recomputed: RecomputedHashes) -> SigningRequest:
    """The domain request an approval statement is built from, with the recomputed digest and payload hash.

    Only fields the daemon alone knows (ids, labels, the decision) come from the proto; everything the
    payload determines comes from ``recomputed``.
    """
    state_name = request_state_name(request.state)
    try:
        state = RequestState(state_name)
    except ValueError:
        raise InvalidInput(
            f"request {request.request_id} is in state {state_name}, which this version of custody does not know",
            field="state",
        ) from None
    decision = request.decision
    return SigningRequest(
        request_id=request.request_id,
        key_label=request.key_label,
        key_id=request.key_id,
        requester=request.requester,
        kind=payload_kind(request),
        chain_id=recomputed.chain_id,
        payload=bytes(request.payload),
        payload_hash=recomputed.payload_hash,
        digest=recomputed.digest,
        decision=Decision(
            action=decision_action(request),
            rule=decision.rule or None,
            reason=decision.reason,
            policy_version=decision.policy_version,
            quorum=tuple(QuorumTerm(group=term.group, threshold=term.threshold) for term in decision.quorum),
            timelock_seconds=decision.timelock_seconds,
        ),
        state=state,
        created_at=_timestamp(request.created_at, "created_at", request.request_id),
        updated_at=_timestamp(request.updated_at or request.created_at, "updated_at", request.request_id),
        summary=dict(request.summary),
        expires_at=_timestamp(request.expires_at, "expires_at", request.request_id)
        if request.expires_at
        else None,
        not_before=_timestamp(request.not_before, "not_before", request.request_id)
        if request.not_before
        else None,
        replaces=request.replaces or None,
    )


def review_text(
    request: custody_pb2.SigningRequest,
    recomputed: RecomputedHashes,
    *,
    active_policy: str | None = None,
) -> str:
    """The summary an approver reads before deciding; ``active_policy`` (TOML) lets a policy change show a diff."""
    kind = payload_kind(request)
    lines = [
        f"Request {request.request_id} ({payload_kind_name(request.kind)}, {request_state_name(request.state)})"
    ]
    if recomputed.intents:
        # The flags come first, so that they are read before anything else and stay above the long fields.
        lines += intent_flag_lines(recomputed.intents, indent=2)
    lines.append(f"  requested by   {request.requester}")
    if kind is PayloadKind.POLICY_CHANGE:
        lines += _policy_change_lines(bytes(request.payload), active_policy)
    elif kind is PayloadKind.KEY_UNFREEZE:
        lines += _unfreeze_lines(request)
    else:
        lines.append(f"  key            {request.key_label} ({request.address}, according to the daemon)")
        if request.replaces:
            # An approver must know that signing this one puts a second payload on a nonce already in use.
            lines.append(
                f"  REPLACES       request {request.replaces} (same nonce; only one of them can be mined)"
            )
        lines += payload_lines(recomputed)
    what = "SHA-256 of the payload" if kind.is_governance else "the HSM will sign"
    lines.append(f"  digest         0x{recomputed.digest.hex()} ({what}; recomputed here from the payload)")
    lines.append(f"  payload hash   0x{recomputed.payload_hash.hex()}")
    decision = request.decision
    rule = decision.rule or "none"
    reason = reason_beyond_rule(decision)
    lines.append(
        f"  rule           {rule} (policy version {decision.policy_version})"
        + (f": {reason}" if reason else "")
    )
    lines.append(f"  quorum         {quorum_text(decision) or 'none'}")
    if decision.timelock_seconds:
        lines.append(f"  time-lock      {decision.timelock_seconds} s after the quorum is met")
    lines.append(f"  progress       {request.quorum_progress or 'no approvals yet'}")
    if request.approvals:
        lines += [f"  so far         {approval_text(approval)}" for approval in request.approvals]
    else:
        lines.append("  so far         nobody has approved or rejected")
    if request.expires_at:
        lines.append(f"  expires        {request.expires_at}")
    return "\n".join(lines)


def payload_lines(recomputed: RecomputedHashes) -> list[str]:
    """The payload in full and what it does: every field of the transaction, typed data or message, then the
    intent tree, both recomputed here from the payload bytes."""
    lines: list[str] = []
    if isinstance(recomputed.parsed, Transaction):
        lines += _transaction_lines(recomputed.parsed)
    elif isinstance(recomputed.parsed, TypedData):
        lines += _typed_data_lines(recomputed.parsed)
    elif isinstance(recomputed.parsed, Message):
        lines += _message_lines(recomputed.parsed)
    elif isinstance(recomputed.parsed, Authorization):
        lines += _authorization_lines(recomputed.parsed)
    if recomputed.intents:
        lines.append(
            "  what signing does (recomputed here from the payload; the policy judged the same intents):"
        )
        lines += intent_tree_lines(recomputed.intents, indent=4)
    return lines


def screen_rows(text: str) -> int:
    """How many rows ``text`` takes on a terminal SCREEN_COLUMNS wide, a long line taking several."""
    return sum(max(1, -(-len(line) // SCREEN_COLUMNS)) for line in text.split("\n"))


def too_long_to_confirm(text: str) -> bool:
    return screen_rows(text) > MAX_SCREEN_ROWS


def _transaction_lines(transaction: Transaction) -> list[str]:
    lines = [
        f"  chain id       {transaction.chain_id}",
        f"  type           {transaction.transaction_type}",
        f"  to             {transaction.to}",
        f"  value          {transaction.value} wei = {format_ether(transaction.value)} ether",
        f"  nonce          {transaction.nonce}",
        f"  gas limit      {transaction.gas}",
    ]
    if transaction.gas_price is not None:
        lines.append(f"  gas price      {transaction.gas_price} wei")
    if transaction.max_fee_per_gas is not None:
        lines.append(f"  max fee        {transaction.max_fee_per_gas} wei per gas")
    if transaction.max_priority_fee_per_gas is not None:
        lines.append(f"  priority fee   {transaction.max_priority_fee_per_gas} wei per gas")
    # The per-gas prices alone hide the total: a modest-looking price times an enormous gas limit can cost more
    # than the value sent, and the key pays all of it. So the approver sees the most it can cost in ether.
    max_fee = transaction.max_fee_wei
    equation = f"{transaction.gas} gas x {format_gwei(transaction.max_price_per_gas)} gwei"
    if transaction.max_fee_per_blob_gas is not None:
        # The whole equation, so that the total on the left is the sum the approver can check on the right.
        equation += (
            f" + {transaction.blob_gas} blob gas x {format_gwei(transaction.max_fee_per_blob_gas)} gwei"
        )
    lines.append(f"  max total fee  {format_ether(max_fee)} ether ({max_fee} wei) = {equation}")
    if transaction.max_fee_per_blob_gas is not None:
        lines.append(
            f"  blob fee       {transaction.max_fee_per_blob_gas} wei per blob gas x {transaction.blob_gas} blob gas"
            " (included in the max total fee above)"
        )
        lines += [
            f"  blob [{index}]       0x{blob_hash.hex()} (versioned hash; custody never sees the blob)"
            for index, blob_hash in enumerate(transaction.blob_versioned_hashes)
        ]
    if transaction.authorization_list:
        # Each authorization is also an intent below, flagged; this line says there are some before the tree.
        lines.append(
            f"  AUTHORIZATIONS {len(transaction.authorization_list)}: accounts that will run a delegate's code"
            " (each below)"
        )
    if transaction.access_list:
        lines.append(f"  access list    {len(transaction.access_list)} entries")
    if transaction.data:
        lines.append(f"  data           0x{transaction.data.hex()} ({len(transaction.data)} bytes)")
    else:
        lines.append("  data           none")
    return lines


def _authorization_lines(authorization: Authorization) -> list[str]:
    """An EIP-7702 authorization, with the warning first: the key's account will run the delegate's code."""
    chain = (
        f"0: EVERY CHAIN (valid on every EVM chain where the key's account nonce is {authorization.nonce})"
        if authorization.chain_id == EVERY_CHAIN
        else str(authorization.chain_id)
    )
    role = (
        "none: this clears the delegation"
        if clears_delegation(authorization.delegate)
        else "the code the key's account will run"
    )
    return [
        f"  !!! {delegation_warning(authorization.delegate)} !!!",
        f"  delegate       {authorization.delegate} ({role})",
        f"  chain id       {chain}",
        f"  nonce          {authorization.nonce} (the key's account nonce when the authorization is used)",
    ]


def _typed_data_lines(typed_data: TypedData) -> list[str]:
    lines = ["  domain"]
    for name, value in typed_data.domain.items():
        lines += _typed_value_lines(name, value, indent=4)
    lines.append(f"  {printable(typed_data.primary_type)}")
    for name, value in typed_data.message.items():
        lines += _typed_value_lines(name, value, indent=4)
    return lines


def _typed_value_lines(name: str, value: object, *, indent: int) -> list[str]:
    """A typed-data value in full: a struct member by member, an array item by item, nested below its name."""
    pad = " " * indent
    if isinstance(value, Mapping):
        lines = [f"{pad}{printable(name)}:" if value else f"{pad}{printable(name)}: (empty)"]
        for member, inner in value.items():
            lines += _typed_value_lines(str(member), inner, indent=indent + 2)
        return lines
    if isinstance(value, list):
        lines = [f"{pad}{printable(name)}: {len(value)} item{'' if len(value) == 1 else 's'}"]
        for position, inner in enumerate(value):
            lines += _typed_value_lines(f"[{position}]", inner, indent=indent + 2)
        return lines
    return [f"{pad}{printable(name)} = {_scalar_text(value)}"]


def _scalar_text(value: object) -> str:
    if isinstance(value, str):
        return printable(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return printable(str(value))


def _message_lines(message: Message) -> list[str]:
    try:
        text = message.canonical.decode("utf-8")
    except UnicodeDecodeError:
        return [f"  message        {len(message.canonical)} bytes, not UTF-8: 0x{message.canonical.hex()}"]
    return [f"  message        {len(message.canonical)} bytes of text:"] + [
        f"    | {printable(line)}" for line in text.split("\n")
    ]


def _policy_change_lines(payload: bytes, active_policy: str | None) -> list[str]:
    try:
        proposed = payload.decode("utf-8")
    except UnicodeDecodeError:
        return [f"  proposed policy is not UTF-8 text ({len(payload)} bytes); do not approve it"]
    lines = ["  proposed policy document:"]
    lines += [f"    | {printable(line)}" for line in proposed.split("\n")]
    if active_policy is None:
        lines.append("  (the active policy could not be fetched, so no comparison is shown)")
        return lines
    diff = list(
        difflib.unified_diff(
            active_policy.splitlines(), proposed.splitlines(), "active policy", "proposed policy", lineterm=""
        )
    )
    lines.append("  changes against the active policy:" if diff else "  no changes against the active policy")
    lines += [f"    {printable(line)}" for line in diff]
    return lines


def _unfreeze_lines(request: custody_pb2.SigningRequest) -> list[str]:
    try:
        document = json.loads(bytes(request.payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        document = None
    key = document.get("key") if isinstance(document, dict) else None
    if not isinstance(key, str):
        return [
            f"  payload        {printable(bytes(request.payload).decode('utf-8', 'replace'))} (not understood)"
        ]
    lines = [f"  unfreeze key   {printable(key)}: once approved it signs again"]
    freeze = document.get("freeze") if isinstance(document, dict) else None
    if isinstance(freeze, int) and not isinstance(freeze, bool):
        lines.append(f"  lifts          freeze {freeze} only; a later freeze of the key stays")
    else:
        # Unfreezes asked for before they named their freeze lift nothing when approved.
        lines.append("  lifts          no named freeze: approving it changes nothing")
    if request.address:
        lines.append(f"  its address    {request.address} (according to the daemon)")
    return lines


def _timestamp(value: str, field: str, request_id: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"the daemon sent request {request_id} with an unreadable {field} {value[:40]!r}", field=field
        ) from None

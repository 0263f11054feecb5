"""How keys and requests look on the terminal: JSON objects for scripts, aligned text for people.

The JSON shapes are a contract: field names, 0x-prefixed lowercase hex for bytes, state and kind names without
the proto enum prefixes, null for absent values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import click

from custody.api._gen import custody_pb2
from custody.domain.intents import (
    UNLIMITED,
    UNLIMITED_UINT160,
    Intent,
    IntentFlag,
    IntentKind,
    PartyRole,
    TokenAmount,
    TypedDataDomain,
    all_flags,
)

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
        # A policy change concerns no key: null, as the text says "(none: a policy change)".
        "key": request.key_label or None,
        "key_id": request.key_id or None,
        "address": request.address or None,
        "requester": request.requester,
        "kind": kind,
        # The proto uses zero for "no chain id"; no chain has id zero, so null says it plainly. An EIP-7702
        # authorization is the exception: its chain id 0 means every chain, and is shown as 0.
        "chain_id": request.chain_id if _is_authorization(request) else request.chain_id or None,
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
        if _is_authorization(request):
            answer.update(authorization_signature_fields(request.signature))
    if request.signed_tx:
        answer["signed_tx"] = hex_bytes(request.signed_tx)
    if request.tx_hash:
        answer["tx_hash"] = hex_bytes(request.tx_hash)
    if state == "FAILED" or request.error:
        answer["error"] = request.error
    return answer


def reason_beyond_rule(decision: custody_pb2.Decision) -> str:
    """The decision's reason, or "" when it only restates its rule: a rule's own reason repeats the rule's
    name and what the action and quorum lines say ("rule 'ops' allows this request", "rule 'treasury' needs
    approval by 2 of treasury"); other reasons (deny by default, what stopped the rules) say more."""
    if decision.rule and decision.reason.startswith(f"rule {decision.rule!r} "):
        return ""
    return decision.reason


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


def request_text(request: custody_pb2.SigningRequest, *, summary: bool = True) -> str:
    """The request as the daemon describes it; ``summary=False`` leaves out the daemon's summary of the payload
    (which abbreviates long values) for a caller that prints the payload in full itself."""
    state = request_state_name(request.state)
    decision = request.decision
    decision_line = decision.action or "none"
    if decision.rule:
        decision_line += f" by rule {decision.rule}"
    reason = reason_beyond_rule(decision)
    if reason:
        decision_line += f": {reason}"
    if decision.policy_version:
        decision_line += f" (policy version {decision.policy_version})"
    lines: list[tuple[str, str]] = [
        ("request", request.request_id),
        ("state", state),
        ("key", _key_line(request)),
        ("requester", request.requester),
        ("kind", payload_kind_name(request.kind)),
        ("chain", _chain_text(request)),
    ]
    if request.replaces:
        lines.append(("replaces", f"{request.replaces} (same nonce, explicit replacement)"))
    if summary:
        # The chain, and the key and its address, are already on lines of their own; the daemon's summary
        # repeats them (as chain_id, and as key and address for an unfreeze).
        shown = {("key", request.key_label), ("address", request.address)}
        lines += [
            (name, value)
            for name, value in sorted(request.summary.items())
            if name != "chain_id" and (name, value) not in shown
        ]
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
        if _is_authorization(request):
            lines += [
                (name, str(value))
                for name, value in authorization_signature_fields(request.signature).items()
            ]
    if request.tx_hash:
        lines.append(("tx hash", hex_bytes(request.tx_hash)))
    text = _fields(lines)
    if request.signed_tx:
        text += f"\nsigned transaction (send with eth_sendRawTransaction): {hex_bytes(request.signed_tx)}"
    return text


def _is_authorization(request: custody_pb2.SigningRequest) -> bool:
    return payload_kind_name(request.kind) == "AUTHORIZATION"


def _chain_text(request: custody_pb2.SigningRequest) -> str:
    if _is_authorization(request) and not request.chain_id:
        return (
            "0: EVERY CHAIN (the authorization is valid on every EVM chain where the account's nonce is the"
            " authorization's nonce)"
        )
    return str(request.chain_id) if request.chain_id else "none"


def authorization_signature_fields(signature: bytes) -> dict[str, Any]:
    """An EIP-7702 authorization's 65-byte r || s || y-parity signature as the tuple's ``y_parity``, ``r`` and
    ``s`` (eth-account's ``sign_authorization`` names), r and s as 0x-hex quantities, the form of an
    ``authorizationList`` entry."""
    return {
        "y_parity": signature[64],
        "r": hex(int.from_bytes(signature[:32], "big")),
        "s": hex(int.from_bytes(signature[32:64], "big")),
    }


def _key_line(request: custody_pb2.SigningRequest) -> str:
    if not request.key_label:
        return "(none: a policy change)" if payload_kind_name(request.kind) == "POLICY_CHANGE" else "(none)"
    return f"{request.key_label} ({request.address})" if request.address else request.key_label


def requests_table(requests: Sequence[custody_pb2.SigningRequest]) -> str:
    if not requests:
        return "no requests match."
    rows = [
        (
            request.request_id,
            request_state_name(request.state),
            request.key_label or "-",
            payload_kind_name(request.kind),
            "0 (EVERY CHAIN)"
            if _is_authorization(request) and not request.chain_id
            else str(request.chain_id or "-"),
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


# -- intents ------------------------------------------------------------------------------------------------------
#
# The approver reads what a payload does as a tree of intents, recomputed by the CLI from the payload bytes.
# Everything an intent carries is printed, and printed in full: a value that is signed is never abbreviated.

# What each intent kind is called on the approver's screen.
INTENT_KIND_WORDS: Mapping[IntentKind, str] = {
    IntentKind.NATIVE_TRANSFER: "ether transfer",
    IntentKind.ERC20_TRANSFER: "ERC-20 token transfer",
    IntentKind.ERC20_TRANSFER_FROM: "ERC-20 token transfer from another account (transferFrom)",
    IntentKind.ERC20_APPROVE: "ERC-20 allowance (approve)",
    IntentKind.ERC20_INCREASE_ALLOWANCE: "ERC-20 allowance increase",
    IntentKind.NFT_TRANSFER: "NFT transfer (ERC-721 / ERC-1155)",
    IntentKind.SET_APPROVAL_FOR_ALL: "operator for a whole NFT collection (setApprovalForAll)",
    IntentKind.PERMIT: "EIP-2612 permit: a signed token allowance",
    IntentKind.PERMIT2_ALLOWANCE: "Permit2 allowance",
    IntentKind.PERMIT2_TRANSFER: "Permit2 signature transfer",
    IntentKind.SAFE_TRANSACTION: "Safe transaction",
    IntentKind.MULTISEND: "MultiSend batch",
    IntentKind.SAFE_CONFIGURATION: "Safe configuration change",
    IntentKind.GOVERNOR_PROPOSE: "Governor proposal",
    IntentKind.GOVERNOR_QUEUE: "Governor: queue a proposal",
    IntentKind.GOVERNOR_EXECUTE: "Governor: execute a proposal",
    IntentKind.GOVERNOR_CANCEL: "Governor: cancel a proposal",
    IntentKind.VOTE: "governance vote",
    IntentKind.TIMELOCK_SCHEDULE: "Timelock: schedule an operation",
    IntentKind.TIMELOCK_EXECUTE: "Timelock: execute an operation",
    IntentKind.TIMELOCK_CANCEL: "Timelock: cancel an operation",
    IntentKind.TIMELOCK_UPDATE_DELAY: "Timelock: change the delay",
    IntentKind.OWNERSHIP_TRANSFER: "ownership transfer",
    IntentKind.OWNERSHIP_RENOUNCE: "ownership renounced: the contract will have no owner",
    IntentKind.ROLE_GRANT: "role grant (AccessControl)",
    IntentKind.ROLE_REVOKE: "role revocation (AccessControl)",
    IntentKind.ROLE_RENOUNCE: "role renounced (AccessControl)",
    IntentKind.UPGRADE: "contract upgrade",
    IntentKind.AUTHORIZATION: "EIP-7702 AUTHORIZATION: an account will run another contract's code",
    IntentKind.TYPED_DATA: "typed data",
    IntentKind.TEXT_MESSAGE: "text message",
    IntentKind.BINARY_MESSAGE: "binary message",
    IntentKind.UNKNOWN: "UNKNOWN: custody does not know what this does",
    IntentKind.UNDECODABLE: "UNDECODABLE: it does not decode as what it claims to be",
}

PARTY_ROLE_WORDS: Mapping[PartyRole, str] = {
    PartyRole.RECIPIENT: "recipient",
    PartyRole.SPENDER: "spender",
    PartyRole.OPERATOR: "operator",
    PartyRole.NEW_OWNER: "new owner",
    PartyRole.ROLE_ACCOUNT: "role account",
    PartyRole.IMPLEMENTATION: "implementation",
    PartyRole.TARGET: "call target",
    PartyRole.MODULE: "module",
    PartyRole.DELEGATE: "delegate",
}

# Each flag in capital words, and what it means for the signer, for the top of the approver's screen.
FLAG_WORDS: Mapping[IntentFlag, str] = {
    IntentFlag.DELEGATECALL: "DELEGATECALL",
    IntentFlag.UNLIMITED_APPROVAL: "UNLIMITED APPROVAL",
    IntentFlag.OWNERSHIP_TRANSFER: "OWNERSHIP TRANSFER",
    IntentFlag.UPGRADE: "UPGRADE",
    IntentFlag.ROLE_GRANT: "ROLE GRANT",
    IntentFlag.SAFE_CONFIGURATION_CHANGE: "SAFE CONFIGURATION CHANGE",
    IntentFlag.UNKNOWN_SELECTOR: "UNKNOWN SELECTOR",
    IntentFlag.UNDECODABLE: "UNDECODABLE",
    IntentFlag.HASH_LIKE_MESSAGE: "HASH-LIKE MESSAGE",
    IntentFlag.REFUND: "REFUND",
    IntentFlag.CODE_DELEGATION: "ACCOUNT RUNS THE DELEGATE'S CODE",
    IntentFlag.CLEARS_DELEGATION: "CLEARS THE ACCOUNT'S DELEGATION",
    IntentFlag.EVERY_CHAIN: "EVERY CHAIN",
}
FLAG_MEANINGS: Mapping[IntentFlag, str] = {
    IntentFlag.DELEGATECALL: "the delegate's code runs with the caller's own storage and funds (a Safe's),"
    " so it can do anything to them",
    IntentFlag.UNLIMITED_APPROVAL: "the spender may take every token of this kind, now and later",
    IntentFlag.OWNERSHIP_TRANSFER: "someone else takes control of a contract",
    IntentFlag.UPGRADE: "a contract's code is replaced",
    IntentFlag.ROLE_GRANT: "an account gains the powers of a role over a contract",
    IntentFlag.SAFE_CONFIGURATION_CHANGE: "who controls the Safe, or what code runs in it, changes",
    IntentFlag.UNKNOWN_SELECTOR: "custody does not know what this call does; check the calldata yourself",
    IntentFlag.UNDECODABLE: "the data does not decode as what it claims to be; do not approve it",
    IntentFlag.HASH_LIKE_MESSAGE: "32 bytes that may be the hash of a transaction or order; signing them can"
    " authorise it (a Safe transaction, for one)",
    IntentFlag.REFUND: "the Safe pays gas back to a refund receiver, in ether or in a token",
    IntentFlag.CODE_DELEGATION: "the authority's account (for an authorization custody signs: this key's"
    " account) will run the delegate's code until another authorization replaces it; whoever controls that"
    " code controls everything the account holds",
    IntentFlag.CLEARS_DELEGATION: "the authority's account (for an authorization custody signs: this key's"
    " account) stops running any delegate's code and is a plain account again, whatever delegation it had",
    IntentFlag.EVERY_CHAIN: "chain id 0: the authorization is valid on every EVM chain where the account's nonce"
    " is the authorization's nonce, and there the delegate's address may hold other code or none",
}
# Labels of an intent's rows are padded to at least this width so that the values line up; a block with longer
# labels (up to the maximum) pads all of its labels to the longest, and a label beyond the maximum pushes its value.
_INTENT_LABEL_WIDTH = 16
_MAX_INTENT_LABEL_WIDTH = 28
# The last unix time a datetime can hold (9999-12-31 23:59:59 UTC); deadlines beyond it never come.
_LAST_REPRESENTABLE_SECOND = 253402300799


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, bidi overrides) written as an escape.

    Text from a payload goes through this before it reaches a terminal, so a payload cannot move the cursor,
    clear the screen or reverse text to hide what it says.
    """
    return "".join(character if character.isprintable() else _escape(character) for character in text)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def ordered_flags(flags: frozenset[IntentFlag]) -> list[IntentFlag]:
    """``flags`` in one fixed order (the order IntentFlag declares them), so screens and JSON are stable."""
    return [flag for flag in IntentFlag if flag in flags]


def flag_words(flags: frozenset[IntentFlag]) -> str:
    return ", ".join(FLAG_WORDS.get(flag, flag.value.upper()) for flag in ordered_flags(flags))


def intent_flag_lines(intents: tuple[Intent, ...], *, indent: int) -> list[str]:
    """One line per flag raised anywhere in the tree: its words, where it is (intent numbers) and what it means."""
    pad = " " * indent
    present = all_flags(intents)
    if not present:
        return [f"{pad}{'flags':<{_INTENT_LABEL_WIDTH - 2}} none"]
    numbered = list(_numbered(intents, ""))
    lines = []
    for flag in ordered_flags(present):
        where = ", ".join(number for number, intent in numbered if flag in intent.flags)
        lines.append(
            f"{pad}!!! {FLAG_WORDS.get(flag, flag.value.upper())} (intent {where}):"
            f" {FLAG_MEANINGS.get(flag, flag.value)}"
        )
    return lines


def intent_tree_lines(intents: tuple[Intent, ...], *, indent: int) -> list[str]:
    """Every intent of the tree, children indented under their parent, every value in full."""
    lines: list[str] = []
    for position, intent in enumerate(intents, start=1):
        lines += _intent_lines(intent, str(position), indent)
    return lines


def _numbered(intents: tuple[Intent, ...], prefix: str) -> Iterator[tuple[str, Intent]]:
    for position, intent in enumerate(intents, start=1):
        number = f"{prefix}{position}"
        yield number, intent
        yield from _numbered(intent.children, number + ".")


def _intent_lines(intent: Intent, number: str, indent: int) -> list[str]:
    pad = " " * indent
    heading = f"{pad}[{number}] {INTENT_KIND_WORDS.get(intent.kind, intent.kind.value)}"
    if intent.flags:
        heading += f"  !!! {flag_words(intent.flags)} !!!"
    lines = [heading]
    detail = " " * (indent + 4)
    lines += _aligned(detail, _intent_rows(intent))
    if intent.text is not None:
        lines.append(f"{detail}text:")
        lines += [f"{detail}  | {printable(line)}" for line in intent.text.split("\n")]
    if intent.fields:
        lines.append(f"{detail}fields:")
        lines += _aligned(
            detail + "  ", [(printable(label), printable(value)) for label, value in intent.fields]
        )
    for position, child in enumerate(intent.children, start=1):
        lines += _intent_lines(child, f"{number}.{position}", indent + 4)
    return lines


def _aligned(pad: str, rows: Sequence[tuple[str, str]]) -> list[str]:
    fitting = [len(label) for label, _ in rows if len(label) <= _MAX_INTENT_LABEL_WIDTH]
    width = max([_INTENT_LABEL_WIDTH, *fitting])
    return [f"{pad}{label:<{width}} {value}".rstrip() for label, value in rows]


def _intent_rows(intent: Intent) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if intent.subject:
        rows.append(("typed data" if intent.domain is not None else "call", printable(intent.subject)))
    if intent.contract is not None:
        rows.append(("contract", intent.contract))
    if intent.domain is not None:
        rows += _domain_rows(intent.domain)
    rows += [(PARTY_ROLE_WORDS.get(party.role, party.role.value), party.address) for party in intent.parties]
    rows += [("amount", amount_text(amount)) for amount in intent.amounts]
    if intent.deadline is not None:
        rows.append(("deadline", deadline_text(intent.deadline)))
    if intent.size is not None:
        rows.append(("size", f"{intent.size} bytes"))
    return rows


def _domain_rows(domain: TypedDataDomain) -> list[tuple[str, str]]:
    rows = [
        ("domain name", None if domain.name is None else printable(domain.name)),
        ("domain version", None if domain.version is None else printable(domain.version)),
        ("domain chain id", None if domain.chain_id is None else str(domain.chain_id)),
        ("domain contract", domain.verifying_contract),
        ("domain salt", domain.salt),
    ]
    return [(label, value) for label, value in rows if value is not None]


def amount_text(amount: TokenAmount) -> str:
    """An amount in base units (and in ether for ether), UNLIMITED spelled out, the token and token id named."""
    if amount.amount == UNLIMITED:
        quantity = "UNLIMITED (2**256 - 1)"
    elif amount.amount == UNLIMITED_UINT160:
        quantity = "UNLIMITED (2**160 - 1, Permit2's no-limit value)"
    elif amount.token is None:
        # Imported here because its module loads eth-utils (a tenth of a second), which listing keys or
        # requests does not need.
        from custody.domain.evm_notation import format_ether

        quantity = f"{amount.amount} wei = {format_ether(amount.amount)} ether"
    else:
        quantity = f"{amount.amount} base units"
    text = f"{quantity} of token {amount.token}" if amount.token is not None else quantity
    if amount.token_id is not None:
        text += f", token id {amount.token_id}"
    return text


def deadline_text(deadline: int) -> str:
    """A unix time as a UTC date with the number itself, e.g. "2030-03-17 17:46:40 UTC (unix 1900000000)"."""
    if not 0 <= deadline <= _LAST_REPRESENTABLE_SECOND:
        return f"never (unix {deadline}, after the year 9999)"
    moment = datetime.fromtimestamp(deadline, tz=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC (unix {deadline})"


def intents_to_json(intents: tuple[Intent, ...]) -> list[dict[str, Any]]:
    return [intent_to_json(intent) for intent in intents]


def intent_to_json(intent: Intent) -> dict[str, Any]:
    """An intent and its children; integers that can exceed 2**53 (amounts, token ids, deadlines) are decimal
    strings, so that no JSON reader rounds them."""
    domain = intent.domain
    return {
        "kind": intent.kind.value,
        "contract": intent.contract,
        "parties": [{"role": party.role.value, "address": party.address} for party in intent.parties],
        "amounts": [
            {
                "token": amount.token,
                "amount": str(amount.amount),
                "token_id": None if amount.token_id is None else str(amount.token_id),
                "unlimited": amount.unlimited,
            }
            for amount in intent.amounts
        ],
        "deadline": None if intent.deadline is None else str(intent.deadline),
        "flags": [flag.value for flag in ordered_flags(intent.flags)],
        "fields": [{"label": label, "value": value} for label, value in intent.fields],
        "children": intents_to_json(intent.children),
        "subject": intent.subject,
        "domain": None
        if domain is None
        else {
            "name": domain.name,
            "version": domain.version,
            "chain_id": domain.chain_id,
            "verifying_contract": domain.verifying_contract,
            "salt": domain.salt,
        },
        "text": intent.text,
        "size": intent.size,
    }

"""EIP-712 typed data to intents: permits, Permit2, Safe transactions and messages, votes; anything else by its
primary type and domain.

Typed data is recognised by its primary type only when its types hash exactly as the contract hashes them (the
type strings in typed_data.json): a "Permit" with a field renamed, added or retyped would be verified by no
token, or by one custody does not know, so it is undecodable rather than guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from custody.chains.evm.intents.calls import permit2_allowance, safe_transaction
from custody.chains.evm.intents.common import (
    Field,
    Undecodable,
    annotate,
    message_intent,
    undecodable,
    unlimited_flags,
)
from custody.chains.evm.knowledge import TYPED_DATA_BY_PRIMARY_TYPE, KnownTypedData
from custody.chains.evm.typed_data import DOMAIN_TYPE, StructTypes, TypedData
from custody.chains.evm.values import MAX_PAYLOAD_BYTES, parse_hex_bytes, parse_integer
from custody.domain.intents import (
    UNLIMITED,
    Intent,
    IntentKind,
    Party,
    PartyRole,
    TokenAmount,
    TypedDataDomain,
)

_VOTE_SUPPORT = {0: "against", 1: "for", 2: "abstain"}
_DOMAIN_LABELS = {
    "name": "domain name",
    "version": "domain version",
    "chainId": "domain chain id",
    "verifyingContract": "domain verifying contract",
    "salt": "domain salt",
}


def typed_data_intents(typed: TypedData) -> tuple[Intent, ...]:
    # The parsed payload keeps its canonical JSON, from which the validated types are read back.
    structs = StructTypes(json.loads(typed.canonical)["types"])
    primary = typed.primary_type
    domain = _domain(typed, structs)
    domain_fields = [
        (_DOMAIN_LABELS[name], _text(_normalized(structs, member_type, typed.domain[name], f"domain.{name}")))
        for name, member_type in ((m.name, m.type) for m in structs.structs[DOMAIN_TYPE])
        if name in typed.domain
    ]
    message = _normalized(structs, primary, typed.message, "message")
    entries = TYPED_DATA_BY_PRIMARY_TYPE.get(primary, ())
    entry = next((candidate for candidate in entries if _matches(candidate, structs, primary)), None)
    fields: list[Field] = list(domain_fields)
    _flatten(structs, entry, primary, message, "", fields)
    if entries and entry is None:
        return (
            undecodable(
                contract=typed.to,
                subject=primary,
                reason=f"its types do not hash as any {primary} custody knows",
                fields=(*fields, ("type string", structs.encode_type(primary))),
                domain=domain,
            ),
        )
    if entry is None:
        return (
            Intent(
                kind=IntentKind.TYPED_DATA,
                contract=typed.to,
                fields=tuple(fields),
                subject=primary,
                domain=domain,
            ),
        )
    document = _Document(typed, message, tuple(fields), domain)
    try:
        return (_BUILDERS[entry.id](document),)
    except Undecodable as problem:
        return (
            undecodable(
                contract=typed.to, subject=primary, reason=str(problem), fields=fields, domain=domain
            ),
        )


@dataclass(frozen=True)
class _Document:
    typed: TypedData
    message: Mapping[str, Any]
    fields: tuple[Field, ...]
    domain: TypedDataDomain

    @property
    def subject(self) -> str:
        return self.typed.primary_type

    @property
    def contract(self) -> str:
        """The verifying contract, which the signature authorises; typed data without one is undecodable."""
        if self.typed.to is None:
            raise Undecodable(
                "the domain has no verifyingContract, so nothing says which contract it authorises"
            )
        return self.typed.to

    def intent(self, kind: IntentKind, **values: Any) -> Intent:
        values.setdefault("fields", self.fields)
        return Intent(kind=kind, contract=self.contract, subject=self.subject, domain=self.domain, **values)


def _matches(entry: KnownTypedData, structs: StructTypes, primary: str) -> bool:
    encoded = structs.encode_type(primary)
    if entry.type_string is not None:
        return encoded == entry.type_string
    if entry.type_prefix is None or not encoded.startswith(entry.type_prefix):
        return False
    if len(structs.structs[primary]) != entry.member_count:
        return False
    return all(
        _struct_string(structs, dependency.split("(", 1)[0]) == dependency
        for dependency in entry.dependencies
    )


def _struct_string(structs: StructTypes, name: str) -> str | None:
    if name not in structs.structs:
        return None
    return f"{name}({','.join(f'{member.type} {member.name}' for member in structs.structs[name])})"


def _domain(typed: TypedData, structs: StructTypes) -> TypedDataDomain:
    raw = typed.domain
    salt = _normalized(structs, "bytes32", raw["salt"], "domain.salt") if "salt" in raw else None
    return TypedDataDomain(
        name=str(raw["name"]) if "name" in raw else None,
        version=str(raw["version"]) if "version" in raw else None,
        chain_id=typed.chain_id,
        verifying_contract=typed.to,
        salt="0x" + salt.hex() if isinstance(salt, bytes) else None,
    )


def _element_type(type_name: str) -> str | None:
    return type_name[: type_name.rindex("[")] if type_name.endswith("]") else None


def _normalized(structs: StructTypes, type_name: str, value: Any, where: str) -> Any:
    """A value the parser has already checked, in one form: EIP-55 addresses, ints, bytes, nested dicts."""
    element = _element_type(type_name)
    if element is not None:
        return [_normalized(structs, element, item, f"{where}[{index}]") for index, item in enumerate(value)]
    if type_name in structs.structs:
        return {
            member.name: _normalized(structs, member.type, value[member.name], f"{where}.{member.name}")
            for member in structs.structs[type_name]
        }
    if type_name == "address":
        return str(to_checksum_address(value))
    if type_name in ("bool", "string"):
        return value
    if type_name.startswith("bytes"):
        return parse_hex_bytes(value, where, max_length=MAX_PAYLOAD_BYTES)
    return parse_integer(value, where, minimum=-(2**255), maximum=2**256 - 1)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _flatten(  # noqa: PLR0917 -- a recursive walk; its arguments are its position in the document
    structs: StructTypes,
    entry: KnownTypedData | None,
    type_name: str,
    value: Any,
    label: str,
    out: list[Field],
) -> None:
    element = _element_type(type_name)
    if element is not None:
        if not value:
            out.append((label, "[] (none)"))
        for index, item in enumerate(value):
            _flatten(structs, entry, element, item, f"{label}[{index}]", out)
    elif type_name in structs.structs:
        for member in structs.structs[type_name]:
            member_label = entry.label(type_name, member.name) if entry is not None else member.name
            path = f"{label}.{member_label}" if label else member_label
            _flatten(structs, entry, member.type, value[member.name], path, out)
    else:
        out.append((label, _text(value)))


# Builders, one per entry of typed_data.json.


def _eip2612_permit(document: _Document) -> Intent:
    message = document.message
    amount = TokenAmount(document.contract, message["value"])
    return document.intent(
        IntentKind.PERMIT,
        parties=(Party(PartyRole.SPENDER, message["spender"]),),
        amounts=(amount,),
        deadline=message["deadline"],
        flags=unlimited_flags([amount]),
    )


def _dai_permit(document: _Document) -> Intent:
    # DAI's permit grants all (allowed) or nothing; an expiry of 0 never expires, which is no deadline at all.
    message = document.message
    amount = TokenAmount(document.contract, UNLIMITED if message["allowed"] else 0)
    return document.intent(
        IntentKind.PERMIT,
        parties=(Party(PartyRole.SPENDER, message["spender"]),),
        amounts=(amount,),
        deadline=message["expiry"] or None,
        flags=unlimited_flags([amount]),
    )


def _permit2_allowance(document: _Document) -> Intent:
    message = document.message
    details = message["details"] if isinstance(message["details"], list) else [message["details"]]
    return permit2_allowance(
        contract=document.contract,
        details=[(detail["token"], detail["amount"], detail["expiration"]) for detail in details],
        spender=message["spender"],
        sig_deadline=message["sigDeadline"],
        fields=document.fields,
        subject=document.subject,
        domain=document.domain,
    )


def _permit2_transfer(document: _Document) -> Intent:
    message = document.message
    permitted = message["permitted"] if isinstance(message["permitted"], list) else [message["permitted"]]
    amounts = tuple(TokenAmount(item["token"], item["amount"]) for item in permitted)
    return document.intent(
        IntentKind.PERMIT2_TRANSFER,
        parties=(Party(PartyRole.SPENDER, message["spender"]),),
        amounts=amounts,
        deadline=message["deadline"],
        flags=unlimited_flags(amounts),
    )


def _safe_tx(document: _Document) -> Intent:
    message = document.message
    # Safe's own interfaces show this hash; an owner can compare it with what the Safe app displays.
    fields = (*document.fields, ("Safe transaction hash", "0x" + document.typed.digest.hex()))
    return safe_transaction(
        safe=document.contract,
        to=message["to"],
        value=message["value"],
        data=message["data"],
        operation=message["operation"],
        gas_price=message["gasPrice"],
        refund_receiver=message["refundReceiver"],
        fields=fields,
        depth=0,
        subject=document.subject,
        domain=document.domain,
    )


def _safe_message(document: _Document) -> Intent:
    # The Safe then treats a signature over this as its own (EIP-1271): what it signs is the inner message.
    return document.intent(IntentKind.TYPED_DATA, children=(message_intent(document.message["message"]),))


def _vote(document: _Document) -> Intent:
    support = document.message["support"]
    note = _VOTE_SUPPORT.get(support, "a value only the Governor's counting module gives meaning")
    return document.intent(IntentKind.VOTE, fields=annotate(document.fields, "support", note))


_BUILDERS: dict[str, Callable[[_Document], Intent]] = {
    "eip2612_permit": _eip2612_permit,
    "dai_permit": _dai_permit,
    "permit2_single": _permit2_allowance,
    "permit2_batch": _permit2_allowance,
    "permit2_transfer": _permit2_transfer,
    "permit2_batch_transfer": _permit2_transfer,
    "permit2_witness_transfer": _permit2_transfer,
    "permit2_batch_witness_transfer": _permit2_transfer,
    "safe_tx": _safe_tx,
    "safe_message": _safe_message,
    "ballot_v4": _vote,
    "ballot_v5": _vote,
    "extended_ballot_v4": _vote,
    "extended_ballot_v5": _vote,
}

_KNOWN_IDS: Sequence[str] = [entry.id for entries in TYPED_DATA_BY_PRIMARY_TYPE.values() for entry in entries]
if set(_KNOWN_IDS) != set(_BUILDERS):
    # An entry of typed_data.json without a builder (or the reverse) is a programming error: fail the import.
    raise RuntimeError(
        f"typed_data.json and the typed-data builders disagree: {sorted(set(_KNOWN_IDS) ^ set(_BUILDERS))}"
    )

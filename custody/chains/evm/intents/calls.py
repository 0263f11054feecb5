"""Calldata to intents: what a call does, decoded strictly from the functions in the knowledge files.

Each known function has one builder below that says what its decoded arguments mean (who gains, which token
moves how much, which calls it makes on the caller's behalf). Functions that wrap other calls (a Safe
transaction, a MultiSend batch, a proposal, a timelock operation, upgradeToAndCall) decode those calls as child
intents, recursively, to a bounded depth and count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from custody.chains.evm.intents.abi import argument_fields, strict_abi_decode
from custody.chains.evm.intents.common import (
    SAFE_OPERATIONS,
    ZERO_ADDRESS,
    Field,
    Undecodable,
    annotate,
    check_batch,
    native_transfer,
    nested,
    undecodable,
    unlimited_flags,
)
from custody.chains.evm.knowledge import FUNCTIONS_BY_SELECTOR, ROLE_NAMES, SELECTOR_BYTES, KnownFunction
from custody.domain.intents import (
    UNLIMITED,
    Intent,
    IntentFlag,
    IntentKind,
    Party,
    PartyRole,
    TokenAmount,
    TypedDataDomain,
)

_WORD_BYTES = 32
_ADDRESS_BYTES = 20
# A MultiSend entry: operation (1 byte), to (20), value (32), data length (32), then the data itself.
_MULTISEND_HEADER_BYTES = 1 + _ADDRESS_BYTES + _WORD_BYTES + _WORD_BYTES
# GovernorCountingSimple's vote types; other counting modules give support their own meaning.
_VOTE_SUPPORT = {0: "against", 1: "for", 2: "abstain"}


def call_intents(to: str, value: int, data: bytes, depth: int) -> tuple[Intent, ...]:
    """What sending ``data`` with ``value`` wei to ``to`` does: the call's intent, and a native transfer when
    ether moves (a call with no calldata is a native transfer alone)."""
    if not data:
        return (native_transfer(to, value),)
    intent = call_intent(to, data, depth)
    return (intent, native_transfer(to, value)) if value else (intent,)


def call_intent(to: str, data: bytes, depth: int) -> Intent:
    """The intent of calldata ``data`` sent to ``to``, ``depth`` calls below the signed payload."""
    raw = ("calldata", "0x" + data.hex())
    if len(data) < SELECTOR_BYTES:
        return undecodable(
            contract=to,
            subject="",
            reason=f"the calldata is {len(data)} bytes, shorter than a 4-byte function selector",
            fields=(raw,),
        )
    selector = "0x" + data[:SELECTOR_BYTES].hex()
    function = FUNCTIONS_BY_SELECTOR.get(data[:SELECTOR_BYTES])
    if function is None:
        return Intent(
            kind=IntentKind.UNKNOWN,
            contract=to,
            flags=frozenset({IntentFlag.UNKNOWN_SELECTOR}),
            fields=(("selector", selector), raw),
            subject=selector,
        )
    values = strict_abi_decode(function.parameter_types, data[SELECTOR_BYTES:])
    if values is None:
        return undecodable(
            contract=to,
            subject=function.signature,
            reason=f"the calldata is not the canonical ABI encoding of {function.signature}",
            fields=(("selector", selector), raw),
        )
    call = _Call(function, to, values, tuple(argument_fields(function.parameters, values)), depth)
    if function.display_only:
        return Intent(
            kind=IntentKind.UNKNOWN,
            contract=to,
            flags=frozenset({IntentFlag.UNKNOWN_SELECTOR}),
            fields=call.fields,
            subject=function.signature,
        )
    try:
        return _BUILDERS[function.signature](call)
    except Undecodable as problem:
        return undecodable(contract=to, subject=function.signature, reason=str(problem), fields=call.fields)


@dataclass(frozen=True)
class _Call:
    """A decoded call of a known function, for its builder."""

    function: KnownFunction
    to: str
    values: tuple[Any, ...]
    fields: tuple[Field, ...]
    depth: int
    arguments: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        names = (parameter.name for parameter in self.function.parameters)
        object.__setattr__(self, "arguments", dict(zip(names, self.values, strict=True)))

    def address(self, name: str) -> str:
        return str(to_checksum_address(self.arguments[name]))

    def intent(
        self,
        kind: IntentKind,
        *,
        parties: Sequence[Party] = (),
        amounts: Sequence[TokenAmount] = (),
        deadline: int | None = None,
        flags: frozenset[IntentFlag] = frozenset(),
        fields: Sequence[Field] | None = None,
        children: Sequence[Intent] = (),
    ) -> Intent:
        return Intent(
            kind=kind,
            contract=self.to,
            parties=tuple(parties),
            amounts=tuple(amounts),
            deadline=deadline,
            flags=flags,
            fields=tuple(self.fields if fields is None else fields),
            children=tuple(children),
            subject=self.function.signature,
        )


# ERC-20, ERC-721 and ERC-1155.


def _erc20_transfer(call: _Call) -> Intent:
    amount = TokenAmount(call.to, call.arguments["amount"])
    return call.intent(
        IntentKind.ERC20_TRANSFER, parties=[Party(PartyRole.RECIPIENT, call.address("to"))], amounts=[amount]
    )


def _erc20_transfer_from(call: _Call) -> Intent:
    amount = TokenAmount(call.to, call.arguments["amount"])
    return call.intent(
        IntentKind.ERC20_TRANSFER_FROM,
        parties=[Party(PartyRole.RECIPIENT, call.address("to"))],
        amounts=[amount],
    )


def _erc20_allowance(kind: IntentKind, amount_name: str) -> Callable[[_Call], Intent]:
    def build(call: _Call) -> Intent:
        amount = TokenAmount(call.to, call.arguments[amount_name])
        return call.intent(
            kind,
            parties=[Party(PartyRole.SPENDER, call.address("spender"))],
            amounts=[amount],
            flags=unlimited_flags([amount]),
        )

    return build


def _nft_transfer(call: _Call) -> Intent:
    if "tokenId" in call.arguments:  # ERC-721: one token
        amounts = [TokenAmount(call.to, 1, token_id=call.arguments["tokenId"])]
    elif "id" in call.arguments:  # ERC-1155 safeTransferFrom
        amounts = [TokenAmount(call.to, call.arguments["value"], token_id=call.arguments["id"])]
    else:  # ERC-1155 safeBatchTransferFrom
        ids, values = call.arguments["ids"], call.arguments["values"]
        if len(ids) != len(values):
            raise Undecodable(f"the batch has {len(ids)} token ids but {len(values)} amounts")
        amounts = [
            TokenAmount(call.to, value, token_id=token_id)
            for token_id, value in zip(ids, values, strict=True)
        ]
    return call.intent(
        IntentKind.NFT_TRANSFER, parties=[Party(PartyRole.RECIPIENT, call.address("to"))], amounts=amounts
    )


def _set_approval_for_all(call: _Call) -> Intent:
    # Approving an operator hands it every token of the collection, now and later: an unlimited approval.
    approved = bool(call.arguments["approved"])
    amounts = [TokenAmount(call.to, UNLIMITED)] if approved else []
    return call.intent(
        IntentKind.SET_APPROVAL_FOR_ALL,
        parties=[Party(PartyRole.OPERATOR, call.address("operator"))],
        amounts=amounts,
        flags=unlimited_flags(amounts),
    )


# Permit2.


def _permit2_approve(call: _Call) -> Intent:
    amount = TokenAmount(call.address("token"), call.arguments["amount"])
    return call.intent(
        IntentKind.PERMIT2_ALLOWANCE,
        parties=[Party(PartyRole.SPENDER, call.address("spender"))],
        amounts=[amount],
        deadline=call.arguments["expiration"],
        flags=unlimited_flags([amount]),
    )


def permit2_allowance(
    *,
    contract: str,
    details: Sequence[tuple[str, int, int]],
    spender: str,
    sig_deadline: int,
    fields: Sequence[Field],
    subject: str,
    domain: TypedDataDomain | None = None,
) -> Intent:
    """A Permit2 PermitSingle or PermitBatch, signed or submitted: ``details`` are (token, amount, expiration).

    Its deadline is the last moment the spender can move tokens: each allowance's expiration, or for an
    expiration of 0 (Permit2 then sets it to the block that submits the permit) the signature deadline.
    """
    amounts = [TokenAmount(token, amount) for token, amount, _ in details]
    deadline = max((expiration or sig_deadline for _, _, expiration in details), default=sig_deadline)
    return Intent(
        kind=IntentKind.PERMIT2_ALLOWANCE,
        contract=contract,
        parties=(Party(PartyRole.SPENDER, spender),),
        amounts=tuple(amounts),
        deadline=deadline,
        flags=unlimited_flags(amounts),
        fields=tuple(fields),
        subject=subject,
        domain=domain,
    )


def _permit2_permit(call: _Call) -> Intent:
    if "permitSingle" in call.arguments:
        single, spender, sig_deadline = call.arguments["permitSingle"]
        entries = [single]
    else:
        entries, spender, sig_deadline = call.arguments["permitBatch"]
    details = [
        (str(to_checksum_address(token)), amount, expiration) for token, amount, expiration, _ in entries
    ]
    return permit2_allowance(
        contract=call.to,
        details=details,
        spender=str(to_checksum_address(spender)),
        sig_deadline=sig_deadline,
        fields=call.fields,
        subject=call.function.signature,
    )


# Safe.


def operation_call_intents(
    to: str, value: int, data: bytes, operation: int, depth: int
) -> tuple[Intent, ...]:
    """A call that a Safe or a MultiSend batch makes with an operation: CALL, or DELEGATECALL, which runs the
    target's code with the caller's storage and balance (and ignores the value)."""
    if operation == 0:
        return tuple(
            replace(intent, fields=(("operation", "CALL"), *intent.fields))
            for intent in call_intents(to, value, data, depth)
        )
    if operation == 1:
        delegated = (
            call_intent(to, data, depth)
            if data
            else Intent(
                kind=IntentKind.UNKNOWN,
                contract=to,
                flags=frozenset({IntentFlag.UNKNOWN_SELECTOR}),
                fields=(("calldata", "0x (none: runs the contract's fallback)"),),
            )
        )
        ignored = (("value (wei, ignored by DELEGATECALL)", str(value)),) if value else ()
        return (
            replace(
                delegated,
                flags=delegated.flags | {IntentFlag.DELEGATECALL},
                parties=(*delegated.parties, Party(PartyRole.DELEGATE, to)),
                fields=(("operation", "DELEGATECALL"), *ignored, *delegated.fields),
            ),
        )
    return (
        undecodable(
            contract=to,
            subject="",
            reason=f"operation {operation} is neither CALL (0) nor DELEGATECALL (1)",
            fields=(("calldata", "0x" + data.hex()),),
        ),
    )


def safe_transaction(
    *,
    safe: str,
    to: str,
    value: int,
    data: bytes,
    operation: int,
    gas_price: int,
    refund_receiver: str,
    fields: Sequence[Field],
    depth: int,
    subject: str,
    domain: TypedDataDomain | None = None,
) -> Intent:
    """A Safe transaction (SafeTx typed data or execTransaction calldata): the Safe's call as its child."""
    flags: set[IntentFlag] = set()
    parties: list[Party] = []
    if operation == 1:
        flags.add(IntentFlag.DELEGATECALL)
        parties.append(Party(PartyRole.DELEGATE, to))
    else:
        parties.append(Party(PartyRole.TARGET, to))
    # The Safe pays gas back, in gasToken, to refundReceiver (or to whoever submits it) when gasPrice > 0.
    if gas_price > 0 or refund_receiver != ZERO_ADDRESS:
        flags.add(IntentFlag.REFUND)
        if refund_receiver != ZERO_ADDRESS:
            parties.append(Party(PartyRole.RECIPIENT, refund_receiver))
    return Intent(
        kind=IntentKind.SAFE_TRANSACTION,
        contract=safe,
        parties=tuple(parties),
        flags=frozenset(flags),
        fields=annotate(fields, "operation", SAFE_OPERATIONS.get(operation, "neither CALL nor DELEGATECALL")),
        children=nested(depth, to, lambda inner: operation_call_intents(to, value, data, operation, inner)),
        subject=subject,
        domain=domain,
    )


def _exec_transaction(call: _Call) -> Intent:
    return safe_transaction(
        safe=call.to,
        to=call.address("to"),
        value=call.arguments["value"],
        data=bytes(call.arguments["data"]),
        operation=call.arguments["operation"],
        gas_price=call.arguments["gasPrice"],
        refund_receiver=call.address("refundReceiver"),
        fields=call.fields,
        depth=call.depth,
        subject=call.function.signature,
    )


def _multisend_entries(packed: bytes) -> list[tuple[int, str, int, bytes]]:
    """The calls of a MultiSend batch, each packed as operation, to, value, data length, data."""
    entries: list[tuple[int, str, int, bytes]] = []
    offset = 0
    while offset < len(packed):
        number = len(entries) + 1
        check_batch(number, "the batch")
        if len(packed) - offset < _MULTISEND_HEADER_BYTES:
            raise Undecodable(f"call {number} of the batch is cut short")
        operation = packed[offset]
        to = str(to_checksum_address(packed[offset + 1 : offset + 1 + _ADDRESS_BYTES]))
        value_start = offset + 1 + _ADDRESS_BYTES
        value = int.from_bytes(packed[value_start : value_start + _WORD_BYTES], "big")
        length_start = value_start + _WORD_BYTES
        length = int.from_bytes(packed[length_start : length_start + _WORD_BYTES], "big")
        data_start = length_start + _WORD_BYTES
        if length > len(packed) - data_start:
            raise Undecodable(
                f"call {number} of the batch claims {length} bytes of calldata but only"
                f" {len(packed) - data_start} remain"
            )
        entries.append((operation, to, value, packed[data_start : data_start + length]))
        offset = data_start + length
    return entries


def _multisend(call: _Call) -> Intent:
    entries = _multisend_entries(bytes(call.arguments["transactions"]))
    if not entries:
        raise Undecodable("the batch has no calls")

    def children(depth: int) -> list[Intent]:
        return [
            intent
            for operation, to, value, data in entries
            for intent in operation_call_intents(to, value, data, operation, depth)
        ]

    return call.intent(IntentKind.MULTISEND, children=nested(call.depth, call.to, children))


def _safe_configuration(
    *,
    new_owner: str | None = None,
    module: tuple[str, ...] = (),
    implementation: str | None = None,
) -> Callable[[_Call], Intent]:
    """A Safe call that changes who controls the Safe: owners, threshold, modules, guards, handler, singleton."""

    def build(call: _Call) -> Intent:
        parties = []
        if new_owner is not None:
            parties.append(Party(PartyRole.NEW_OWNER, call.address(new_owner)))
        for name in module:
            # Setting a guard or handler to zero removes it; nobody gains anything then.
            if call.address(name) != ZERO_ADDRESS:
                parties.append(Party(PartyRole.MODULE, call.address(name)))
        flags = {IntentFlag.SAFE_CONFIGURATION_CHANGE}
        if implementation is not None:
            parties.append(Party(PartyRole.IMPLEMENTATION, call.address(implementation)))
            flags.add(IntentFlag.UPGRADE)
        return call.intent(IntentKind.SAFE_CONFIGURATION, parties=parties, flags=frozenset(flags))

    return build


# Governance: OpenZeppelin Governor and TimelockController.


def _actions(call: _Call, targets_name: str, calldatas_name: str) -> list[tuple[str, int, bytes]]:
    targets, values, calldatas = (
        call.arguments[targets_name],
        call.arguments["values"],
        call.arguments[calldatas_name],
    )
    if not len(targets) == len(values) == len(calldatas):
        raise Undecodable(
            f"{len(targets)} targets, {len(values)} values and {len(calldatas)} calldatas do not match"
        )
    if not targets:
        raise Undecodable("there are no calls")
    check_batch(len(targets), "the batch")
    return [
        (str(to_checksum_address(target)), value, bytes(data))
        for target, value, data in zip(targets, values, calldatas, strict=True)
    ]


def _action_children(call: _Call, actions: Sequence[tuple[str, int, bytes]]) -> tuple[Intent, ...]:
    return nested(
        call.depth,
        call.to,
        lambda depth: [
            intent for to, value, data in actions for intent in call_intents(to, value, data, depth)
        ],
    )


def _targets(actions: Sequence[tuple[str, int, bytes]]) -> list[Party]:
    return [Party(PartyRole.TARGET, to) for to in dict.fromkeys(to for to, _, _ in actions)]


def proposal_id(actions: Sequence[tuple[str, int, bytes]], description_hash: bytes) -> int:
    """Governor.hashProposal: uint256(keccak256(abi.encode(targets, values, calldatas, descriptionHash)))."""
    encoded = abi_encode(
        ["address[]", "uint256[]", "bytes[]", "bytes32"],
        [
            [to for to, _, _ in actions],
            [value for _, value, _ in actions],
            [data for _, _, data in actions],
            description_hash,
        ],
    )
    return int.from_bytes(keccak(encoded), "big")


def _governor_proposal(kind: IntentKind, *, with_children: bool = True) -> Callable[[_Call], Intent]:
    def build(call: _Call) -> Intent:
        actions = _actions(call, "targets", "calldatas")
        if "description" in call.arguments:
            description_hash = bytes(keccak(text=call.arguments["description"]))
            extra: tuple[Field, ...] = (("description hash", "0x" + description_hash.hex()),)
        else:
            description_hash = bytes(call.arguments["descriptionHash"])
            extra = ()
        identifier = proposal_id(actions, description_hash)
        return call.intent(
            kind,
            parties=_targets(actions),
            fields=(
                *call.fields,
                *extra,
                ("proposal id", str(identifier)),
                ("proposal id (hex)", hex(identifier)),
            ),
            # Cancelling makes no call: judging the actions would only make an urgent cancel harder.
            children=_action_children(call, actions) if with_children else (),
        )

    return build


def _governor_by_id(kind: IntentKind) -> Callable[[_Call], Intent]:
    def build(call: _Call) -> Intent:
        children: tuple[Intent, ...] = ()
        if kind is not IntentKind.GOVERNOR_CANCEL:
            # The calls a proposal id stands for are not in the calldata, so a policy cannot judge them here.
            children = (
                Intent(
                    kind=IntentKind.UNKNOWN,
                    contract=call.to,
                    fields=(("proposal actions", "not in the calldata: only the proposal id is"),),
                    subject="proposal actions",
                ),
            )
        return call.intent(kind, children=children)

    return build


def _vote(call: _Call) -> Intent:
    support = call.arguments["support"]
    note = _VOTE_SUPPORT.get(support, "a value only the Governor's counting module gives meaning")
    return call.intent(IntentKind.VOTE, fields=annotate(call.fields, "support", note))


def operation_id(
    targets: Sequence[str],
    values: Sequence[int],
    datas: Sequence[bytes],
    predecessor: bytes,
    salt: bytes,
    *,
    batch: bool,
) -> bytes:
    """TimelockController.hashOperation / hashOperationBatch."""
    if batch:
        encoded = abi_encode(
            ["address[]", "uint256[]", "bytes[]", "bytes32", "bytes32"],
            [list(targets), list(values), list(datas), predecessor, salt],
        )
    else:
        encoded = abi_encode(
            ["address", "uint256", "bytes", "bytes32", "bytes32"],
            [targets[0], values[0], datas[0], predecessor, salt],
        )
    return bytes(keccak(encoded))


def _timelock_operation(kind: IntentKind, *, batch: bool) -> Callable[[_Call], Intent]:
    def build(call: _Call) -> Intent:
        if batch:
            actions = _actions(call, "targets", "payloads")
        else:
            data_name = "data" if "data" in call.arguments else "payload"
            actions = [(call.address("target"), call.arguments["value"], bytes(call.arguments[data_name]))]
        identifier = operation_id(
            [to for to, _, _ in actions],
            [value for _, value, _ in actions],
            [data for _, _, data in actions],
            bytes(call.arguments["predecessor"]),
            bytes(call.arguments["salt"]),
            batch=batch,
        )
        return call.intent(
            kind,
            parties=_targets(actions),
            fields=(*call.fields, ("operation id", "0x" + identifier.hex())),
            children=_action_children(call, actions),
        )

    return build


def _plain(kind: IntentKind) -> Callable[[_Call], Intent]:
    return lambda call: call.intent(kind)


# Control of contracts: ownership, roles, upgrades.


def _transfer_ownership(call: _Call) -> Intent:
    return call.intent(
        IntentKind.OWNERSHIP_TRANSFER,
        parties=[Party(PartyRole.NEW_OWNER, call.address("newOwner"))],
        flags=frozenset({IntentFlag.OWNERSHIP_TRANSFER}),
    )


def _renounce_ownership(call: _Call) -> Intent:
    # Renouncing hands the contract to nobody, for good: as grave as handing it to someone.
    return call.intent(IntentKind.OWNERSHIP_RENOUNCE, flags=frozenset({IntentFlag.OWNERSHIP_TRANSFER}))


def _role(kind: IntentKind) -> Callable[[_Call], Intent]:
    def build(call: _Call) -> Intent:
        name = ROLE_NAMES.get(bytes(call.arguments["role"]))
        fields = (*call.fields, ("role name", name)) if name is not None else call.fields
        flags = frozenset({IntentFlag.ROLE_GRANT}) if kind is IntentKind.ROLE_GRANT else frozenset()
        return call.intent(
            kind, parties=[Party(PartyRole.ROLE_ACCOUNT, call.address("account"))], flags=flags, fields=fields
        )

    return build


def _upgrade(call: _Call) -> Intent:
    # upgradeTo / upgradeToAndCall act on the proxy called; ProxyAdmin's upgrade / upgradeAndCall name it.
    proxy = call.address("proxy") if "proxy" in call.arguments else call.to
    implementation_name = "implementation" if "implementation" in call.arguments else "newImplementation"
    parties = [Party(PartyRole.IMPLEMENTATION, call.address(implementation_name))]
    if proxy != call.to:
        parties.append(Party(PartyRole.TARGET, proxy))
    data = bytes(call.arguments.get("data", b""))
    # The call runs in the proxy, as the new implementation's code: a call to the proxy itself.
    children = nested(call.depth, proxy, lambda depth: (call_intent(proxy, data, depth),)) if data else ()
    return call.intent(
        IntentKind.UPGRADE, parties=parties, flags=frozenset({IntentFlag.UPGRADE}), children=children
    )


_BUILDERS: dict[str, Callable[[_Call], Intent]] = {
    # ERC-20.
    "transfer(address,uint256)": _erc20_transfer,
    "transferFrom(address,address,uint256)": _erc20_transfer_from,
    "approve(address,uint256)": _erc20_allowance(IntentKind.ERC20_APPROVE, "amount"),
    "increaseAllowance(address,uint256)": _erc20_allowance(IntentKind.ERC20_INCREASE_ALLOWANCE, "addedValue"),
    # ERC-721 and ERC-1155.
    "safeTransferFrom(address,address,uint256)": _nft_transfer,
    "safeTransferFrom(address,address,uint256,bytes)": _nft_transfer,
    "safeTransferFrom(address,address,uint256,uint256,bytes)": _nft_transfer,
    "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)": _nft_transfer,
    "setApprovalForAll(address,bool)": _set_approval_for_all,
    # Permit2.
    "approve(address,address,uint160,uint48)": _permit2_approve,
    "permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)": _permit2_permit,
    "permit(address,((address,uint160,uint48,uint48)[],address,uint256),bytes)": _permit2_permit,
    # Safe.
    "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)": _exec_transaction,
    "multiSend(bytes)": _multisend,
    "addOwnerWithThreshold(address,uint256)": _safe_configuration(new_owner="owner"),
    "removeOwner(address,address,uint256)": _safe_configuration(),
    "swapOwner(address,address,address)": _safe_configuration(new_owner="newOwner"),
    "changeThreshold(uint256)": _safe_configuration(),
    "enableModule(address)": _safe_configuration(module=("module",)),
    "disableModule(address,address)": _safe_configuration(),
    "setGuard(address)": _safe_configuration(module=("guard",)),
    "setModuleGuard(address)": _safe_configuration(module=("moduleGuard",)),
    "setFallbackHandler(address)": _safe_configuration(module=("handler",)),
    "changeMasterCopy(address)": _safe_configuration(implementation="_masterCopy"),
    "migrateSingleton(address)": _safe_configuration(implementation="target"),
    "migrateL2Singleton(address)": _safe_configuration(implementation="target"),
    "migrateWithFallbackHandler(address,address)": _safe_configuration(
        implementation="target", module=("fallbackHandler",)
    ),
    "migrateL2WithFallbackHandler(address,address)": _safe_configuration(
        implementation="target", module=("fallbackHandler",)
    ),
    # Governor.
    "propose(address[],uint256[],bytes[],string)": _governor_proposal(IntentKind.GOVERNOR_PROPOSE),
    "queue(address[],uint256[],bytes[],bytes32)": _governor_proposal(IntentKind.GOVERNOR_QUEUE),
    "execute(address[],uint256[],bytes[],bytes32)": _governor_proposal(IntentKind.GOVERNOR_EXECUTE),
    "cancel(address[],uint256[],bytes[],bytes32)": _governor_proposal(
        IntentKind.GOVERNOR_CANCEL, with_children=False
    ),
    "queue(uint256)": _governor_by_id(IntentKind.GOVERNOR_QUEUE),
    "execute(uint256)": _governor_by_id(IntentKind.GOVERNOR_EXECUTE),
    "cancel(uint256)": _governor_by_id(IntentKind.GOVERNOR_CANCEL),
    "castVote(uint256,uint8)": _vote,
    "castVoteWithReason(uint256,uint8,string)": _vote,
    "castVoteWithReasonAndParams(uint256,uint8,string,bytes)": _vote,
    "castVoteBySig(uint256,uint8,uint8,bytes32,bytes32)": _vote,
    "castVoteBySig(uint256,uint8,address,bytes)": _vote,
    "castVoteWithReasonAndParamsBySig(uint256,uint8,string,bytes,uint8,bytes32,bytes32)": _vote,
    "castVoteWithReasonAndParamsBySig(uint256,uint8,address,string,bytes,bytes)": _vote,
    # TimelockController.
    "schedule(address,uint256,bytes,bytes32,bytes32,uint256)": _timelock_operation(
        IntentKind.TIMELOCK_SCHEDULE, batch=False
    ),
    "scheduleBatch(address[],uint256[],bytes[],bytes32,bytes32,uint256)": _timelock_operation(
        IntentKind.TIMELOCK_SCHEDULE, batch=True
    ),
    "execute(address,uint256,bytes,bytes32,bytes32)": _timelock_operation(
        IntentKind.TIMELOCK_EXECUTE, batch=False
    ),
    "executeBatch(address[],uint256[],bytes[],bytes32,bytes32)": _timelock_operation(
        IntentKind.TIMELOCK_EXECUTE, batch=True
    ),
    "cancel(bytes32)": _plain(IntentKind.TIMELOCK_CANCEL),
    "updateDelay(uint256)": _plain(IntentKind.TIMELOCK_UPDATE_DELAY),
    # Ownable, AccessControl, upgrades.
    "transferOwnership(address)": _transfer_ownership,
    "renounceOwnership()": _renounce_ownership,
    "grantRole(bytes32,address)": _role(IntentKind.ROLE_GRANT),
    "revokeRole(bytes32,address)": _role(IntentKind.ROLE_REVOKE),
    "renounceRole(bytes32,address)": _role(IntentKind.ROLE_RENOUNCE),
    "upgradeTo(address)": _upgrade,
    "upgradeToAndCall(address,bytes)": _upgrade,
    "upgrade(address,address)": _upgrade,
    "upgradeAndCall(address,address,bytes)": _upgrade,
}

_MISSING = {f.signature for f in FUNCTIONS_BY_SELECTOR.values() if not f.display_only} ^ set(_BUILDERS)
if _MISSING:
    # A function in the data file without a builder (or the reverse) is a programming error: fail the import.
    raise RuntimeError(f"functions.json and the intent builders disagree about {sorted(_MISSING)}")

"""Intents: known answers from the contracts' own sources, and every intent kind decoded from payloads built
with an independent encoder (eth_abi, hand-packed MultiSend batches, typed data written out as JSON).

Selectors come from tests/vectors/intents_selectors.json, never from custody's own data file, so a wrong
signature in the data file cannot agree with itself here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from custody.app.integrity import request_facts
from custody.chains.evm import PayloadKind, parse_payload
from custody.chains.evm.intents import MAX_BATCH_CALLS, MAX_NESTING_DEPTH, payload_intents
from custody.chains.evm.knowledge import KNOWN_FUNCTIONS, KNOWN_TYPED_DATA, ROLE_NAMES
from custody.chains.evm.payload import ParsedPayload
from custody.domain.intents import (
    UNLIMITED,
    UNLIMITED_UINT160,
    Intent,
    IntentFlag,
    IntentKind,
    TokenAmount,
    TypedDataDomain,
    all_flags,
    walk_all,
)

VECTORS = Path(__file__).parents[2] / "vectors"
KNOWLEDGE = Path(__file__).parents[3] / "custody" / "chains" / "evm" / "knowledge"
SELECTORS: dict[str, str] = json.loads((VECTORS / "intents_selectors.json").read_text())["selectors"]
SAFE_TX_TYPES = json.loads((VECTORS / "safe_tx_types.json").read_text())["types"]
MAIL = json.loads((VECTORS / "eip712_mail.json").read_text())

TOKEN = "0x6B175474E89094C44Da98b954EedeAC495271d0F"  # DAI on mainnet
RECIPIENT = "0x000000000000000000000000000000000000dEaD"
SPENDER = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
OWNER = "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"
SAFE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"  # Permit2's address on every chain Uniswap deploys
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"  # Safe v1.3.0 MultiSendCallOnly
GOVERNOR = "0x408ED6354d4973f66138C91495F2f2FCbd8724C3"  # Uniswap's governor, as an example address
ZERO = "0x" + "00" * 20


def summary(intent: Intent) -> dict[str, Any]:
    """The parts of an intent a policy judges, in the form the vector files write them."""
    return {
        "kind": intent.kind.value,
        "contract": intent.contract,
        "parties": [[party.role.value, party.address] for party in intent.parties],
        "amounts": [[amount.token, amount.amount, amount.token_id] for amount in intent.amounts],
        "deadline": intent.deadline,
        "flags": sorted(flag.value for flag in intent.flags),
        "children": [summary(child) for child in intent.children],
    }


def transaction(to: str, data: bytes = b"", value: int = 0) -> ParsedPayload:
    document = {
        "type": 2,
        "chainId": 1,
        "nonce": 0,
        "to": to,
        "value": value,
        "gas": 500_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x" + data.hex(),
    }
    return parse_payload(PayloadKind.TRANSACTION, json.dumps(document).encode())


def typed(document: dict[str, Any]) -> ParsedPayload:
    return parse_payload(PayloadKind.TYPED_DATA, json.dumps(document).encode())


def only(intents: tuple[Intent, ...]) -> Intent:
    (intent,) = intents
    return intent


def call(signature: str, types: list[str], values: list[Any]) -> bytes:
    return bytes.fromhex(SELECTORS[signature][2:]) + encode(types, values)


def call_intent(to: str, signature: str, types: list[str], values: list[Any]) -> Intent:
    return only(payload_intents(transaction(to, call(signature, types, values))))


def addresses(intent: Intent) -> tuple[str, ...]:
    return tuple(party.address for party in intent.parties)


def fields(intent: Intent) -> dict[str, str]:
    return dict(intent.fields)


def exec_transaction(
    to: str, value: int, data: bytes, operation: int, gas_price: int = 0, receiver: str = ZERO
) -> bytes:
    return call(
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        [
            "address",
            "uint256",
            "bytes",
            "uint8",
            "uint256",
            "uint256",
            "uint256",
            "address",
            "address",
            "bytes",
        ],
        [to, value, data, operation, 0, 0, gas_price, ZERO, receiver, b"\x01" * 65],
    )


def multisend_entry(operation: int, to: str, value: int, data: bytes) -> bytes:
    # MultiSend.sol: abi.encodePacked(uint8 operation, address to, uint256 value, uint256 dataLength, bytes data).
    return (
        bytes([operation])
        + bytes.fromhex(to[2:])
        + value.to_bytes(32, "big")
        + len(data).to_bytes(32, "big")
        + data
    )


def multisend(*entries: bytes) -> bytes:
    return call("multiSend(bytes)", ["bytes"], [b"".join(entries)])


def transfer(to: str, amount: int) -> bytes:
    return call("transfer(address,uint256)", ["address", "uint256"], [to, amount])


def domain_types(*names: str) -> list[dict[str, str]]:
    types = {"name": "string", "version": "string", "chainId": "uint256", "verifyingContract": "address"}
    return [{"name": name, "type": types[name]} for name in names]


# What custody knows, against its sources.


def test_every_known_function_has_its_published_selector() -> None:
    assert {function.signature for function in KNOWN_FUNCTIONS} == set(SELECTORS)
    for function in KNOWN_FUNCTIONS:
        published = SELECTORS[function.signature]
        assert "0x" + keccak(text=function.signature)[:4].hex() == published
        assert "0x" + function.selector.hex() == published


def test_known_type_strings_hash_to_the_published_type_hashes() -> None:
    entries = {entry.id: entry for entry in KNOWN_TYPED_DATA}
    for vector in json.loads((VECTORS / "intents_type_hashes.json").read_text())["vectors"]:
        type_string = entries[vector["id"]].type_string
        assert type_string is not None
        assert "0x" + keccak(text=type_string).hex() == vector["type_hash"], vector["id"]


def test_every_knowledge_file_and_intent_vector_file_names_its_sources() -> None:
    for path in [*KNOWLEDGE.glob("*.json"), *VECTORS.glob("intents_*.json")]:
        assert json.loads(path.read_text())["source"], path.name
    for family in json.loads((KNOWLEDGE / "functions.json").read_text())["families"]:
        assert family["source"], family["family"]
    for entry in KNOWN_TYPED_DATA:
        assert entry.source, entry.id


def test_role_names_are_keccak_of_the_names_and_default_admin_is_zero() -> None:
    assert ROLE_NAMES[bytes(32)] == "DEFAULT_ADMIN_ROLE"
    # keccak256("MINTER_ROLE") as OpenZeppelin's documentation prints it.
    assert (
        ROLE_NAMES[bytes.fromhex("9f2df0fed2c77648de5860a4cc508cd0818c85b8b8a1ab4ceeef8d981c8956a6")]
        == "MINTER_ROLE"
    )


# Known-answer vectors.


@pytest.mark.parametrize(
    "vector",
    json.loads((VECTORS / "intents_permit2.json").read_text())["vectors"],
    ids=lambda vector: vector["name"],
)
def test_permit2_sdk_vectors_hash_as_published_and_read_as_permits(vector: dict[str, Any]) -> None:
    parsed = typed(vector["typed_data"])
    assert "0x" + parsed.digest.hex() == vector["digest"]
    intent = only(payload_intents(parsed))
    assert summary(intent) == vector["intent"]
    assert intent.subject == vector["typed_data"]["primaryType"]
    assert intent.domain == TypedDataDomain(name="Permit2", chain_id=1, verifying_contract=ZERO)


@pytest.mark.parametrize(
    "vector",
    json.loads((VECTORS / "intents_safe.json").read_text())["vectors"],
    ids=lambda vector: vector["name"],
)
def test_a_published_safe_transaction_hashes_as_published_and_shows_its_call(vector: dict[str, Any]) -> None:
    parsed = typed(vector["typed_data"])
    assert "0x" + parsed.digest.hex() == vector["digest"]
    intent = only(payload_intents(parsed))
    assert summary(intent) == vector["intent"]
    assert fields(intent)["Safe transaction hash"] == vector["digest"]
    assert fields(intent)["operation"] == "0 (CALL)"
    assert fields(intent.children[0])["operation"] == "CALL"


def test_the_eip712_mail_example_is_typed_data_known_by_its_primary_type_and_domain() -> None:
    intent = only(payload_intents(typed(MAIL["typed_data"])))
    assert intent.kind is IntentKind.TYPED_DATA
    assert intent.subject == "Mail"
    assert intent.contract == "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
    assert intent.domain == TypedDataDomain(
        name="Ether Mail",
        version="1",
        chain_id=1,
        verifying_contract="0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    )
    assert intent.flags == frozenset() and intent.children == ()
    assert fields(intent) == {
        "domain name": "Ether Mail",
        "domain version": "1",
        "domain chain id": "1",
        "domain verifying contract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
        "from.name": "Cow",
        "from.wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826",
        "to.name": "Bob",
        "to.wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB",
        "contents": "Hello, Bob!",
    }


# Transactions: ether and tokens.


def test_a_transaction_without_calldata_is_a_native_transfer() -> None:
    intent = only(payload_intents(transaction(RECIPIENT, value=10**18)))
    assert summary(intent) == {
        "kind": "native_transfer",
        "contract": None,
        "parties": [["recipient", RECIPIENT]],
        "amounts": [[None, 10**18, None]],
        "deadline": None,
        "flags": [],
        "children": [],
    }


def test_a_transaction_with_calldata_and_value_is_the_call_and_a_native_transfer() -> None:
    call_intent_, ether = payload_intents(transaction(TOKEN, transfer(RECIPIENT, 5), value=7))
    assert call_intent_.kind is IntentKind.ERC20_TRANSFER
    assert ether.kind is IntentKind.NATIVE_TRANSFER
    assert summary(ether)["parties"] == [["recipient", TOKEN]]
    assert ether.amounts == (TokenAmount(None, 7),)


@pytest.mark.parametrize(
    ("signature", "types", "values", "kind", "role", "party", "amount", "flagged"),
    [
        (
            "transfer(address,uint256)",
            ["address", "uint256"],
            [RECIPIENT, 25],
            IntentKind.ERC20_TRANSFER,
            "recipient",
            RECIPIENT,
            25,
            False,
        ),
        (
            "transferFrom(address,address,uint256)",
            ["address", "address", "uint256"],
            [OWNER, RECIPIENT, 3],
            IntentKind.ERC20_TRANSFER_FROM,
            "recipient",
            RECIPIENT,
            3,
            False,
        ),
        (
            "approve(address,uint256)",
            ["address", "uint256"],
            [SPENDER, 10],
            IntentKind.ERC20_APPROVE,
            "spender",
            SPENDER,
            10,
            False,
        ),
        (
            "approve(address,uint256)",
            ["address", "uint256"],
            [SPENDER, UNLIMITED],
            IntentKind.ERC20_APPROVE,
            "spender",
            SPENDER,
            UNLIMITED,
            True,
        ),
        (
            "approve(address,uint256)",
            ["address", "uint256"],
            [SPENDER, UNLIMITED_UINT160],
            IntentKind.ERC20_APPROVE,
            "spender",
            SPENDER,
            UNLIMITED_UINT160,
            True,
        ),
        (
            "increaseAllowance(address,uint256)",
            ["address", "uint256"],
            [SPENDER, UNLIMITED],
            IntentKind.ERC20_INCREASE_ALLOWANCE,
            "spender",
            SPENDER,
            UNLIMITED,
            True,
        ),
    ],
)
def test_erc20_calls_name_who_gains_and_how_much_of_the_called_token(
    signature: str,
    types: list[str],
    values: list[Any],
    kind: IntentKind,
    role: str,
    party: str,
    amount: int,
    flagged: bool,
) -> None:
    intent = call_intent(TOKEN, signature, types, values)
    assert intent.kind is kind
    assert intent.contract == TOKEN
    assert intent.subject == signature
    assert [[p.role.value, p.address] for p in intent.parties] == [[role, party]]
    assert intent.amounts == (TokenAmount(TOKEN, amount),)
    assert (IntentFlag.UNLIMITED_APPROVAL in intent.flags) is flagged
    # Every decoded value is shown in full, the amount too.
    assert str(amount) in fields(intent).values()


def test_decrease_allowance_is_shown_decoded_but_judged_unknown() -> None:
    intent = call_intent(TOKEN, "decreaseAllowance(address,uint256)", ["address", "uint256"], [SPENDER, 4])
    assert intent.kind is IntentKind.UNKNOWN
    assert intent.subject == "decreaseAllowance(address,uint256)"
    assert fields(intent) == {"spender": SPENDER, "subtracted allowance": "4"}


@pytest.mark.parametrize(
    ("signature", "types", "values", "amounts"),
    [
        (
            "safeTransferFrom(address,address,uint256)",
            ["address", "address", "uint256"],
            [OWNER, RECIPIENT, 77],
            [TokenAmount(TOKEN, 1, 77)],
        ),
        (
            "safeTransferFrom(address,address,uint256,bytes)",
            ["address", "address", "uint256", "bytes"],
            [OWNER, RECIPIENT, 78, b"\x01"],
            [TokenAmount(TOKEN, 1, 78)],
        ),
        (
            "safeTransferFrom(address,address,uint256,uint256,bytes)",
            ["address", "address", "uint256", "uint256", "bytes"],
            [OWNER, RECIPIENT, 5, 40, b""],
            [TokenAmount(TOKEN, 40, 5)],
        ),
        (
            "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
            ["address", "address", "uint256[]", "uint256[]", "bytes"],
            [OWNER, RECIPIENT, [1, 2], [10, 20], b""],
            [TokenAmount(TOKEN, 10, 1), TokenAmount(TOKEN, 20, 2)],
        ),
    ],
)
def test_nft_transfers_name_the_recipient_and_each_token_id(
    signature: str, types: list[str], values: list[Any], amounts: list[TokenAmount]
) -> None:
    intent = call_intent(TOKEN, signature, types, values)
    assert intent.kind is IntentKind.NFT_TRANSFER
    assert addresses(intent) == (RECIPIENT,)
    assert list(intent.amounts) == amounts


def test_an_erc1155_batch_with_more_ids_than_amounts_is_undecodable() -> None:
    intent = call_intent(
        TOKEN,
        "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
        ["address", "address", "uint256[]", "uint256[]", "bytes"],
        [OWNER, RECIPIENT, [1, 2], [10], b""],
    )
    assert intent.kind is IntentKind.UNDECODABLE
    assert IntentFlag.UNDECODABLE in intent.flags
    assert "2 token ids but 1 amounts" in fields(intent)["problem"]


@pytest.mark.parametrize("approved", [True, False])
def test_set_approval_for_all_names_the_operator_and_is_unlimited_only_when_approving(approved: bool) -> None:
    intent = call_intent(TOKEN, "setApprovalForAll(address,bool)", ["address", "bool"], [SPENDER, approved])
    assert intent.kind is IntentKind.SET_APPROVAL_FOR_ALL
    assert [[p.role.value, p.address] for p in intent.parties] == [["operator", SPENDER]]
    assert (IntentFlag.UNLIMITED_APPROVAL in intent.flags) is approved
    assert intent.amounts == ((TokenAmount(TOKEN, UNLIMITED),) if approved else ())


# Permit2 calls.


def test_permit2_approve_call_is_an_allowance_with_its_expiration() -> None:
    intent = call_intent(
        PERMIT2,
        "approve(address,address,uint160,uint48)",
        ["address", "address", "uint160", "uint48"],
        [TOKEN, SPENDER, UNLIMITED_UINT160, 1_900_000_000],
    )
    assert summary(intent) == {
        "kind": "permit2_allowance",
        "contract": PERMIT2,
        "parties": [["spender", SPENDER]],
        "amounts": [[TOKEN, UNLIMITED_UINT160, None]],
        "deadline": 1_900_000_000,
        "flags": ["unlimited approval"],
        "children": [],
    }


def test_permit2_permit_calls_read_single_and_batch_permits() -> None:
    single = call_intent(
        PERMIT2,
        "permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)",
        ["address", "((address,uint160,uint48,uint48),address,uint256)", "bytes"],
        [OWNER, ((TOKEN, 500, 1_800_000_000, 0), SPENDER, 1_700_000_000), b"\x02" * 65],
    )
    assert single.kind is IntentKind.PERMIT2_ALLOWANCE
    assert single.amounts == (TokenAmount(TOKEN, 500),)
    assert single.deadline == 1_800_000_000
    assert fields(single)["permit.details.token"] == TOKEN
    batch = call_intent(
        PERMIT2,
        "permit(address,((address,uint160,uint48,uint48)[],address,uint256),bytes)",
        ["address", "((address,uint160,uint48,uint48)[],address,uint256)", "bytes"],
        [
            OWNER,
            ([(TOKEN, 1, 0, 0), (RECIPIENT, UNLIMITED_UINT160, 1_750_000_000, 3)], SPENDER, 1_760_000_000),
            b"\x02" * 65,
        ],
    )
    assert batch.amounts == (TokenAmount(TOKEN, 1), TokenAmount(RECIPIENT, UNLIMITED_UINT160))
    # An expiration of 0 lasts until the permit is used, so up to its signature deadline.
    assert batch.deadline == 1_760_000_000
    assert IntentFlag.UNLIMITED_APPROVAL in batch.flags
    assert fields(batch)["permit.details[1].allowance"] == str(UNLIMITED_UINT160)


# Safe.


def test_exec_transaction_shows_the_safe_call_as_its_child() -> None:
    intent = only(payload_intents(transaction(SAFE, exec_transaction(TOKEN, 0, transfer(RECIPIENT, 9), 0))))
    assert summary(intent)["kind"] == "safe_transaction"
    assert intent.contract == SAFE
    assert [[p.role.value, p.address] for p in intent.parties] == [["target", TOKEN]]
    assert intent.flags == frozenset()
    (child,) = intent.children
    assert child.kind is IntentKind.ERC20_TRANSFER and child.amounts == (TokenAmount(TOKEN, 9),)
    assert fields(intent)["operation"] == "0 (CALL)"
    assert fields(intent)["owners' signatures"] == "0x" + "01" * 65


def test_a_safe_transaction_by_delegatecall_into_multisend_lists_every_call_with_its_operation() -> None:
    batch = multisend(
        multisend_entry(0, TOKEN, 0, call("approve(address,uint256)", ["address", "uint256"], [SPENDER, 10])),
        multisend_entry(0, RECIPIENT, 3 * 10**18, b""),
        multisend_entry(1, OWNER, 5, b""),
        multisend_entry(0, TOKEN, 0, call("transferOwnership(address)", ["address"], [OWNER])),
    )
    intent = only(payload_intents(transaction(SAFE, exec_transaction(MULTISEND_CALL_ONLY, 0, batch, 1))))
    assert IntentFlag.DELEGATECALL in intent.flags
    assert [[p.role.value, p.address] for p in intent.parties] == [["delegate", MULTISEND_CALL_ONLY]]
    (batch_intent,) = intent.children
    assert batch_intent.kind is IntentKind.MULTISEND
    assert IntentFlag.DELEGATECALL in batch_intent.flags
    approve, ether, fallback, ownership = batch_intent.children
    assert (approve.kind, fields(approve)["operation"]) == (IntentKind.ERC20_APPROVE, "CALL")
    assert (ether.kind, ether.amounts) == (IntentKind.NATIVE_TRANSFER, (TokenAmount(None, 3 * 10**18),))
    # DELEGATECALL without calldata runs the target's fallback in the Safe: unknown, and the value is ignored.
    assert fallback.kind is IntentKind.UNKNOWN
    assert fallback.flags == {IntentFlag.DELEGATECALL, IntentFlag.UNKNOWN_SELECTOR}
    assert fields(fallback)["value (wei, ignored by DELEGATECALL)"] == "5"
    assert ownership.kind is IntentKind.OWNERSHIP_TRANSFER
    assert all_flags((intent,)) >= {IntentFlag.DELEGATECALL, IntentFlag.OWNERSHIP_TRANSFER}


@pytest.mark.parametrize(("gas_price", "receiver"), [(1, ZERO), (0, RECIPIENT), (3, RECIPIENT)])
def test_a_safe_transaction_that_pays_gas_back_is_flagged(gas_price: int, receiver: str) -> None:
    data = exec_transaction(TOKEN, 0, transfer(RECIPIENT, 1), 0, gas_price=gas_price, receiver=receiver)
    intent = only(payload_intents(transaction(SAFE, data)))
    assert IntentFlag.REFUND in intent.flags
    assert (receiver in addresses(intent)) is (receiver != ZERO)


def test_a_safe_operation_other_than_call_or_delegatecall_is_undecodable() -> None:
    intent = only(payload_intents(transaction(SAFE, exec_transaction(TOKEN, 0, transfer(RECIPIENT, 1), 2))))
    (child,) = intent.children
    assert child.kind is IntentKind.UNDECODABLE
    assert "operation 2" in fields(child)["problem"]


def test_malformed_or_oversized_multisend_batches_are_undecodable() -> None:
    cut = multisend(multisend_entry(0, TOKEN, 0, b"\xaa" * 10)[:-4])
    assert call_intent_of(MULTISEND_CALL_ONLY, cut).kind is IntentKind.UNDECODABLE
    header_only = multisend(bytes([0]) + bytes.fromhex(TOKEN[2:]))
    assert "cut short" in fields(call_intent_of(MULTISEND_CALL_ONLY, header_only))["problem"]
    entries = [multisend_entry(0, RECIPIENT, 1, b"") for _ in range(MAX_BATCH_CALLS + 1)]
    too_many = call_intent_of(MULTISEND_CALL_ONLY, multisend(*entries))
    assert too_many.kind is IntentKind.UNDECODABLE
    enough = call_intent_of(MULTISEND_CALL_ONLY, multisend(*entries[:MAX_BATCH_CALLS]))
    assert enough.kind is IntentKind.MULTISEND and len(enough.children) == MAX_BATCH_CALLS


def call_intent_of(to: str, data: bytes) -> Intent:
    return only(payload_intents(transaction(to, data)))


@pytest.mark.parametrize(
    ("signature", "types", "values", "parties", "upgrade"),
    [
        (
            "addOwnerWithThreshold(address,uint256)",
            ["address", "uint256"],
            [OWNER, 2],
            [["new_owner", OWNER]],
            False,
        ),
        (
            "removeOwner(address,address,uint256)",
            ["address", "address", "uint256"],
            [SPENDER, OWNER, 1],
            [],
            False,
        ),
        (
            "swapOwner(address,address,address)",
            ["address", "address", "address"],
            [SPENDER, OWNER, RECIPIENT],
            [["new_owner", RECIPIENT]],
            False,
        ),
        ("changeThreshold(uint256)", ["uint256"], [1], [], False),
        ("enableModule(address)", ["address"], [RECIPIENT], [["module", RECIPIENT]], False),
        ("disableModule(address,address)", ["address", "address"], [SPENDER, RECIPIENT], [], False),
        ("setGuard(address)", ["address"], [RECIPIENT], [["module", RECIPIENT]], False),
        ("setGuard(address)", ["address"], [ZERO], [], False),
        ("setModuleGuard(address)", ["address"], [RECIPIENT], [["module", RECIPIENT]], False),
        ("setFallbackHandler(address)", ["address"], [RECIPIENT], [["module", RECIPIENT]], False),
        ("changeMasterCopy(address)", ["address"], [RECIPIENT], [["implementation", RECIPIENT]], True),
        ("migrateSingleton(address)", ["address"], [RECIPIENT], [["implementation", RECIPIENT]], True),
        ("migrateL2Singleton(address)", ["address"], [RECIPIENT], [["implementation", RECIPIENT]], True),
        (
            "migrateWithFallbackHandler(address,address)",
            ["address", "address"],
            [RECIPIENT, OWNER],
            [["module", OWNER], ["implementation", RECIPIENT]],
            True,
        ),
        (
            "migrateL2WithFallbackHandler(address,address)",
            ["address", "address"],
            [RECIPIENT, OWNER],
            [["module", OWNER], ["implementation", RECIPIENT]],
            True,
        ),
    ],
)
def test_safe_configuration_calls_are_flagged_and_name_who_gains_control(
    signature: str, types: list[str], values: list[Any], parties: list[list[str]], upgrade: bool
) -> None:
    intent = call_intent(SAFE, signature, types, values)
    assert intent.kind is IntentKind.SAFE_CONFIGURATION
    assert IntentFlag.SAFE_CONFIGURATION_CHANGE in intent.flags
    assert (IntentFlag.UPGRADE in intent.flags) is upgrade
    assert [[p.role.value, p.address] for p in intent.parties] == parties


def test_calls_nested_past_the_bound_are_undecodable() -> None:
    data = transfer(RECIPIENT, 1)
    for _ in range(MAX_NESTING_DEPTH + 2):
        data = exec_transaction(SAFE, 0, data, 0)
    intent = call_intent_of(SAFE, data)
    depth = 0
    while intent.kind is IntentKind.SAFE_TRANSACTION:
        (intent,) = intent.children
        depth += 1
    assert depth == MAX_NESTING_DEPTH + 1
    assert intent.kind is IntentKind.UNDECODABLE
    assert f"deeper than {MAX_NESTING_DEPTH} levels" in fields(intent)["problem"]


# Governance.

PROPOSAL_TYPES = ["address[]", "uint256[]", "bytes[]"]


def governor_id(
    targets: list[str], values: list[int], calldatas: list[bytes], description_hash: bytes
) -> int:
    # IGovernor.hashProposal, written out from OpenZeppelin's Governor.sol with eth_abi's encoder.
    encoded = encode([*PROPOSAL_TYPES, "bytes32"], [targets, values, calldatas, description_hash])
    return int.from_bytes(keccak(encoded), "big")


def test_a_governor_proposal_carries_its_id_and_decodes_every_action() -> None:
    targets = [TOKEN, SAFE]
    values = [0, 10**17]
    calldatas = [transfer(RECIPIENT, 1), call("upgradeTo(address)", ["address"], [RECIPIENT])]
    description = "# Routine payment\n\nPays the auditors."
    expected_id = governor_id(targets, values, calldatas, keccak(text=description))
    propose = call_intent(
        GOVERNOR,
        "propose(address[],uint256[],bytes[],string)",
        [*PROPOSAL_TYPES, "string"],
        [targets, values, calldatas, description],
    )
    assert propose.kind is IntentKind.GOVERNOR_PROPOSE
    assert fields(propose)["proposal id"] == str(expected_id)
    assert fields(propose)["description"] == description
    assert [child.kind for child in propose.children] == [
        IntentKind.ERC20_TRANSFER,
        IntentKind.UPGRADE,
        IntentKind.NATIVE_TRANSFER,
    ]
    assert IntentFlag.UPGRADE in all_flags((propose,))
    for signature, kind, children in [
        ("queue(address[],uint256[],bytes[],bytes32)", IntentKind.GOVERNOR_QUEUE, 3),
        ("execute(address[],uint256[],bytes[],bytes32)", IntentKind.GOVERNOR_EXECUTE, 3),
        ("cancel(address[],uint256[],bytes[],bytes32)", IntentKind.GOVERNOR_CANCEL, 0),
    ]:
        intent = call_intent(
            GOVERNOR,
            signature,
            [*PROPOSAL_TYPES, "bytes32"],
            [targets, values, calldatas, keccak(text=description)],
        )
        assert (intent.kind, len(intent.children)) == (kind, children)
        assert fields(intent)["proposal id"] == str(expected_id)


def test_a_proposal_whose_arrays_disagree_is_undecodable() -> None:
    intent = call_intent(
        GOVERNOR,
        "propose(address[],uint256[],bytes[],string)",
        [*PROPOSAL_TYPES, "string"],
        [[TOKEN, SAFE], [0], [b"", b""], "x"],
    )
    assert intent.kind is IntentKind.UNDECODABLE


def test_queue_and_execute_by_proposal_id_hide_their_actions_so_carry_an_unknown_child() -> None:
    for signature, kind in [
        ("queue(uint256)", IntentKind.GOVERNOR_QUEUE),
        ("execute(uint256)", IntentKind.GOVERNOR_EXECUTE),
    ]:
        intent = call_intent(GOVERNOR, signature, ["uint256"], [12345])
        assert intent.kind is kind
        assert [child.kind for child in intent.children] == [IntentKind.UNKNOWN]
    cancel = call_intent(GOVERNOR, "cancel(uint256)", ["uint256"], [12345])
    assert (cancel.kind, cancel.children) == (IntentKind.GOVERNOR_CANCEL, ())


@pytest.mark.parametrize(
    ("signature", "types", "values"),
    [
        ("castVote(uint256,uint8)", ["uint256", "uint8"], [7, 1]),
        ("castVoteWithReason(uint256,uint8,string)", ["uint256", "uint8", "string"], [7, 1, "yes"]),
        (
            "castVoteWithReasonAndParams(uint256,uint8,string,bytes)",
            ["uint256", "uint8", "string", "bytes"],
            [7, 1, "yes", b"\x00"],
        ),
        (
            "castVoteBySig(uint256,uint8,uint8,bytes32,bytes32)",
            ["uint256", "uint8", "uint8", "bytes32", "bytes32"],
            [7, 1, 27, b"\x01" * 32, b"\x02" * 32],
        ),
        (
            "castVoteBySig(uint256,uint8,address,bytes)",
            ["uint256", "uint8", "address", "bytes"],
            [7, 1, OWNER, b"\x01" * 65],
        ),
        (
            "castVoteWithReasonAndParamsBySig(uint256,uint8,string,bytes,uint8,bytes32,bytes32)",
            ["uint256", "uint8", "string", "bytes", "uint8", "bytes32", "bytes32"],
            [7, 1, "yes", b"", 27, b"\x01" * 32, b"\x02" * 32],
        ),
        (
            "castVoteWithReasonAndParamsBySig(uint256,uint8,address,string,bytes,bytes)",
            ["uint256", "uint8", "address", "string", "bytes", "bytes"],
            [7, 1, OWNER, "yes", b"", b"\x01" * 65],
        ),
    ],
)
def test_vote_calls_are_votes_with_support_in_words(
    signature: str, types: list[str], values: list[Any]
) -> None:
    intent = call_intent(GOVERNOR, signature, types, values)
    assert intent.kind is IntentKind.VOTE and intent.contract == GOVERNOR
    assert fields(intent)["proposal id"] == "7"
    assert fields(intent)["support"] == "1 (for)"


@pytest.mark.parametrize(
    ("primary", "members", "message"),
    [
        ("Ballot", [("proposalId", "uint256"), ("support", "uint8")], {"proposalId": 7, "support": 0}),
        (
            "Ballot",
            [("proposalId", "uint256"), ("support", "uint8"), ("voter", "address"), ("nonce", "uint256")],
            {"proposalId": 7, "support": 0, "voter": OWNER, "nonce": 1},
        ),
        (
            "ExtendedBallot",
            [("proposalId", "uint256"), ("support", "uint8"), ("reason", "string"), ("params", "bytes")],
            {"proposalId": 7, "support": 0, "reason": "no", "params": "0x"},
        ),
        (
            "ExtendedBallot",
            [
                ("proposalId", "uint256"),
                ("support", "uint8"),
                ("voter", "address"),
                ("nonce", "uint256"),
                ("reason", "string"),
                ("params", "bytes"),
            ],
            {"proposalId": 7, "support": 0, "voter": OWNER, "nonce": 1, "reason": "no", "params": "0x"},
        ),
    ],
)
def test_ballot_signatures_of_both_governor_versions_are_votes(
    primary: str, members: list[tuple[str, str]], message: dict[str, Any]
) -> None:
    document = {
        "types": {
            "EIP712Domain": domain_types("name", "version", "chainId", "verifyingContract"),
            primary: [{"name": name, "type": type_name} for name, type_name in members],
        },
        "primaryType": primary,
        "domain": {"name": "Gov", "version": "1", "chainId": 1, "verifyingContract": GOVERNOR},
        "message": message,
    }
    intent = only(payload_intents(typed(document)))
    assert intent.kind is IntentKind.VOTE
    assert intent.contract == GOVERNOR and intent.subject == primary
    assert fields(intent)["support"] == "0 (against)"


TIMELOCK = "0x1a9C8182C09F50C8318d769245beA52c32BE35BC"  # Uniswap's timelock, as an example address
SALT = b"\x05" * 32
PREDECESSOR = bytes(32)


def test_timelock_operations_carry_their_operation_id_and_calls() -> None:
    data = call("updateDelay(uint256)", ["uint256"], [86_400])
    # TimelockController.hashOperation, written out with eth_abi's encoder.
    single_id = keccak(
        encode(["address", "uint256", "bytes", "bytes32", "bytes32"], [TIMELOCK, 0, data, PREDECESSOR, SALT])
    )
    for signature, kind in [
        ("schedule(address,uint256,bytes,bytes32,bytes32,uint256)", IntentKind.TIMELOCK_SCHEDULE),
        ("execute(address,uint256,bytes,bytes32,bytes32)", IntentKind.TIMELOCK_EXECUTE),
    ]:
        types = ["address", "uint256", "bytes", "bytes32", "bytes32", "uint256"][: signature.count(",") + 1]
        values = [TIMELOCK, 0, data, PREDECESSOR, SALT, 172_800][: len(types)]
        intent = call_intent(TIMELOCK, signature, types, values)
        assert intent.kind is kind
        assert fields(intent)["operation id"] == "0x" + single_id.hex()
        assert [child.kind for child in intent.children] == [IntentKind.TIMELOCK_UPDATE_DELAY]
    targets, values_, payloads = [TOKEN, RECIPIENT], [0, 5], [transfer(RECIPIENT, 2), b""]
    batch_id = keccak(
        encode(
            ["address[]", "uint256[]", "bytes[]", "bytes32", "bytes32"],
            [targets, values_, payloads, PREDECESSOR, SALT],
        )
    )
    for signature, kind in [
        ("scheduleBatch(address[],uint256[],bytes[],bytes32,bytes32,uint256)", IntentKind.TIMELOCK_SCHEDULE),
        ("executeBatch(address[],uint256[],bytes[],bytes32,bytes32)", IntentKind.TIMELOCK_EXECUTE),
    ]:
        types = ["address[]", "uint256[]", "bytes[]", "bytes32", "bytes32", "uint256"][
            : signature.count(",") + 1
        ]
        values = [targets, values_, payloads, PREDECESSOR, SALT, 172_800][: len(types)]
        intent = call_intent(TIMELOCK, signature, types, values)
        assert intent.kind is kind
        assert fields(intent)["operation id"] == "0x" + batch_id.hex()
        assert [child.kind for child in intent.children] == [
            IntentKind.ERC20_TRANSFER,
            IntentKind.NATIVE_TRANSFER,
        ]
        assert addresses(intent) == (TOKEN, RECIPIENT)
    cancel = call_intent(TIMELOCK, "cancel(bytes32)", ["bytes32"], [single_id])
    assert cancel.kind is IntentKind.TIMELOCK_CANCEL
    assert fields(cancel)["operation id"] == "0x" + single_id.hex()


# Control of contracts.


def test_ownership_transfer_and_renounce_are_flagged() -> None:
    transfer_intent = call_intent(TOKEN, "transferOwnership(address)", ["address"], [OWNER])
    assert summary(transfer_intent)["parties"] == [["new_owner", OWNER]]
    assert transfer_intent.flags == {IntentFlag.OWNERSHIP_TRANSFER}
    renounce = only(payload_intents(transaction(TOKEN, bytes.fromhex(SELECTORS["renounceOwnership()"][2:]))))
    assert renounce.kind is IntentKind.OWNERSHIP_RENOUNCE
    assert renounce.flags == {IntentFlag.OWNERSHIP_TRANSFER}


@pytest.mark.parametrize(
    ("signature", "kind", "role", "name"),
    [
        ("grantRole(bytes32,address)", IntentKind.ROLE_GRANT, keccak(text="MINTER_ROLE"), "MINTER_ROLE"),
        ("revokeRole(bytes32,address)", IntentKind.ROLE_REVOKE, bytes(32), "DEFAULT_ADMIN_ROLE"),
        ("renounceRole(bytes32,address)", IntentKind.ROLE_RENOUNCE, keccak(text="SOME_CUSTOM_ROLE"), None),
    ],
)
def test_role_changes_name_the_account_and_the_role(
    signature: str, kind: IntentKind, role: bytes, name: str | None
) -> None:
    intent = call_intent(TOKEN, signature, ["bytes32", "address"], [role, OWNER])
    assert intent.kind is kind
    assert summary(intent)["parties"] == [["role_account", OWNER]]
    assert (IntentFlag.ROLE_GRANT in intent.flags) is (kind is IntentKind.ROLE_GRANT)
    assert fields(intent)["role"] == "0x" + role.hex()
    assert fields(intent).get("role name") == name


def test_upgrades_name_the_implementation_and_decode_the_initializer() -> None:
    plain = call_intent(TOKEN, "upgradeTo(address)", ["address"], [RECIPIENT])
    assert (plain.kind, summary(plain)["parties"]) == (IntentKind.UPGRADE, [["implementation", RECIPIENT]])
    assert plain.flags == {IntentFlag.UPGRADE}
    initializer = call("transferOwnership(address)", ["address"], [OWNER])
    with_call = call_intent(
        TOKEN, "upgradeToAndCall(address,bytes)", ["address", "bytes"], [RECIPIENT, initializer]
    )
    (child,) = with_call.children
    assert (child.kind, child.contract) == (IntentKind.OWNERSHIP_TRANSFER, TOKEN)
    admin = call_intent(
        SAFE,
        "upgradeAndCall(address,address,bytes)",
        ["address", "address", "bytes"],
        [TOKEN, RECIPIENT, initializer],
    )
    assert summary(admin)["parties"] == [["implementation", RECIPIENT], ["target", TOKEN]]
    assert admin.children[0].contract == TOKEN
    proxy_admin = call_intent(SAFE, "upgrade(address,address)", ["address", "address"], [TOKEN, RECIPIENT])
    assert (proxy_admin.kind, proxy_admin.children) == (IntentKind.UPGRADE, ())


# Typed data: permits and Safe.

EIP2612_TYPES = {
    "EIP712Domain": domain_types("name", "version", "chainId", "verifyingContract"),
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}
TOKEN_DOMAIN = {"name": "Dai Stablecoin", "version": "1", "chainId": 1, "verifyingContract": TOKEN}


def permit(
    types: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    domain: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "types": types or EIP2612_TYPES,
        "primaryType": "Permit",
        "domain": TOKEN_DOMAIN if domain is None else domain,
        "message": message
        or {
            "owner": OWNER,
            "spender": SPENDER,
            "value": str(UNLIMITED),
            "nonce": 0,
            "deadline": 1_900_000_000,
        },
    }


def test_an_eip2612_permit_for_everything_names_spender_token_amount_and_deadline() -> None:
    intent = only(payload_intents(typed(permit())))
    assert summary(intent) == {
        "kind": "permit",
        "contract": TOKEN,
        "parties": [["spender", SPENDER]],
        "amounts": [[TOKEN, UNLIMITED, None]],
        "deadline": 1_900_000_000,
        "flags": ["unlimited approval"],
        "children": [],
    }
    assert intent.domain == TypedDataDomain("Dai Stablecoin", "1", 1, TOKEN)


def test_a_dai_permit_is_all_or_nothing_and_expiry_zero_never_expires() -> None:
    types = {
        "EIP712Domain": EIP2612_TYPES["EIP712Domain"],
        "Permit": [
            {"name": "holder", "type": "address"},
            {"name": "spender", "type": "address"},
            {"name": "nonce", "type": "uint256"},
            {"name": "expiry", "type": "uint256"},
            {"name": "allowed", "type": "bool"},
        ],
    }
    message = {"holder": OWNER, "spender": SPENDER, "nonce": 0, "expiry": 0, "allowed": True}
    intent = only(payload_intents(typed(permit(types, message))))
    assert intent.kind is IntentKind.PERMIT
    assert intent.amounts == (TokenAmount(TOKEN, UNLIMITED),)
    assert intent.deadline is None
    assert IntentFlag.UNLIMITED_APPROVAL in intent.flags


@pytest.mark.parametrize(
    "members",
    [
        # A field renamed: no token hashes this, or one custody does not know.
        [
            ("owner", "address"),
            ("spender", "address"),
            ("amount", "uint256"),
            ("nonce", "uint256"),
            ("deadline", "uint256"),
        ],
        # A field added.
        [
            ("owner", "address"),
            ("spender", "address"),
            ("value", "uint256"),
            ("nonce", "uint256"),
            ("deadline", "uint256"),
            ("memo", "string"),
        ],
        # A field retyped.
        [
            ("owner", "address"),
            ("spender", "address"),
            ("value", "uint128"),
            ("nonce", "uint256"),
            ("deadline", "uint256"),
        ],
    ],
)
def test_a_permit_whose_types_differ_from_the_known_type_string_is_undecodable(
    members: list[tuple[str, str]],
) -> None:
    types = {
        "EIP712Domain": EIP2612_TYPES["EIP712Domain"],
        "Permit": [{"name": n, "type": t} for n, t in members],
    }
    message = {
        name: (OWNER if kind == "address" else "memo" if kind == "string" else 1) for name, kind in members
    }
    intent = only(payload_intents(typed(permit(types, message))))
    assert intent.kind is IntentKind.UNDECODABLE
    assert intent.flags == {IntentFlag.UNDECODABLE}
    assert (intent.subject, intent.contract) == ("Permit", TOKEN)
    assert fields(intent)["type string"].startswith("Permit(address owner,address spender,")


def test_a_known_permit_without_a_verifying_contract_is_undecodable() -> None:
    types = {"EIP712Domain": domain_types("name", "version", "chainId"), "Permit": EIP2612_TYPES["Permit"]}
    intent = only(
        payload_intents(typed(permit(types, domain={"name": "Dai Stablecoin", "version": "1", "chainId": 1})))
    )
    assert intent.kind is IntentKind.UNDECODABLE
    assert "verifyingContract" in fields(intent)["problem"]


PERMIT2_DOMAIN = {"name": "Permit2", "chainId": 1, "verifyingContract": PERMIT2}
PERMIT_DETAILS = [
    {"name": "token", "type": "address"},
    {"name": "amount", "type": "uint160"},
    {"name": "expiration", "type": "uint48"},
    {"name": "nonce", "type": "uint48"},
]
TOKEN_PERMISSIONS = [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint256"}]


def permit_single(expiration: int, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": domain_types("name", "chainId", "verifyingContract"),
            "PermitSingle": [
                {"name": "details", "type": "PermitDetails"},
                {"name": "spender", "type": "address"},
                {"name": "sigDeadline", "type": "uint256"},
            ],
            "PermitDetails": details or PERMIT_DETAILS,
        },
        "primaryType": "PermitSingle",
        "domain": PERMIT2_DOMAIN,
        "message": {
            "details": {
                "token": TOKEN,
                "amount": str(UNLIMITED_UINT160),
                "expiration": expiration,
                "nonce": 0,
            },
            "spender": SPENDER,
            "sigDeadline": 1_700_000_000,
        },
    }


@pytest.mark.parametrize(("expiration", "deadline"), [(1_800_000_000, 1_800_000_000), (0, 1_700_000_000)])
def test_a_permit2_single_for_everything_is_an_unlimited_allowance_until_it_expires(
    expiration: int, deadline: int
) -> None:
    intent = only(payload_intents(typed(permit_single(expiration))))
    assert summary(intent) == {
        "kind": "permit2_allowance",
        "contract": PERMIT2,
        "parties": [["spender", SPENDER]],
        "amounts": [[TOKEN, UNLIMITED_UINT160, None]],
        "deadline": deadline,
        "flags": ["unlimited approval"],
        "children": [],
    }
    assert fields(intent)["details.allowance"] == str(UNLIMITED_UINT160)


def test_a_permit2_single_with_a_wider_amount_type_is_undecodable() -> None:
    details = [dict(member) for member in PERMIT_DETAILS]
    details[1]["type"] = "uint256"
    assert only(payload_intents(typed(permit_single(0, details)))).kind is IntentKind.UNDECODABLE


def witness_transfer(token_permissions: list[dict[str, str]], extra_member: bool = False) -> dict[str, Any]:
    members = [
        {"name": "permitted", "type": "TokenPermissions"},
        {"name": "spender", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
        {"name": "witness", "type": "Order"},
    ]
    message: dict[str, Any] = {
        "permitted": {"token": TOKEN, "amount": 10**21} if len(token_permissions) == 2 else {"token": TOKEN},
        "spender": SPENDER,
        "nonce": 9,
        "deadline": 1_700_000_500,
        "witness": {"recipient": RECIPIENT, "minimumOut": 5},
    }
    if extra_member:
        members.append({"name": "memo", "type": "string"})
        message["memo"] = "x"
    return {
        "types": {
            "EIP712Domain": domain_types("name", "chainId", "verifyingContract"),
            "PermitWitnessTransferFrom": members,
            "TokenPermissions": token_permissions,
            "Order": [{"name": "recipient", "type": "address"}, {"name": "minimumOut", "type": "uint256"}],
        },
        "primaryType": "PermitWitnessTransferFrom",
        "domain": PERMIT2_DOMAIN,
        "message": message,
    }


def test_a_permit2_witness_transfer_of_any_witness_type_is_a_permit2_transfer() -> None:
    intent = only(payload_intents(typed(witness_transfer(TOKEN_PERMISSIONS))))
    assert intent.kind is IntentKind.PERMIT2_TRANSFER
    assert intent.amounts == (TokenAmount(TOKEN, 10**21),)
    assert (intent.deadline, addresses(intent)) == (1_700_000_500, (SPENDER,))
    assert fields(intent)["witness.recipient"] == RECIPIENT


def test_a_permit2_witness_transfer_with_changed_token_permissions_or_an_extra_member_is_undecodable() -> (
    None
):
    changed = only(payload_intents(typed(witness_transfer([{"name": "token", "type": "address"}]))))
    assert changed.kind is IntentKind.UNDECODABLE
    extra = only(payload_intents(typed(witness_transfer(TOKEN_PERMISSIONS, extra_member=True))))
    assert extra.kind is IntentKind.UNDECODABLE


def safe_tx(operation: int, data: bytes, to: str = MULTISEND_CALL_ONLY, **overrides: Any) -> dict[str, Any]:
    message = {
        "to": to,
        "value": 0,
        "data": "0x" + data.hex(),
        "operation": operation,
        "safeTxGas": 0,
        "baseGas": 0,
        "gasPrice": 0,
        "gasToken": ZERO,
        "refundReceiver": ZERO,
        "nonce": 42,
        **overrides,
    }
    return {
        "types": SAFE_TX_TYPES,
        "primaryType": "SafeTx",
        "domain": {"chainId": 1, "verifyingContract": SAFE},
        "message": message,
    }


def test_a_safetx_by_delegatecall_to_an_unknown_contract_is_flagged_at_every_level() -> None:
    # The Bybit pattern: a familiar-looking SafeTx whose operation is DELEGATECALL into an attacker's contract.
    attacker = "0x96221423681A6d52E184D440a8eFCEbB105C7242"
    data = bytes.fromhex("a9059cbb") + encode(["address", "uint256"], [RECIPIENT, 0])
    intent = only(payload_intents(typed(safe_tx(1, data, to=attacker))))
    assert intent.kind is IntentKind.SAFE_TRANSACTION
    assert intent.flags == {IntentFlag.DELEGATECALL}
    assert summary(intent)["parties"] == [["delegate", attacker]]
    (child,) = intent.children
    assert IntentFlag.DELEGATECALL in child.flags
    assert attacker in addresses(child)
    assert fields(intent)["operation"] == "1 (DELEGATECALL)"
    assert fields(intent)["Safe nonce"] == "42"


def test_a_safetx_with_the_pre_1_0_field_name_is_undecodable() -> None:
    types = json.loads(json.dumps(SAFE_TX_TYPES))
    types["SafeTx"][5]["name"] = "dataGas"  # Safe 0.1.0's name for baseGas
    document = safe_tx(0, b"")
    document["types"] = types
    document["message"]["dataGas"] = document["message"].pop("baseGas")
    assert only(payload_intents(typed(document))).kind is IntentKind.UNDECODABLE


def test_a_safe_message_over_a_hash_shows_the_hash_as_a_hash_like_message() -> None:
    document = {
        "types": {
            "EIP712Domain": [
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "SafeMessage": [{"name": "message", "type": "bytes"}],
        },
        "primaryType": "SafeMessage",
        "domain": {"chainId": 1, "verifyingContract": SAFE},
        "message": {"message": "0x" + "ab" * 32},
    }
    intent = only(payload_intents(typed(document)))
    assert (intent.kind, intent.subject, intent.contract) == (IntentKind.TYPED_DATA, "SafeMessage", SAFE)
    (inner,) = intent.children
    assert inner.kind is IntentKind.BINARY_MESSAGE
    assert inner.flags == {IntentFlag.HASH_LIKE_MESSAGE}


def test_large_typed_data_is_shown_field_by_field_in_full() -> None:
    # A Seaport-sized order: many items and long strings, none of which may be cut short.
    items = [{"token": TOKEN, "identifier": str(index), "note": "n" * 600} for index in range(12)]
    document = {
        "types": {
            "EIP712Domain": domain_types("name", "version", "chainId", "verifyingContract"),
            "Order": [{"name": "offer", "type": "Item[]"}, {"name": "salt", "type": "uint256"}],
            "Item": [
                {"name": "token", "type": "address"},
                {"name": "identifier", "type": "uint256"},
                {"name": "note", "type": "string"},
            ],
        },
        "primaryType": "Order",
        "domain": {"name": "Seaport", "version": "1.5", "chainId": 1, "verifyingContract": SPENDER},
        "message": {"offer": items, "salt": str(UNLIMITED)},
    }
    intent = only(payload_intents(typed(document)))
    assert intent.kind is IntentKind.TYPED_DATA
    shown = fields(intent)
    assert shown["offer[11].note"] == "n" * 600
    assert shown["offer[3].identifier"] == "3"
    assert shown["salt"] == str(UNLIMITED)


# Calldata custody cannot explain, and messages.


def test_an_unknown_selector_is_unknown_and_malformed_known_calldata_is_undecodable() -> None:
    # The Solidity documentation's ABI example, baz(uint32,bool): not a function custody knows.
    unknown = call_intent_of(TOKEN, bytes.fromhex("cdcd77c0") + encode(["uint32", "bool"], [69, True]))
    assert (unknown.kind, unknown.subject, unknown.flags) == (
        IntentKind.UNKNOWN,
        "0xcdcd77c0",
        {IntentFlag.UNKNOWN_SELECTOR},
    )
    for data in (
        bytes.fromhex("a9059c"),  # shorter than a selector
        transfer(RECIPIENT, 5) + bytes(32),  # trailing bytes
        bytes.fromhex("a9059cbb")
        + b"\xff" * 12
        + bytes.fromhex(RECIPIENT[2:])
        + (5).to_bytes(32, "big"),  # padding
    ):
        intent = call_intent_of(TOKEN, data)
        assert intent.kind is IntentKind.UNDECODABLE and intent.flags == {IntentFlag.UNDECODABLE}
        assert fields(intent)["calldata"] == "0x" + data.hex()


@pytest.mark.parametrize(
    ("message", "kind", "flags"),
    [
        (b"Sign in to example.org\nNonce: 42", IntentKind.TEXT_MESSAGE, set()),
        ("Grüße ✓".encode(), IntentKind.TEXT_MESSAGE, set()),
        (keccak(b"a Safe transaction hash"), IntentKind.BINARY_MESSAGE, {IntentFlag.HASH_LIKE_MESSAGE}),
        (b"\x00\x01\x02", IntentKind.BINARY_MESSAGE, set()),
        # A right-to-left override makes text read differently from what it is: shown as bytes.
        ("pay \u202e001 ETH".encode(), IntentKind.BINARY_MESSAGE, set()),
    ],
)
def test_messages_are_printable_text_or_bytes_and_32_bytes_look_like_a_hash(
    message: bytes, kind: IntentKind, flags: set[IntentFlag]
) -> None:
    intent = only(payload_intents(parse_payload(PayloadKind.MESSAGE, message)))
    assert intent.kind is kind and intent.flags == flags
    assert intent.size == len(message)
    assert intent.text == (message.decode() if kind is IntentKind.TEXT_MESSAGE else None)


def test_request_facts_carry_the_payload_intent_tree() -> None:
    parsed = transaction(SAFE, exec_transaction(TOKEN, 0, transfer(RECIPIENT, 9), 0))
    facts = request_facts("treasury", parsed, replacement=False, now=datetime.now(UTC))
    assert facts.intents == payload_intents(parsed)
    assert [intent.kind for intent in walk_all(facts.intents)] == [
        IntentKind.SAFE_TRANSACTION,
        IntentKind.ERC20_TRANSFER,
    ]

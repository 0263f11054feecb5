"""Intents: what a payload does, as typed values the policy judges and the approver reads.

A payload's envelope (its key, chain, destination, ether value) says little about what signing it does: a
zero-value transaction can hand every token to a stranger (``approve``), typed data can be a Permit or a Safe
transaction that moves the treasury by DELEGATECALL, and a 32-byte message can be a Safe transaction hash. So
custody turns every parsed payload into a tree of intents (custody/chains/evm/intents.py builds it; this module
only defines the values, so the policy can judge them without knowing how payloads are decoded).

Every intent has the same shape, so that a policy condition can ask one question of every kind ("who receives
something?", "which token moves how much?"):

- ``kind``: what it is (``IntentKind``);
- ``contract``: the contract that acts (the token, the Safe, Permit2, the Governor, the typed data's
  verifying contract); None for native transfers and messages;
- ``parties``: the addresses that gain something, each with its role (recipient, spender, operator, new
  owner, role account, implementation, call target, delegate);
- ``amounts``: what moves or is allowed, per token (``None`` is ether), with unlimited approvals explicit;
- ``deadline``: when a permit or signature stops being valid (unix seconds), when it has one;
- ``flags``: dangers in words (DELEGATECALL, unlimited approval, ownership transfer, ...);
- ``fields``: every decoded field in order, for the approver's screen (nothing is cut short there);
- ``children``: the calls it makes on the signer's behalf (a Safe transaction's call, a batch's calls, a
  proposal's actions), each an intent of its own. A policy must allow every one of them.

``UNDECODABLE`` marks calldata or typed data that claims to be something custody knows but does not decode as
it; ``UNKNOWN`` marks something custody does not know. Neither is allowed by a rule that does not name it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

# 2**256 - 1, the amount wallets and drainers use for "no limit"; custody treats it as unlimited.
UNLIMITED = 2**256 - 1
# Permit2 allowances are uint160; its own "no limit" is 2**160 - 1.
UNLIMITED_UINT160 = 2**160 - 1


class IntentKind(enum.StrEnum):
    # Ether.
    NATIVE_TRANSFER = "native_transfer"
    # ERC-20 tokens.
    ERC20_TRANSFER = "erc20_transfer"
    ERC20_TRANSFER_FROM = "erc20_transfer_from"
    ERC20_APPROVE = "erc20_approve"
    ERC20_INCREASE_ALLOWANCE = "erc20_increase_allowance"
    # ERC-721 and ERC-1155.
    NFT_TRANSFER = "nft_transfer"
    SET_APPROVAL_FOR_ALL = "set_approval_for_all"
    # Signatures that let someone else move tokens.
    PERMIT = "permit"  # EIP-2612 Permit typed data
    PERMIT2_ALLOWANCE = (
        "permit2_allowance"  # PermitSingle / PermitBatch typed data, Permit2 approve / permit calls
    )
    PERMIT2_TRANSFER = (
        "permit2_transfer"  # PermitTransferFrom / PermitBatchTransferFrom (and witness variants)
    )
    # Safe.
    SAFE_TRANSACTION = "safe_transaction"  # SafeTx typed data or execTransaction calldata
    MULTISEND = "multisend"  # a MultiSend / MultiSendCallOnly batch
    SAFE_CONFIGURATION = (
        "safe_configuration"  # owners, threshold, guard, modules, fallback handler, singleton
    )
    # Governance.
    GOVERNOR_PROPOSE = "governor_propose"
    GOVERNOR_QUEUE = "governor_queue"
    GOVERNOR_EXECUTE = "governor_execute"
    GOVERNOR_CANCEL = "governor_cancel"
    VOTE = "vote"  # Ballot / ExtendedBallot typed data, castVote calls
    TIMELOCK_SCHEDULE = "timelock_schedule"
    TIMELOCK_EXECUTE = "timelock_execute"
    TIMELOCK_CANCEL = "timelock_cancel"
    TIMELOCK_UPDATE_DELAY = "timelock_update_delay"
    # Control of contracts.
    OWNERSHIP_TRANSFER = "ownership_transfer"
    OWNERSHIP_RENOUNCE = "ownership_renounce"
    ROLE_GRANT = "role_grant"
    ROLE_REVOKE = "role_revoke"
    ROLE_RENOUNCE = "role_renounce"
    UPGRADE = "upgrade"
    # EIP-7702: an account (the authority) is made to run a delegate contract's code, as an authorization custody
    # signs or one carried by a set-code transaction.
    AUTHORIZATION = "authorization"
    # Typed data custody knows by primary type and domain but that moves nothing (e.g. the EIP-712 Mail example).
    TYPED_DATA = "typed_data"
    # EIP-191 messages.
    TEXT_MESSAGE = "text_message"
    BINARY_MESSAGE = "binary_message"
    # What custody cannot explain.
    UNKNOWN = "unknown"  # a selector or typed-data primary type custody does not know
    UNDECODABLE = "undecodable"  # claims to be something custody knows, but does not decode as it


class PartyRole(enum.StrEnum):
    RECIPIENT = "recipient"  # receives ether, tokens or NFTs
    SPENDER = "spender"  # may spend the signer's tokens (approve, permits)
    OPERATOR = "operator"  # may move every NFT of a collection (setApprovalForAll)
    NEW_OWNER = "new_owner"  # becomes owner of a contract or of a Safe
    ROLE_ACCOUNT = "role_account"  # gains or loses an AccessControl role
    IMPLEMENTATION = "implementation"  # new code of a proxy or Safe singleton
    TARGET = "target"  # a contract called on the signer's behalf (Safe call, proposal action, timelock call)
    MODULE = "module"  # a Safe module, guard or fallback handler being set
    DELEGATE = "delegate"  # a contract run by DELEGATECALL, or an EIP-7702 delegate


class IntentFlag(enum.StrEnum):
    """Dangers an approver must read in words; each is shown on the approver's screen."""

    DELEGATECALL = "DELEGATECALL"
    UNLIMITED_APPROVAL = "unlimited approval"
    OWNERSHIP_TRANSFER = "ownership transfer"
    UPGRADE = "upgrade"
    ROLE_GRANT = "role grant"
    SAFE_CONFIGURATION_CHANGE = "Safe configuration change"
    UNKNOWN_SELECTOR = "unknown selector"
    UNDECODABLE = "undecodable"
    HASH_LIKE_MESSAGE = "hash-like message"
    REFUND = "gas refund to a receiver"  # a Safe transaction that pays gas back to someone
    # EIP-7702: the authority's account will run the delegate's code, which then controls all it holds.
    CODE_DELEGATION = "ACCOUNT RUNS THE DELEGATE'S CODE"
    # EIP-7702: an authorization to the zero address, which resets the authority's account to plain (no code).
    CLEARS_DELEGATION = "CLEARS THE ACCOUNT'S DELEGATION"
    # EIP-7702: an authorization of chain id 0, valid on every chain.
    EVERY_CHAIN = "valid on EVERY chain (chain id 0)"


@dataclass(frozen=True)
class Party:
    role: PartyRole
    address: str  # EIP-55


@dataclass(frozen=True)
class TokenAmount:
    token: str | None  # EIP-55 token contract; None for ether
    amount: int  # base units (wei for ether)
    token_id: int | None = None  # ERC-721 / ERC-1155 token id, when one token is meant

    @property
    def unlimited(self) -> bool:
        return self.amount in (UNLIMITED, UNLIMITED_UINT160)


@dataclass(frozen=True)
class TypedDataDomain:
    """An EIP-712 domain as the payload states it; a field the domain leaves out is None."""

    name: str | None = None
    version: str | None = None
    chain_id: int | None = None
    verifying_contract: str | None = None  # EIP-55
    salt: str | None = None  # 0x hex


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    contract: str | None = None
    parties: tuple[Party, ...] = ()
    amounts: tuple[TokenAmount, ...] = ()
    deadline: int | None = None
    flags: frozenset[IntentFlag] = frozenset()
    # (label, value) for every decoded field, in order, values in full; labels come from the data files.
    fields: tuple[tuple[str, str], ...] = ()
    children: tuple[Intent, ...] = ()
    # The typed data's primary type and domain, or the function signature / selector of a call, for rules and
    # for the approver; empty when the kind says it all.
    subject: str = ""
    domain: TypedDataDomain | None = None  # typed data only
    text: str | None = None  # a text message's text, in full
    size: int | None = None  # a message's length in bytes

    def walk(self) -> Iterator[Intent]:
        """This intent and every intent under it, depth first, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()

    def parties_in(self, *roles: PartyRole) -> tuple[str, ...]:
        return tuple(party.address for party in self.parties if party.role in roles)


def walk_all(intents: tuple[Intent, ...]) -> Iterator[Intent]:
    """Every intent of a payload's tree, depth first."""
    for intent in intents:
        yield from intent.walk()


def all_flags(intents: tuple[Intent, ...]) -> frozenset[IntentFlag]:
    return frozenset(flag for intent in walk_all(intents) for flag in intent.flags)

"""What the policy may look at: the facts of one request, and a key's recent usage for velocity limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from custody.domain.intents import Intent
from custody.domain.requests import PayloadKind

TRANSACTION_TYPES = ("legacy", "eip2930", "eip1559", "eip4844", "eip7702")
# Types no rule matches unless its transaction_types names them: blob (EIP-4844) and set-code (EIP-7702)
# transactions came after the rules of many policies were written, and a set-code transaction can hand an
# account to a contract, so a rule written for ordinary transactions must not start matching them.
NAMED_ONLY_TRANSACTION_TYPES = frozenset({"eip4844", "eip7702"})


@dataclass(frozen=True)
class RequestFacts:
    """What the policy may look at: facts the daemon derived from the parsed payload itself."""

    key_label: str
    kind: PayloadKind
    chain_id: int | None  # None for payloads that carry no chain id, such as EIP-191 messages
    transaction_type: str | None  # one of TRANSACTION_TYPES for transactions, else None
    to: str | None  # transactions: the recipient; typed data: the domain's verifyingContract
    value: int  # wei moved by the request; 0 for typed data and messages
    # The first 4 bytes of a transaction's calldata; None when it has fewer or the payload is no transaction.
    selector: bytes | None = None
    # The request explicitly replaces an earlier one holding the same nonce (a second payload for that nonce).
    replacement: bool = False
    # Transactions: the most wei they can pay in fees, as the parsed payload computed it; None for other kinds.
    # A transaction without it matches no rule that caps fees.
    max_fee_wei: int | None = None
    # What the payload does (custody/domain/intents.py), as custody decoded it; a rule that judges intents
    # must allow every intent of the tree.
    intents: tuple[Intent, ...] = ()
    # When the daemon judges the request, in unix seconds: the domain has no clock, so the caller states the
    # time. Permit deadlines are judged against it; a request without it matches no rule that limits them.
    now: int | None = None


@dataclass(frozen=True)
class VelocityUsage:
    """What a key has already used within a velocity window, as the store counts it."""

    count: int
    total_value: int  # wei
    # Base units of each token (keyed by its EIP-55 address) that the window's requests move or allow, as their
    # intents state them; None when the store does not count tokens, which no token velocity limit accepts.
    token_amounts: Mapping[str, int] | None = None


# Given a key label and a window length in seconds, the key's usage within the window that ends now.
VelocityLookup = Callable[[str, int], VelocityUsage]

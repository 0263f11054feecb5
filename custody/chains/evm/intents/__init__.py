"""Intents: what a parsed payload does, as the tree of values (custody/domain/intents.py) that policies judge and
approvers read.

``payload_intents`` is pure: the contract knowledge it uses (custody/chains/evm/knowledge/) is read once at
import. A transaction is its call's intent (and a native transfer when it moves ether), plus, for a set-code
transaction, one ``authorization`` intent per authorization it carries; an EIP-7702 authorization custody is
asked to sign is one ``authorization`` intent; typed data is known by its primary type and exact type string
(permits, Permit2, Safe transactions and messages, votes) or else shown by primary type and domain; a message
is printable text or bytes. Calls wrapped in other calls become child
intents, to a bounded depth and count. Whatever custody cannot explain is an ``unknown`` or ``undecodable``
intent, which no rule allows unless it names it.
"""

from __future__ import annotations

from custody.chains.evm.authorizations import Authorization
from custody.chains.evm.intents.authorizations import authorization_intent
from custody.chains.evm.intents.calls import call_intents
from custody.chains.evm.intents.common import MAX_BATCH_CALLS, MAX_NESTING_DEPTH, message_intent
from custody.chains.evm.intents.typed import typed_data_intents
from custody.chains.evm.messages import Message
from custody.chains.evm.payload import ParsedPayload
from custody.chains.evm.transactions import Transaction
from custody.chains.evm.typed_data import TypedData
from custody.domain.intents import Intent, IntentKind

__all__ = ["MAX_BATCH_CALLS", "MAX_NESTING_DEPTH", "payload_intents"]


def payload_intents(parsed: ParsedPayload) -> tuple[Intent, ...]:
    """The intent tree of a parsed payload; raises nothing for payloads the parsers accepted."""
    if isinstance(parsed, Transaction):
        # A set-code transaction does two things: its call, and the delegations it installs before the call
        # runs; a policy must allow both.
        delegations = tuple(authorization_intent(item) for item in parsed.authorization_list)
        return call_intents(parsed.to, parsed.value, parsed.data, depth=0) + delegations
    if isinstance(parsed, Authorization):
        return (authorization_intent(parsed),)
    if isinstance(parsed, TypedData):
        return typed_data_intents(parsed)
    if isinstance(parsed, Message):
        return (message_intent(parsed.canonical),)
    # A payload kind the decoder does not know yet is unknown, which no rule allows by accident.
    return (Intent(kind=IntentKind.UNKNOWN, subject=str(parsed.kind)),)

"""``text_only``, ``max_message_bytes``, ``message_prefixes`` and ``allow_hash_like``: which EIP-191 messages a
rule allows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.intents import IntentFlag, IntentKind
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import (
    MESSAGE_KINDS,
    NOT_DECODED,
    denies,
    placed_intents,
    refuse_limit_in_deny_rule,
    refuse_permission_in_deny_rule,
)
from custody.domain.policy.conditions.intents import named_intent_kinds
from custody.domain.policy.conditions.kinds import named_kinds
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory, is_int, parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace
from custody.domain.requests import PayloadKind

# The transport refuses payloads above 128 KiB; a larger limit could never be reached.
MAX_MESSAGE_BYTES_LIMIT = 128 * 1024
_FIELDS = ("text_only", "max_message_bytes", "message_prefixes", "allow_hash_like")


@dataclass(frozen=True)
class MessageCondition:
    """``text_only = true``, ``max_message_bytes = 1024``, ``message_prefixes = ["Sign in to example.org"]``
    and ``allow_hash_like = false``: which EIP-191 messages the rule allows.

    ``text_only`` (default true) allows printable text only. A binary message may be a transaction hash or a
    Safe transaction hash in disguise, signed as a "message": to allow binary messages a rule must say
    ``text_only = false`` and also name ``binary_message`` in ``intents`` (a rule without these never matches
    one). ``allow_hash_like = true`` further allows a 32-byte binary message, which is what such a hash looks
    like; leave it out unless the key exists to sign hashes. ``max_message_bytes`` caps the message's length
    in bytes, and ``message_prefixes`` requires a text message to start with one of the given strings (a
    binary message has no text and never matches them). A rule with any of these fields matches only messages
    (refused in a rule whose ``kinds`` leaves messages out). A deny rule may set only ``message_prefixes``
    (it denies text messages starting with one); the other fields allow or limit, and are refused there.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = _FIELDS

    text_only: bool
    max_message_bytes: int | None
    message_prefixes: tuple[str, ...] | None
    allow_hash_like: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> MessageCondition | None:
        binary_named = IntentKind.BINARY_MESSAGE in (named_intent_kinds(rule) or frozenset())
        if not any(field in rule.raw for field in _FIELDS):
            if binary_named and not denies(rule):
                raise rule.fail(
                    "text_only",
                    "must be false in a rule whose intents names 'binary_message', or the rule could never"
                    " match a binary message",
                )
            return None
        _refuse_in_deny_rule(rule)
        kinds = named_kinds(rule)
        if kinds is not None and PayloadKind.MESSAGE not in kinds:
            field = next(field for field in _FIELDS if field in rule.raw)
            raise rule.fail(field, "only messages can match it, but kinds does not include 'message'")
        text_only = _parse_bool(rule.raw, "text_only", True, rule.fail)
        allow_hash_like = _parse_bool(rule.raw, "allow_hash_like", False, rule.fail)
        if text_only and binary_named and denies(rule):
            raise rule.fail(
                "message_prefixes",
                "a binary message has no text to match, so with it this deny rule would let binary messages"
                " through; to deny binary messages, leave message_prefixes out",
            )
        if text_only and binary_named:
            raise rule.fail(
                "text_only",
                "must be false in a rule whose intents names 'binary_message', or the rule could never match a"
                " binary message",
            )
        if not text_only and not binary_named:
            raise rule.fail(
                "text_only",
                "= false allows binary messages only in a rule whose intents also names 'binary_message'",
            )
        if allow_hash_like and text_only:
            raise rule.fail("allow_hash_like", "a hash-like message is binary, so it needs text_only = false")
        max_bytes = None
        if "max_message_bytes" in rule.raw:
            max_bytes = rule.raw["max_message_bytes"]
            if not is_int(max_bytes) or not 1 <= max_bytes <= MAX_MESSAGE_BYTES_LIMIT:
                raise rule.fail(
                    "max_message_bytes",
                    f"must be an integer from 1 to {MAX_MESSAGE_BYTES_LIMIT}, got {max_bytes!r}",
                )
        prefixes = None
        if "message_prefixes" in rule.raw:
            prefix_set = parse_string_set(
                rule.raw["message_prefixes"], "message_prefixes", "prefixes", rule.fail
            )
            if "" in prefix_set:
                raise rule.fail(
                    "message_prefixes", "an empty prefix would allow every text; leave the field out"
                )
            if not text_only:
                raise rule.fail(
                    "message_prefixes", "a binary message has no text to match, so it needs text_only = true"
                )
            prefixes = tuple(sorted(prefix_set))
        return cls(text_only, None if max_bytes is None else int(max_bytes), prefixes, allow_hash_like)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        if facts.kind is not PayloadKind.MESSAGE:
            return ConditionTrace(
                "messages",
                False,
                f"the request is {facts.kind.value!r}, not a message; the rule's message conditions need one",
            )
        messages = [p for p in placed_intents(facts.intents) if p.intent.kind in MESSAGE_KINDS]
        if not messages:
            return ConditionTrace("messages", False, NOT_DECODED)
        findings: list[str] = []
        for item in messages:
            message = item.intent
            binary = message.kind is IntentKind.BINARY_MESSAGE
            if binary and self.text_only:
                return ConditionTrace(
                    "messages", False, f"{item.describe()} is binary; the rule allows text only"
                )
            if IntentFlag.HASH_LIKE_MESSAGE in message.flags and not self.allow_hash_like:
                return ConditionTrace(
                    "messages",
                    False,
                    f"{item.describe()} is hash-like (32 bytes, as a transaction hash is), and this rule has no"
                    " allow_hash_like",
                )
            if self.max_message_bytes is not None:
                if message.size is None:
                    return ConditionTrace("messages", False, f"the length of {item.describe()} is unknown")
                if message.size > self.max_message_bytes:
                    return ConditionTrace(
                        "messages",
                        False,
                        f"{item.describe()} is {message.size} bytes, over the limit of {self.max_message_bytes}",
                    )
            if self.message_prefixes is not None:
                text = message.text
                if text is None or not any(text.startswith(prefix) for prefix in self.message_prefixes):
                    return ConditionTrace(
                        "messages",
                        False,
                        f"{item.describe()} does not start with one of {quoted_list(self.message_prefixes)}",
                    )
            size = "" if message.size is None else f" of {message.size} bytes"
            findings.append(f"{'binary' if binary else 'text'} message{size} is allowed")
        return ConditionTrace("messages", True, "; ".join(findings))


def _refuse_in_deny_rule(rule: RuleTable) -> None:
    """Of the message fields only ``message_prefixes`` names what to deny; the others allow or limit."""
    deny_messages = (
        'to deny binary messages, name binary_message in intents; to deny all messages, kinds = ["message"]'
    )
    for field in ("text_only", "allow_hash_like"):
        if field in rule.raw:
            refuse_permission_in_deny_rule(rule, field, deny_messages)
    if "max_message_bytes" in rule.raw:
        refuse_limit_in_deny_rule(rule, "max_message_bytes", deny_messages)


def _parse_bool(raw: Any, field: str, default: bool, fail: FailFactory) -> bool:
    value = raw.get(field, default)
    if not isinstance(value, bool):
        raise fail(field, f"must be true or false, got {value!r}")
    return value

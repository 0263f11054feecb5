"""What every part of the intent decoder shares: the bounds, and the intents that need no decoding."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from custody.domain.intents import (
    Intent,
    IntentFlag,
    IntentKind,
    Party,
    PartyRole,
    TokenAmount,
    TypedDataDomain,
)

# Safe -> multiSend -> Safe -> multiSend is already more than any treasury operation needs; calls nested deeper
# are not decoded, and the undecodable intent that stands for them is allowed by no rule.
MAX_NESTING_DEPTH = 4
# A batch (MultiSend, proposal, scheduleBatch) with more calls than this is undecodable: no approver reviews
# that many, and a policy cannot judge what custody will not show.
MAX_BATCH_CALLS = 256
# A 32-byte message is what a hash is: signing one may sign anything (a Safe transaction hash, a Permit2 digest).
HASH_BYTES = 32

ZERO_ADDRESS = "0x" + "00" * 20
SAFE_OPERATIONS = {0: "CALL", 1: "DELEGATECALL"}

Field = tuple[str, str]


class Undecodable(Exception):
    """Decoded values that the function or type they claim cannot explain; the message says why."""


def undecodable(
    *,
    contract: str | None,
    subject: str,
    reason: str,
    fields: Iterable[Field] = (),
    domain: TypedDataDomain | None = None,
) -> Intent:
    return Intent(
        kind=IntentKind.UNDECODABLE,
        contract=contract,
        flags=frozenset({IntentFlag.UNDECODABLE}),
        fields=(*fields, ("problem", reason)),
        subject=subject,
        domain=domain,
    )


def native_transfer(to: str, value: int) -> Intent:
    return Intent(
        kind=IntentKind.NATIVE_TRANSFER,
        parties=(Party(PartyRole.RECIPIENT, to),),
        amounts=(TokenAmount(None, value),),
        fields=(("recipient", to), ("value (wei)", str(value))),
    )


def unlimited_flags(amounts: Iterable[TokenAmount]) -> frozenset[IntentFlag]:
    return frozenset({IntentFlag.UNLIMITED_APPROVAL}) if any(a.unlimited for a in amounts) else frozenset()


def nested(
    depth: int, contract: str | None, children: Callable[[int], Sequence[Intent]]
) -> tuple[Intent, ...]:
    """The intents of calls made one level below ``depth``, or one undecodable intent past the bound."""
    if depth + 1 > MAX_NESTING_DEPTH:
        return (
            undecodable(
                contract=contract,
                subject="",
                reason=f"calls nested deeper than {MAX_NESTING_DEPTH} levels are not decoded",
            ),
        )
    return tuple(children(depth + 1))


def check_batch(count: int, what: str) -> None:
    if count > MAX_BATCH_CALLS:
        raise Undecodable(f"{what} has {count} calls, more than the {MAX_BATCH_CALLS} custody decodes")


def annotate(fields: Sequence[Field], label: str, note: str) -> tuple[Field, ...]:
    """``fields`` with ``note`` added in parentheses to the value of the field called ``label``."""
    return tuple((name, f"{value} ({note})" if name == label else value) for name, value in fields)


def message_intent(data: bytes) -> Intent:
    """An EIP-191 message (or the bytes a Safe message signs): printable text, or bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    # Only text a person can read counts as text: control and format characters (a right-to-left override, a
    # zero-width space) can make two different messages look alike, so such a message is shown as bytes.
    if (
        text is not None
        and text
        and all(character.isprintable() or character in "\n\r\t" for character in text)
    ):
        return Intent(
            kind=IntentKind.TEXT_MESSAGE,
            fields=(("text", text), ("size (bytes)", str(len(data)))),
            text=text,
            size=len(data),
        )
    flags = frozenset({IntentFlag.HASH_LIKE_MESSAGE}) if len(data) == HASH_BYTES else frozenset()
    return Intent(
        kind=IntentKind.BINARY_MESSAGE,
        flags=flags,
        fields=(("bytes", "0x" + data.hex()), ("size (bytes)", str(len(data)))),
        size=len(data),
    )

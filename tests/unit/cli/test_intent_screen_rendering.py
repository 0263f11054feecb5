"""How an intent tree looks on the approver's screen and in --json, for trees built by hand.

These pin the rendering itself (words, indentation, flags, amounts, dates, JSON shape) independently of the
decoder; tests/unit/cli/test_intent_screen.py drives the same screen from real payloads.
"""

from __future__ import annotations

import json

import pytest

from custody.cli.output import (
    FLAG_MEANINGS,
    FLAG_WORDS,
    INTENT_KIND_WORDS,
    PARTY_ROLE_WORDS,
    amount_text,
    deadline_text,
    intent_flag_lines,
    intent_tree_lines,
    intents_to_json,
)
from custody.domain.intents import (
    UNLIMITED,
    UNLIMITED_UINT160,
    Intent,
    IntentFlag,
    IntentKind,
    Party,
    PartyRole,
    TokenAmount,
    TypedDataDomain,
)

SAFE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
MULTISEND = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
TOKEN = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
STRANGER = "0x000000000000000000000000000000000000dEaD"
LONG_DATA = "0x8d80ff0a" + "ab" * 700

TRANSFER = Intent(
    kind=IntentKind.ERC20_TRANSFER,
    contract=TOKEN,
    parties=(Party(PartyRole.RECIPIENT, STRANGER),),
    amounts=(TokenAmount(TOKEN, 42),),
    fields=(("to", STRANGER), ("amount", "42")),
    subject="transfer(address,uint256)",
)
UNLIMITED_APPROVE = Intent(
    kind=IntentKind.ERC20_APPROVE,
    contract=TOKEN,
    parties=(Party(PartyRole.SPENDER, STRANGER),),
    amounts=(TokenAmount(TOKEN, UNLIMITED),),
    flags=frozenset({IntentFlag.UNLIMITED_APPROVAL}),
    fields=(("spender", STRANGER), ("amount", str(UNLIMITED))),
    subject="approve(address,uint256)",
)
BATCH = Intent(
    kind=IntentKind.MULTISEND,
    contract=MULTISEND,
    fields=(("transactions", LONG_DATA),),
    children=(TRANSFER, UNLIMITED_APPROVE),
    subject="multiSend(bytes)",
)
SAFE_TRANSACTION = Intent(
    kind=IntentKind.SAFE_TRANSACTION,
    contract=SAFE,
    parties=(Party(PartyRole.DELEGATE, MULTISEND),),
    amounts=(TokenAmount(None, 1_500_000_000_000_000_000),),
    flags=frozenset({IntentFlag.DELEGATECALL}),
    fields=(("to", MULTISEND), ("operation", "DELEGATECALL"), ("data", LONG_DATA), ("nonce", "12")),
    children=(BATCH,),
    subject="SafeTx",
    domain=TypedDataDomain(chain_id=1, verifying_contract=SAFE),
)


def test_every_kind_role_and_flag_has_words() -> None:
    # A kind, role or flag the domain adds must get words here, or the screen would fall back to its code.
    assert set(INTENT_KIND_WORDS) == set(IntentKind)
    assert set(PARTY_ROLE_WORDS) == set(PartyRole)
    assert set(FLAG_WORDS) == set(FLAG_MEANINGS) == set(IntentFlag)
    assert all(words == words.upper() for words in FLAG_WORDS.values())


def test_children_are_numbered_and_indented_under_their_parent() -> None:
    lines = intent_tree_lines((SAFE_TRANSACTION,), indent=2)
    headings = [line for line in lines if line.lstrip().startswith("[")]
    assert headings == [
        "  [1] Safe transaction  !!! DELEGATECALL !!!",
        "      [1.1] MultiSend batch",
        "          [1.1.1] ERC-20 token transfer",
        "          [1.1.2] ERC-20 allowance (approve)  !!! UNLIMITED APPROVAL !!!",
    ]
    # Each child comes after every line of its parent's own rows, so a parent's fields are never split.
    assert lines.index(headings[1]) > lines.index("        nonce            12")


def test_every_row_and_field_is_printed_in_full() -> None:
    text = "\n".join(intent_tree_lines((SAFE_TRANSACTION,), indent=2))
    for row in (
        "      typed data       SafeTx",
        f"      contract         {SAFE}",
        "      domain chain id  1",
        f"      domain contract  {SAFE}",
        f"      delegate         {MULTISEND}",
        "      amount           1500000000000000000 wei = 1.5 ether",
        "      fields:",
        f"        data             {LONG_DATA}",
        "        operation        DELEGATECALL",
        "          call             multiSend(bytes)",
        f"          contract         {MULTISEND}",
        f"            transactions     {LONG_DATA}",
        f"              recipient        {STRANGER}",
        f"              amount           42 base units of token {TOKEN}",
        f"              spender          {STRANGER}",
        f"              amount           UNLIMITED (2**256 - 1) of token {TOKEN}",
        f"                amount           {UNLIMITED}",
    ):
        assert row in text.splitlines(), row
    assert "..." not in text and "characters)" not in text


def test_flags_at_the_top_name_the_intents_that_carry_them_and_say_what_they_mean() -> None:
    ownership = Intent(
        kind=IntentKind.OWNERSHIP_TRANSFER,
        contract=TOKEN,
        parties=(Party(PartyRole.NEW_OWNER, STRANGER),),
        flags=frozenset({IntentFlag.OWNERSHIP_TRANSFER, IntentFlag.DELEGATECALL}),
    )
    lines = intent_flag_lines((SAFE_TRANSACTION, ownership), indent=2)
    assert lines == [
        f"  !!! DELEGATECALL (intent 1, 2): {FLAG_MEANINGS[IntentFlag.DELEGATECALL]}",
        f"  !!! UNLIMITED APPROVAL (intent 1.1.2): {FLAG_MEANINGS[IntentFlag.UNLIMITED_APPROVAL]}",
        f"  !!! OWNERSHIP TRANSFER (intent 2): {FLAG_MEANINGS[IntentFlag.OWNERSHIP_TRANSFER]}",
    ]
    assert intent_flag_lines((TRANSFER,), indent=2) == ["  flags          none"]


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (TokenAmount(None, 10**16), "10000000000000000 wei = 0.01 ether"),
        (TokenAmount(TOKEN, 7), f"7 base units of token {TOKEN}"),
        (TokenAmount(TOKEN, 1, token_id=2**255), f"1 base units of token {TOKEN}, token id {2**255}"),
        (TokenAmount(TOKEN, UNLIMITED), f"UNLIMITED (2**256 - 1) of token {TOKEN}"),
        (
            TokenAmount(TOKEN, UNLIMITED_UINT160),
            f"UNLIMITED (2**160 - 1, Permit2's no-limit value) of token {TOKEN}",
        ),
    ],
)
def test_amounts_name_their_token_and_spell_out_unlimited(amount: TokenAmount, text: str) -> None:
    assert amount_text(amount) == text


@pytest.mark.parametrize(
    ("deadline", "text"),
    [
        (1_900_000_000, "2030-03-17 17:46:40 UTC (unix 1900000000)"),
        (0, "1970-01-01 00:00:00 UTC (unix 0)"),
        # Permits often use 2**256 - 1 for "no deadline"; no calendar holds it.
        (UNLIMITED, f"never (unix {UNLIMITED}, after the year 9999)"),
    ],
)
def test_deadlines_are_dates(deadline: int, text: str) -> None:
    assert deadline_text(deadline) == text


def test_a_deadline_text_and_size_are_shown_and_control_characters_escaped() -> None:
    permit = Intent(
        kind=IntentKind.PERMIT,
        contract=TOKEN,
        parties=(Party(PartyRole.SPENDER, STRANGER),),
        amounts=(TokenAmount(TOKEN, 5),),
        deadline=1_900_000_000,
        fields=(("owner\x1b[2J", "value\u202e"),),
        subject="Permit",
        domain=TypedDataDomain(name="Dai\nStablecoin", version="1", chain_id=1, verifying_contract=TOKEN),
    )
    message = Intent(kind=IntentKind.TEXT_MESSAGE, text="line one\nline two\x1b[2J", size=27)
    text = "\n".join(intent_tree_lines((permit, message), indent=0))
    assert "    deadline         2030-03-17 17:46:40 UTC (unix 1900000000)" in text
    assert "    domain name      Dai\\x0aStablecoin" in text
    assert "      owner\\x1b[2J     value\\u202e" in text
    assert "    size             27 bytes" in text
    assert "      | line one\n      | line two\\x1b[2J" in text
    assert "\x1b" not in text and "\u202e" not in text


def test_the_json_tree_carries_every_part_with_big_numbers_as_decimal_strings() -> None:
    tree = json.loads(json.dumps(intents_to_json((SAFE_TRANSACTION,))))
    safe = tree[0]
    assert safe["kind"] == "safe_transaction"
    assert safe["contract"] == SAFE
    assert safe["parties"] == [{"role": "delegate", "address": MULTISEND}]
    assert safe["amounts"] == [
        {"token": None, "amount": "1500000000000000000", "token_id": None, "unlimited": False}
    ]
    assert safe["flags"] == ["DELEGATECALL"]
    assert safe["fields"][2] == {"label": "data", "value": LONG_DATA}
    assert safe["subject"] == "SafeTx"
    assert safe["domain"] == {
        "name": None,
        "version": None,
        "chain_id": 1,
        "verifying_contract": SAFE,
        "salt": None,
    }
    assert safe["deadline"] is None and safe["text"] is None and safe["size"] is None
    approve = safe["children"][0]["children"][1]
    assert approve["flags"] == ["unlimited approval"]
    assert approve["amounts"] == [
        {"token": TOKEN, "amount": str(UNLIMITED), "token_id": None, "unlimited": True}
    ]
    assert approve["children"] == []

"""Fuzzing the policy parser: whatever TOML text arrives, ``parse_policy_text`` answers with a Policy or with a
ConfigurationError that says where the problem is.

A policy comes from an operator's file at start and from an admin's proposal over gRPC, and a daemon that
crashes with a stray exception on odd input, or accepts something it did not check, is no place for keys. The
properties checked here, over about 10,000 generated documents:

- parsing raises nothing but ConfigurationError, quickly;
- the message names the source and then where: the TOML line, a top-level field, an approver, the admin
  table, or a rule by index and name;
- an accepted policy can be used: it decides a few requests and governance without raising.

Two generators feed it. One builds policy-shaped documents from a seeded generator (approvers, admin quorum,
rules with every condition) and damages them: wrong types, unknown keys, missing fields, huge integers, odd
strings, values swapped for nested tables or arrays, written out as TOML with tables, arrays of tables and
inline forms. The other takes the development policy (``dev_policy_toml`` with approver keys drawn from a
pool of generated keys and weak ones) and damages its text line by line: lines dropped, doubled, swapped,
values replaced, headers renamed, bytes flipped. As in tests/unit/chains/test_evm_fuzz.py the runs are
derandomized and each test counts its cases.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import custody.domain.policy.approvers as approvers_module
from custody.domain.errors import ConfigurationError
from custody.domain.policy import Policy, RequestFacts, VelocityUsage
from custody.domain.requests import PayloadKind
from custody.policy_file import DEV_APPROVERS, dev_policy_toml, parse_policy_text
from tests.fuzzing import cases

T = TypeVar("T")

STRUCTURED_CASES = cases(6_000)
DEV_POLICY_CASES = cases(4_000)
# Far above any honest parse (a few milliseconds); a parse this slow is a hang in waiting.
SLOWEST_PARSE_SECONDS = 2.0
SOURCE = "fuzz/policy.toml"

_FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------------------------------------------------
# The property every document must satisfy.

_RULE_NAME = r"'[a-z0-9][a-z0-9_.-]*'"
_APPROVER_ID = r"'[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}'"
# Where a message may say the problem is, right after the source.
_LOCATION = re.compile(
    r"(?:not valid TOML: "
    r"|unknown top-level key "
    r"|version: "
    r"|approvers: "
    rf"|approver {_APPROVER_ID}: "
    r"|admin: "
    r"|rules: "
    r"|rules\[\d+\]: "
    rf"|rule {_RULE_NAME} \(rules\[\d+\]\): "
    # An integer out of TOML's range, named by its path in the document.
    r"|.+: is an integer outside the 64-bit range TOML allows)"
)
_FACTS = [
    RequestFacts("ops", PayloadKind.TRANSACTION, 1, "eip1559", "0x" + "11" * 20, 10**18, max_fee_wei=10**16),
    RequestFacts(
        "treasury", PayloadKind.TRANSACTION, 11155111, "legacy", "0x" + "22" * 20, 0, b"\xa9\x05\x9c\xbb"
    ),
    RequestFacts("ops", PayloadKind.TYPED_DATA, 137, None, "0x" + "33" * 20, 0),
    RequestFacts("treasury", PayloadKind.MESSAGE, None, None, None, 0, replacement=True),
]


def _usage(key_label: str, window_seconds: int) -> VelocityUsage:
    del key_label, window_seconds  # Every key has used some of every window, so limits can be hit.
    return VelocityUsage(count=3, total_value=4 * 10**18)


def _check(text: str, source: str = SOURCE) -> Policy | None:
    """Parse; assert only a ConfigurationError that says where escapes, quickly, and that a Policy works."""
    started = time.perf_counter()
    try:
        policy = parse_policy_text(text, source)
    except ConfigurationError as error:
        assert error.message.startswith(f"{source}: "), error.message
        where = error.message[len(source) + 2 :]
        assert _LOCATION.match(where), f"the message does not say where: {error.message[:300]!r}"
        return None
    finally:
        elapsed = time.perf_counter() - started
        assert elapsed < SLOWEST_PARSE_SECONDS, f"parsing {len(text)} characters took {elapsed:.1f} s"
    assert isinstance(policy, Policy) and policy.version >= 1 and policy.rules
    for facts in _FACTS:
        evaluation = policy.evaluate(facts, _usage)
        assert evaluation.decision.action in ("sign", "deny", "approve")
        assert evaluation.decision.policy_version == policy.version
        assert evaluation.decision.action != "approve" or evaluation.decision.quorum
    assert policy.governance_decision().action in ("approve", "deny")
    return policy


@pytest.fixture
def key_checks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check each distinct approver key once per test.

    The policy proves each key is a point of the prime-order group in pure Python, which takes tens of
    milliseconds; the documents here draw their keys from a small pool, so the check's answer for a key is
    computed by the real function the first time and reused after, and the parser's code is otherwise as is.
    """
    # The approvers' parser looks the check up in its own module, so that is where the cached one goes.
    monkeypatch.setattr(
        approvers_module,
        "ed25519_public_key_problem",
        functools.cache(approvers_module.ed25519_public_key_problem),
    )


# ------------------------------------------------------------------------------------------------------------
# Approver keys: generated ones, and the weak and malformed ones the parser must refuse.

_GOOD_KEYS = [
    Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"policy fuzz key {index}".encode()).digest())
    .public_key()
    .public_bytes_raw()
    .hex()
    for index in range(10)
]
_BAD_KEYS = [
    "01" + "00" * 31,  # the identity point, with which anyone forges signatures
    "ec" + "ff" * 30 + "7f",  # the point of order 2
    "ed" + "ff" * 30 + "7f",  # y = p, not a canonical encoding
    "00" * 32,  # a point of order 4
    "02" + "00" * 31,  # not on the curve
    _GOOD_KEYS[0][:63],
    _GOOD_KEYS[0] + "0",
    "0x" + _GOOD_KEYS[0][:62],
    " " + _GOOD_KEYS[0][:63],
    "\uff10" * 64,  # fullwidth digits, which int() would read
    "",
]


# ------------------------------------------------------------------------------------------------------------
# Writing TOML: a small writer, since the standard library only reads it.


@dataclass(frozen=True)
class _Raw:
    """TOML text written as is: spellings no Python value produces (huge hex, underscores, inf, dates)."""

    text: str


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON escapes are TOML escapes too; TOML also refuses a raw DEL in a basic string.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(key)} = {_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _toml(document: dict[str, Any], rng: random.Random) -> str:
    """``document`` as TOML; tables and arrays of tables are written as headers or inline, at random."""
    lines: list[str] = []
    sections: list[tuple[str, Any]] = []
    for key, value in document.items():
        if (isinstance(value, dict) or _is_table_array(value)) and rng.random() < 0.8:
            sections.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in sections:
        if isinstance(value, dict):
            inline = {k: v for k, v in value.items() if not isinstance(v, dict) or rng.random() < 0.3}
            lines.append(f"\n[{_key(key)}]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in inline.items())
            for sub_key, sub_table in value.items():
                if sub_key not in inline:
                    lines.append(f"\n[{_key(key)}.{_key(sub_key)}]")
                    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in sub_table.items())
        else:
            for table in value:
                lines.append(f"\n[[{_key(key)}]]")
                lines.extend(f"{_key(k)} = {_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------------
# Policy-shaped documents, damaged.

_APPROVER_IDS = ["alice", "bob", "carol", "dave", "erin@example.org", "x.y-z_1"]
_BAD_APPROVER_IDS = ["", "-alice", "al ice", "a" * 65, "alice\n", "älice", "bob:admin"]
_GROUPS = ["treasury", "admins", "security", "ops"]
_BAD_GROUPS = ["", "Treasury", "a" * 64, "-x", "ops\n", "tré"]
_KEY_LABELS = ["ops", "treasury", "cold.1", "hot-2"]
_BAD_KEY_LABELS = ["", "Ops", "-ops", "a" * 64, "ops key", "ops/1"]
_RULE_NAMES = ["ops", "treasury-tx", "r.1", "deny_all"]
_BAD_RULE_NAMES = ["", "Ops", "-r", "a rule", "règle"]
_ADDRESSES = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    "0x" + "11" * 20,
    "0x" + "22" * 20,
    "0x" + "33" * 20,
]
_BAD_ADDRESSES = [
    "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # mixed case with a wrong checksum
    "0x" + "ab" * 19,
    "0x" + "ab" * 21,
    "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    "0x",
    "",
]
_SELECTORS = ["0xa9059cbb", "0x095ea7b3", "0x23b872dd"]
_BAD_SELECTORS = ["a9059cbb", "0xa9059cb", "0xa9059cbbb", "0xZZ059cbb", ""]
_WEI = ["0", "1", "1000000000000000000", str(2**256 - 1), 0, 10**18, 2**63 - 1]
_BAD_WEI = ["-1", str(2**256), "1e18", "1.5", " 1", "0x10", "9" * 101, -1, 1.5, "١٢٣"]
_ODD_STRINGS = [
    "",
    " ",
    "\n",
    "\u0000",
    "\t\r",
    "\u200b",
    "\U0001f600",
    "x" * 5_000,
    "'; DROP TABLE rules; --",
    "[[rules]]",
    '"',
    "\\",
    "null",
    "true",
]
_HUGE_INTEGERS = [
    2**63 - 1,
    -(2**63),
    _Raw("9223372036854775808"),
    _Raw("-9223372036854775809"),
    _Raw("0x" + "f" * 17),
    _Raw("0x" + "f" * 5_000),
    _Raw("0o" + "7" * 200),
    _Raw("0b1" + "0" * 300),
    _Raw("9" * 4_400),
    _Raw("1_000"),
    _Raw("+1"),
    _Raw("-0"),
    _Raw("00"),
]
_ODD_RAW = [
    _Raw("inf"),
    _Raw("-inf"),
    _Raw("nan"),
    _Raw("1e400"),
    _Raw("1979-05-27T07:32:00Z"),
    _Raw("1979-05-27"),
    _Raw("07:32:00"),
    _Raw("'literal'"),
    _Raw('"""multi\nline"""'),
    _Raw("[]"),
    _Raw("{}"),
    _Raw("[[]]"),
    _Raw("[" * 3_000 + "]" * 3_000),
]
_FIELD_NAMES = [
    "version",
    "approvers",
    "admin",
    "rules",
    "public_key",
    "groups",
    "quorum",
    "security_groups",
    "group",
    "threshold",
    "name",
    "keys",
    "chain_ids",
    "kinds",
    "transaction_types",
    "destinations",
    "contracts",
    "address",
    "selectors",
    "max_value_wei",
    "max_fee_wei",
    "velocity",
    "window_seconds",
    "max_count",
    "freeze_on_breach",
    "allow_replacement",
    "action",
    "lifetime_seconds",
    "timelock_seconds",
    "Version",
    "rule",
    "",
    "a b",
]


class _Shapes:
    """Policy-shaped documents from a seeded generator.

    Hypothesis draws the seed and how much damage to do; the many small choices come from this generator
    (as in test_evm_fuzz), which keeps each case cheap while the runs stay reproducible.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def one_in(self, odds: int) -> bool:
        return self.rng.randrange(odds) == 0

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def rarely(self) -> bool:
        """Whether to plant one defect; rare, because a document with several is refused at the first."""
        return self.one_in(60)

    def either(self, good: Sequence[T], bad: Sequence[T]) -> T:
        return self.pick(bad) if self.rarely() else self.pick(good)

    def some(self, good: Sequence[T], bad: Sequence[T]) -> list[T]:
        """A short list of distinct values, rarely with a bad one, a repeat, or empty."""
        chosen = self.rng.sample(list(good), self.rng.randint(1, min(3, len(good))))
        if self.rarely():
            chosen.append(self.pick(bad))
        if self.rarely():
            chosen.append(chosen[0])
        if self.rarely():
            chosen = []
        return chosen

    def junk(self, depth: int = 0) -> Any:
        """A TOML value of a random type: the wrong thing in almost any field."""
        roll = self.rng.randrange(11 if depth < 2 else 8)
        if roll == 0:
            return self.one_in(2)
        if roll == 1:
            return self.rng.randint(-(2**63), 2**63 - 1) >> self.rng.randrange(63)
        if roll == 2:
            return self.pick(_HUGE_INTEGERS)
        if roll == 3:
            return self.rng.uniform(-1e6, 1e6)
        if roll == 4:
            return self.pick(_ODD_STRINGS)
        if roll == 5:
            return self.pick(_ODD_RAW)
        if roll == 6:
            return self.pick(
                [*_APPROVER_IDS, *_GROUPS, *_KEY_LABELS, *_ADDRESSES, *_SELECTORS, *_GOOD_KEYS[:2], "sign"]
            )
        if roll == 7:
            return datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
        if roll in (8, 9):
            return [self.junk(depth + 1) for _ in range(self.rng.randrange(4))]
        return {self.pick(_FIELD_NAMES): self.junk(depth + 1) for _ in range(self.rng.randrange(4))}

    def approvers(self) -> dict[str, Any]:
        ids = self.rng.sample(_APPROVER_IDS, self.rng.randint(1, 5))
        if self.rarely():
            ids.append(self.pick(_BAD_APPROVER_IDS))
        keys = self.rng.sample(_GOOD_KEYS, len(_GOOD_KEYS))
        approvers: dict[str, Any] = {}
        for index, approver_id in enumerate(ids):
            public_key = keys[index]
            if self.rarely():
                public_key = self.pick([*_BAD_KEYS, keys[0], public_key.upper()])
            approvers[approver_id] = {"public_key": public_key, "groups": self.some(_GROUPS, _BAD_GROUPS)}
        return approvers

    def quorum(self, members: dict[str, int]) -> list[Any]:
        """Terms over the groups the approvers list, each with a threshold the group can fill (mostly)."""
        groups = sorted(members) or ["admins"]
        terms = [
            {"group": group, "threshold": self.rng.randint(1, max(1, members.get(group, 1)))}
            for group in self.rng.sample(groups, self.rng.randint(1, min(2, len(groups))))
        ]
        if self.rarely():
            terms[0]["threshold"] = self.pick([0, -1, 99, "2", 1.0])
        if self.rarely():
            terms[0]["group"] = self.pick([*_BAD_GROUPS, "nobody"])
        return terms

    def admin(self, members: dict[str, int]) -> dict[str, Any]:
        admin: dict[str, Any] = {"quorum": self.quorum(members)}
        if self.one_in(2):
            admin["security_groups"] = self.some(sorted(members) or ["security"], [*_BAD_GROUPS, "nobody"])
        return admin

    def rule(self, index: int, members: dict[str, int]) -> dict[str, Any]:
        actions = ["sign", "deny", "approve", "approve"] if members else ["sign", "deny"]
        action = self.either(actions, ["Sign", "", "approve"])
        name = _RULE_NAMES[index % len(_RULE_NAMES)] + ("" if index < len(_RULE_NAMES) else str(index))
        rule: dict[str, Any] = {
            "name": self.either([name], _BAD_RULE_NAMES),
            "keys": self.some(_KEY_LABELS, _BAD_KEY_LABELS),
            "action": action,
        }
        optional: dict[str, Callable[[], Any]] = {
            "chain_ids": lambda: self.some([1, 137, 11155111, 2**63 - 1], [0, -1, 1.0, "1"]),
            "kinds": lambda: self.some(["transaction", "typed_data", "message"], ["policy_change", "tx"]),
            "transaction_types": lambda: self.some(["legacy", "eip2930", "eip1559"], ["eip4844", "Legacy"]),
            "destinations": lambda: self.some(_ADDRESSES, _BAD_ADDRESSES),
            "contracts": self.contracts,
            "max_value_wei": lambda: self.either(_WEI, _BAD_WEI),
            "max_fee_wei": lambda: self.either(_WEI, _BAD_WEI),
            "velocity": self.velocity,
            "allow_replacement": lambda: self.either([True, False], ["yes", 1]),
        }
        for field in self.rng.sample(sorted(optional), self.rng.randrange(5)):
            rule[field] = optional[field]()
        if action == "approve" or self.rarely():
            rule["quorum"] = self.quorum(members)
            lifetime = self.either([60, 3_600, 86_400, 30 * 86_400], [59, 30 * 86_400 + 1, 0, "1h"])
            if self.one_in(2):
                rule["lifetime_seconds"] = lifetime
            if self.one_in(2):
                # Mostly shorter than the lifetime in force, which the parser demands.
                longest = (lifetime if isinstance(lifetime, int) and lifetime > 0 else 86_400) - 1
                rule["timelock_seconds"] = self.either([0, self.rng.randint(0, longest)], [-1, longest + 1])
        return rule

    def contracts(self) -> list[Any]:
        return [
            {"address": address, "selectors": self.some(_SELECTORS, _BAD_SELECTORS)}
            for address in self.some(_ADDRESSES[2:], _BAD_ADDRESSES)
        ]

    def velocity(self) -> dict[str, Any]:
        velocity: dict[str, Any] = {
            "window_seconds": self.either([1, 60, 86_400, 366 * 86_400], [0, 366 * 86_400 + 1, "1d"])
        }
        limits = self.pick([["max_value_wei"], ["max_count"], ["max_value_wei", "max_count"]])
        if self.rarely():
            limits = []
        if "max_value_wei" in limits:
            velocity["max_value_wei"] = self.either(_WEI, _BAD_WEI)
        if "max_count" in limits:
            velocity["max_count"] = self.either([1, 20], [0, -5, "20"])
        if self.one_in(3):
            velocity["freeze_on_breach"] = self.either([True, False], ["true"])
        return velocity

    def policy(self) -> dict[str, Any]:
        document: dict[str, Any] = {"version": self.either([1, 2, 7, 2**63 - 1], [0, -1, "1", 1.0])}
        members: dict[str, int] = {}
        # A policy without approvers is valid too, as long as no rule asks for a quorum.
        if not self.one_in(6):
            document["approvers"] = self.approvers()
            for approver in document["approvers"].values():
                for group in approver["groups"]:
                    members[group] = members.get(group, 0) + 1
            document["admin"] = self.admin(members)
        document["rules"] = [self.rule(index, members) for index in range(self.rng.randint(1, 4))]
        return document

    def damage(self, document: dict[str, Any]) -> None:
        """Drop a field, swap its value for junk, or add an unknown one, somewhere in ``document``."""
        container: Any = document
        # Walk down a random path, so damage lands at every depth (top level, approvers, rules, quorum terms).
        while self.one_in(2):
            children = (
                [value for value in container.values() if isinstance(value, dict | list) and value]
                if isinstance(container, dict)
                else [value for value in container if isinstance(value, dict | list) and value]
            )
            if not children:
                break
            container = self.pick(children)
        action = self.pick(["drop", "junk", "junk", "add", "wrap"])
        if isinstance(container, list):
            index = self.rng.randrange(len(container)) if container else 0
            if action == "drop" and container:
                del container[index]
            elif action == "add" or not container:
                container.insert(index, self.junk())
            else:
                container[index] = self.junk() if action == "junk" else [container[index]]
            return
        keys = sorted(container)
        if action == "drop" and keys:
            del container[self.pick(keys)]
        elif action == "add" or not keys:
            container[self.pick(_FIELD_NAMES)] = self.junk()
        else:
            key = self.pick(keys)
            container[key] = self.junk() if action == "junk" else {key: container[key]}


def test_policy_shaped_documents_parse_or_say_where_they_are_wrong(key_checks_once: None) -> None:
    counts = [0, 0]

    @settings(_FUZZ_SETTINGS, max_examples=STRUCTURED_CASES)
    @given(seed=st.integers(min_value=0, max_value=2**64), damages=st.integers(min_value=0, max_value=3))
    def fuzz(seed: int, damages: int) -> None:
        counts[0] += 1
        shapes = _Shapes(seed)
        document = shapes.policy()
        for _ in range(damages):
            shapes.damage(document)
        if _check(_toml(document, shapes.rng)) is not None:
            counts[1] += 1

    fuzz()
    assert counts[0] >= STRUCTURED_CASES
    # A quarter of the cases are undamaged documents; the strategy must reach past the refusals to accept many.
    assert counts[1] >= counts[0] // 20, f"only {counts[1]} of {counts[0]} documents were accepted"


# ------------------------------------------------------------------------------------------------------------
# The development policy, damaged as text.

_REPLACEMENT_VALUES = [
    "1",
    "0",
    "-1",
    "true",
    '""',
    '"ops"',
    "[]",
    '["ops", "ops"]',
    "{}",
    '{ group = "admins", threshold = 2 }',
    '[{ group = "admins", threshold = 99 }]',
    '[{ group = "nobody", threshold = 1 }]',
    "1.5",
    "inf",
    "nan",
    "1979-05-27",
    "0x" + "f" * 40,
    "9" * 4_400,
    '"' + "x" * 3_000 + '"',
    '"1000000000000000000000000000000000000000000000000000000000000000000000000000000000"',
    "[" * 2_000 + "]" * 2_000,
    '"\\u0000"',
]
_EXTRA_LINES = [
    "unknown = 1",
    "version = 2",
    "[admin]",
    "[[rules]]",
    "[approvers.eve]",
    '[approvers."bad id"]',
    "[rules]",
    'public_key = "' + _GOOD_KEYS[9] + '"',
    'groups = ["admins"]',
    'name = "extra"',
    'keys = ["ops"]',
    'action = "approve"',
    "quorum = []",
    "velocity = { window_seconds = 60 }",
    'contracts = [{ address = "0x' + "11" * 20 + '" }]',
    "chain_ids = [0]",
    'max_fee_wei = "-1"',
    "lifetime_seconds = 86400",
    "timelock_seconds = 86400",
    "allow_replacement = 1",
    "=",
    '"',
    "[",
]
_ASSIGNMENT = re.compile(r"^(\s*[A-Za-z0-9_\"'.-]+\s*=\s*)(.*)$")


def _dev_keys(shapes: _Shapes) -> dict[str, str]:
    """Four approver keys from the generated pool, now and then weak, malformed, repeated or upper case."""
    keys = dict(zip(DEV_APPROVERS, shapes.rng.sample(_GOOD_KEYS, len(DEV_APPROVERS)), strict=True))
    if shapes.one_in(10):
        name = shapes.pick(DEV_APPROVERS)
        keys[name] = shapes.pick([*_BAD_KEYS, keys[shapes.pick(DEV_APPROVERS)], keys[name].upper()])
    return keys


def _damage_text(text: str, shapes: _Shapes) -> str:
    lines = text.split("\n")
    # Damage lands on the policy's own lines, not its long comment header.
    content = [index for index, line in enumerate(lines) if line and not line.startswith("#")]
    index = shapes.pick(content)
    action = shapes.pick(["drop", "double", "swap", "value", "value", "value", "insert", "header", "comment"])
    if action == "drop":
        del lines[index]
    elif action == "double":
        lines.insert(index, lines[index])
    elif action == "swap":
        other = shapes.pick(content)
        lines[index], lines[other] = lines[other], lines[index]
    elif action == "value" and (match := _ASSIGNMENT.match(lines[index])):
        lines[index] = match.group(1) + shapes.pick(_REPLACEMENT_VALUES)
    elif action == "header" and lines[index].startswith("["):
        lines[index] = shapes.pick(
            ["[approvers.alice]", "[admins]", "[[rule]]", "[rules.x]", "[[approvers]]"]
        )
    elif action == "comment":
        lines[index] = "# " + lines[index]
    else:
        lines.insert(index, shapes.pick(_EXTRA_LINES))
    return "\n".join(lines)


def _damage_bytes(text: str, shapes: _Shapes) -> str:
    """A character flipped, cut or inserted anywhere: damage no line-level edit makes."""
    position = shapes.rng.randrange(len(text))
    action = shapes.pick(["flip", "cut", "insert"])
    if action == "flip":
        return text[:position] + chr(ord(text[position]) ^ shapes.rng.randint(1, 127)) + text[position + 1 :]
    if action == "cut":
        return text[:position]
    return (
        text[:position]
        + shapes.pick(["\x00", "\ufeff", "\r", '"', "'", "\\", "=", "[", "}"])
        + text[position:]
    )


def test_damaged_development_policies_parse_or_say_where_they_are_wrong(key_checks_once: None) -> None:
    counts = [0, 0]

    @settings(_FUZZ_SETTINGS, max_examples=DEV_POLICY_CASES)
    @given(
        seed=st.integers(min_value=0, max_value=2**64),
        line_damages=st.integers(min_value=0, max_value=3),
        character_damage=st.integers(min_value=0, max_value=9),
    )
    def fuzz(seed: int, line_damages: int, character_damage: int) -> None:
        counts[0] += 1
        shapes = _Shapes(seed)
        keys = _dev_keys(shapes)
        try:
            text = dev_policy_toml(keys)
        except ConfigurationError as error:
            # The template refuses a key before it reaches the text, or its parse names the policy.
            assert error.message.startswith(
                ("alice's", "bob's", "carol's", "dave's", "the development policy: ")
            )
            text = dev_policy_toml(dict(zip(DEV_APPROVERS, _GOOD_KEYS, strict=False)))
        for _ in range(line_damages):
            text = _damage_text(text, shapes)
        if character_damage == 0:
            text = _damage_bytes(text, shapes)
        if _check(text) is not None:
            counts[1] += 1

    fuzz()
    assert counts[0] >= DEV_POLICY_CASES
    assert counts[1] >= counts[0] // 10, f"only {counts[1]} of {counts[0]} policies were accepted"

"""``velocity``: a limit on how many requests, and how much value, one key may have within a sliding window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.conditions.intent_tree import refuse_limit_in_deny_rule
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory, is_int, parse_wei, quoted_list, type_name
from custody.domain.policy.trace import ConditionTrace

# A window longer than a year is almost surely a unit mistake (milliseconds written as seconds), and bounding
# it keeps the store's "since" arithmetic far from overflow.
MAX_VELOCITY_WINDOW_SECONDS = 366 * 86_400

# The condition's name in traces; evaluation looks for it to tell a breach that should freeze the key.
VELOCITY_TRACE_NAME = "velocity"

_VELOCITY_KEYS = frozenset({"window_seconds", "max_value_wei", "max_count", "freeze_on_breach"})


@dataclass(frozen=True)
class VelocityLimit:
    """``velocity = { window_seconds = 86400, max_count = 20, max_value_wei = "5000000000000000000" }``: at
    most ``max_count`` requests and ``max_value_wei`` wei per key within a sliding window, this one included.

    ``window_seconds`` (1 s to 366 days) is required, with ``max_count``, ``max_value_wei`` or both. The
    window counts the key's requests that were signed, approved or are still waiting for approval, whichever
    rule decided them. With ``freeze_on_breach = true`` a request that this rule would have matched but for
    its limit also freezes the key (the circuit breaker), whatever a later rule decides about the request.

    A limit, so refused in a deny rule (which would deny only the requests within it): set it on the rules
    that sign or ask for approval.

    Unlike the other conditions it needs the key's past usage, which the caller looks up; it is the last
    condition in a trace.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("velocity",)

    window_seconds: int
    max_value_wei: int | None
    max_count: int | None
    freeze_on_breach: bool

    @classmethod
    def parse(cls, rule: RuleTable) -> VelocityLimit | None:
        if "velocity" not in rule.raw:
            return None
        refuse_limit_in_deny_rule(
            rule,
            "velocity",
            "to deny what exceeds it, set it on the rules that sign or ask for approval (freeze_on_breach = true"
            " freezes the key on a breach)",
        )
        return _parse_velocity(rule.raw["velocity"], rule.fail)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        used = usage(facts.key_label, self.window_seconds)
        problems: list[str] = []
        findings: list[str] = []
        if self.max_count is not None:
            count = used.count + 1
            if count > self.max_count:
                problems.append(f"{count} requests would exceed the limit of {self.max_count}")
            else:
                findings.append(f"{count} requests are within the limit of {self.max_count}")
        if self.max_value_wei is not None:
            total = used.total_value + facts.value
            if total > self.max_value_wei:
                problems.append(f"{total} wei would exceed the limit of {self.max_value_wei} wei")
            else:
                findings.append(f"{total} wei is within the limit of {self.max_value_wei} wei")
        window = f"in the last {self.window_seconds} s, this request included"
        if problems:
            return ConditionTrace(VELOCITY_TRACE_NAME, False, f"{window}: {'; '.join(problems)}")
        return ConditionTrace(VELOCITY_TRACE_NAME, True, f"{window}: {'; '.join(findings)}")


def _parse_velocity(value: Any, fail: FailFactory) -> VelocityLimit:
    if not isinstance(value, Mapping):
        raise fail("velocity", f"must be a table, got {type_name(value)}")
    unknown = sorted(set(value) - _VELOCITY_KEYS)
    if unknown:
        raise fail(
            "velocity",
            f"unknown key {quoted_list(unknown)}; allowed are {quoted_list(sorted(_VELOCITY_KEYS))}",
        )
    window: Any = value.get("window_seconds")
    if not is_int(window) or not 1 <= window <= MAX_VELOCITY_WINDOW_SECONDS:
        raise fail(
            "velocity.window_seconds",
            f"is required: an integer from 1 to {MAX_VELOCITY_WINDOW_SECONDS} (366 days), got {window!r}",
        )
    if "max_value_wei" not in value and "max_count" not in value:
        raise fail("velocity", "must set max_value_wei, max_count or both; a window alone limits nothing")
    max_value = None
    if "max_value_wei" in value:
        max_value = parse_wei(value["max_value_wei"], "velocity.max_value_wei", fail)
    max_count = None
    if "max_count" in value:
        max_count = value["max_count"]
        if not is_int(max_count) or max_count < 1:
            raise fail("velocity.max_count", f"must be a positive integer, got {max_count!r}")
    freeze = value.get("freeze_on_breach", False)
    if not isinstance(freeze, bool):
        raise fail("velocity.freeze_on_breach", f"must be true or false, got {freeze!r}")
    return VelocityLimit(
        window_seconds=int(window),
        max_value_wei=max_value,
        max_count=None if max_count is None else int(max_count),
        freeze_on_breach=freeze,
    )

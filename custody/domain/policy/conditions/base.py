"""What a condition is, and what its parser is handed: the contract every module in this package follows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import FailFactory
from custody.domain.policy.trace import ConditionTrace


class Condition(Protocol):
    """One test a rule applies to a request; it reports its outcome rather than raising."""

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace | None:
        """The outcome for this request, or None when the condition says nothing about it (it is then left
        out of the trace). ``usage`` gives the key's usage in a window, for conditions that limit it; it
        raises InternalError when the caller evaluates without usage."""
        ...


class ConditionType(Protocol):
    """What the registry lists: a condition class, with the rule fields it reads and its parser."""

    # The keys of a [[rules]] table the condition reads; the rule parser refuses keys no condition claims.
    @property
    def TOML_FIELDS(self) -> tuple[str, ...]: ...

    def parse(self, rule: RuleTable) -> Condition | None:
        """The condition the rule's table asks for, or None when the rule does not use it; a malformed field
        raises the ConfigurationError ``rule.fail`` builds."""
        ...


ConditionT = TypeVar("ConditionT")


@dataclass(frozen=True)
class RuleTable:
    """One [[rules]] table as the policy file wrote it, as each condition's parser sees it."""

    raw: Mapping[str, Any]
    fail: FailFactory  # fail(field, problem): the error naming the file, the rule and the field
    parsed: tuple[Condition, ...]  # the conditions parsed before this one, in registry order

    def earlier(self, condition_class: type[ConditionT]) -> ConditionT | None:
        """The condition of this class parsed before, for checks that relate two fields of one rule."""
        return next((c for c in self.parsed if isinstance(c, condition_class)), None)

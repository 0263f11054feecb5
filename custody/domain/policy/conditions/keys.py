"""``keys``: which signing keys a rule is written for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from custody.domain.errors import InvalidInput
from custody.domain.keys import validate_key_label
from custody.domain.policy.conditions.base import RuleTable
from custody.domain.policy.facts import RequestFacts, VelocityLookup
from custody.domain.policy.fields import parse_string_set, quoted_list
from custody.domain.policy.trace import ConditionTrace


@dataclass(frozen=True)
class KeyCondition:
    """``keys = ["ops", "hot"]``, required in every rule: the rule decides only requests signed by one of
    these keys.

    Every rule names its keys, so a rule written for one key never decides another key's requests by
    accident, and a denial's reason lists only the rules written for the request's key. Labels are
    lowercase letters, digits, '.', '_' and '-'; a policy naming a key custody does not hold is refused when
    it is proposed.
    """

    TOML_FIELDS: ClassVar[tuple[str, ...]] = ("keys",)

    key_labels: frozenset[str]

    @classmethod
    def parse(cls, rule: RuleTable) -> KeyCondition:
        if "keys" not in rule.raw:
            raise rule.fail("keys", "is required (a non-empty list of key labels)")
        key_labels = parse_string_set(rule.raw["keys"], "keys", "key labels", rule.fail)
        for label in sorted(key_labels):
            try:
                validate_key_label(label)
            except InvalidInput as error:
                raise rule.fail("keys", f"{label!r} is not a valid key label") from error
        return cls(key_labels)

    def check(self, facts: RequestFacts, usage: VelocityLookup) -> ConditionTrace:
        matched = facts.key_label in self.key_labels
        listed = quoted_list(sorted(self.key_labels))
        verb = "is" if matched else "is not"
        return ConditionTrace("keys", matched, f"key {facts.key_label!r} {verb} in {listed}")

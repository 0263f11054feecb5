"""The trace of an evaluation: what each condition of each rule tried said, and its JSON form.

Requests keep their trace for ``custody policy explain``, so the JSON written here is stored in databases and
must keep reading back: its shape and the words in it do not change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from custody.domain.canonical_json import canonical_json
from custody.domain.errors import InvalidInput


@dataclass(frozen=True)
class ConditionTrace:
    condition: str
    matched: bool
    detail: str


@dataclass(frozen=True)
class RuleTrace:
    rule: str
    matched: bool
    conditions: tuple[ConditionTrace, ...]


def trace_to_json(trace: tuple[RuleTrace, ...]) -> str:
    """Compact JSON with sorted keys: ``{"rules": [{"rule", "matched", "conditions": [...]}]}``."""
    document = {
        "rules": [
            {
                "rule": rule.rule,
                "matched": rule.matched,
                "conditions": [
                    {"condition": c.condition, "matched": c.matched, "detail": c.detail}
                    for c in rule.conditions
                ],
            }
            for rule in trace
        ]
    }
    return canonical_json(document, ascii_only=False)


def trace_from_json(text: str) -> tuple[RuleTrace, ...]:
    """Read back what ``trace_to_json`` wrote; anything else raises InvalidInput."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"a policy trace must be JSON: {error}") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"rules"}
        or not isinstance(document["rules"], list)
    ):
        raise InvalidInput('a policy trace must be an object with one key "rules" holding a list')
    return tuple(_rule_trace_from_json(item) for item in document["rules"])


def _rule_trace_from_json(item: Any) -> RuleTrace:
    if (
        not isinstance(item, dict)
        or set(item) != {"rule", "matched", "conditions"}
        or not isinstance(item["rule"], str)
        or not isinstance(item["matched"], bool)
        or not isinstance(item["conditions"], list)
    ):
        raise InvalidInput(f"a policy trace rule must have rule, matched and conditions; got {item!r:.200}")
    return RuleTrace(
        item["rule"], item["matched"], tuple(_condition_from_json(c) for c in item["conditions"])
    )


def _condition_from_json(item: Any) -> ConditionTrace:
    if (
        not isinstance(item, dict)
        or set(item) != {"condition", "matched", "detail"}
        or not isinstance(item["condition"], str)
        or not isinstance(item["matched"], bool)
        or not isinstance(item["detail"], str)
    ):
        raise InvalidInput(
            f"a policy trace condition must have condition, matched and detail; got {item!r:.200}"
        )
    return ConditionTrace(item["condition"], item["matched"], item["detail"])

"""Evaluation: the first rule whose conditions all match decides; when none does, the request is denied.

Every rule tried leaves a trace, so ``custody policy explain`` can show which rule decided a request and why
the rules before it did not match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from custody.domain.policy.conditions.velocity import VELOCITY_TRACE_NAME
from custody.domain.policy.facts import RequestFacts, VelocityLookup, VelocityUsage
from custody.domain.policy.rules import Rule
from custody.domain.policy.trace import RuleTrace
from custody.domain.requests import Decision, DecisionAction

NO_MATCH_REASON = "no rule allows this request (deny by default)"
# A denial names what stopped at most this many of the rules written for the key; the trace has all of them.
MAX_RULES_IN_REASON = 3


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    trace: tuple[RuleTrace, ...]
    # Set when a rule that asks for it failed only because of its velocity limit: the circuit breaker should
    # freeze the key, whatever a later rule decided about this request.
    freeze_key: bool = False
    freeze_reason: str = ""
    lifetime_seconds: int | None = None  # the matched rule's request lifetime; None unless it is "approve"


def evaluate_rules(
    rules: Sequence[Rule], policy_version: int, facts: RequestFacts, velocity: VelocityLookup | None
) -> Evaluation:
    """Decide a request: the first matching rule's action, or deny when no rule matches."""
    cached_velocity = _cached_per_window(velocity) if velocity is not None else None
    traces: list[RuleTrace] = []
    freeze_reason = ""
    for rule in rules:
        trace = rule.check(facts, cached_velocity)
        traces.append(trace)
        if not freeze_reason and _failed_only_on_velocity(rule, trace):
            freeze_reason = f"rule {rule.name!r}: velocity limit hit on key {facts.key_label!r}"
        if trace.matched:
            lifetime = rule.lifetime_seconds if rule.action is DecisionAction.APPROVE else None
            return Evaluation(
                rule.decide(policy_version),
                tuple(traces),
                freeze_key=bool(freeze_reason),
                freeze_reason=freeze_reason,
                lifetime_seconds=lifetime,
            )
    return Evaluation(
        Decision(DecisionAction.DENY, None, _no_match_reason(facts, rules, traces), policy_version),
        tuple(traces),
        freeze_key=bool(freeze_reason),
        freeze_reason=freeze_reason,
    )


def _no_match_reason(facts: RequestFacts, rules: Sequence[Rule], traces: Sequence[RuleTrace]) -> str:
    """The deny-by-default reason, naming what stopped the rules written for the request's key.

    The requester sees the reason with the denial, so a cap that was hit (value, fee, velocity) is plain
    without a second look at ``policy explain``. Rules for other keys are left out: that they name another key
    says nothing useful.
    """
    misses = [
        f"rule {trace.rule!r} did not match: "
        + "; ".join(outcome.detail for outcome in trace.conditions if not outcome.matched)
        for rule, trace in zip(rules, traces, strict=True)
        if facts.key_label in rule.keys
    ]
    if not misses:
        return NO_MATCH_REASON
    shown = misses[:MAX_RULES_IN_REASON]
    if len(misses) > len(shown):
        shown.append(f"and {len(misses) - len(shown)} more rules (see policy explain)")
    return f"{NO_MATCH_REASON}; " + "; ".join(shown)


def _cached_per_window(velocity: VelocityLookup) -> VelocityLookup:
    # Several rules may limit the same window; one evaluation asks the store about each window once.
    usage_by_window: dict[tuple[str, int], VelocityUsage] = {}

    def lookup(key_label: str, window_seconds: int) -> VelocityUsage:
        if (key_label, window_seconds) not in usage_by_window:
            usage_by_window[key_label, window_seconds] = velocity(key_label, window_seconds)
        return usage_by_window[key_label, window_seconds]

    return lookup


def _failed_only_on_velocity(rule: Rule, trace: RuleTrace) -> bool:
    velocity = rule.velocity
    if velocity is None or not velocity.freeze_on_breach or trace.matched:
        return False
    return all(outcome.matched for outcome in trace.conditions if outcome.condition != VELOCITY_TRACE_NAME)

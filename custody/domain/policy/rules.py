"""A rule: a name, conditions that must all match, and the action taken when they do."""

from __future__ import annotations

from dataclasses import dataclass

from custody.domain.errors import InternalError
from custody.domain.policy.conditions import Condition, KeyCondition, VelocityLimit
from custody.domain.policy.facts import RequestFacts, VelocityLookup, VelocityUsage
from custody.domain.policy.trace import RuleTrace
from custody.domain.requests import Decision, DecisionAction, QuorumTerm


@dataclass(frozen=True)
class Rule:
    """A named rule: its conditions, and the action taken when all of them match.

    ``conditions`` are in registry order, which is the order a trace shows them; a condition the policy file
    left out is not among them. Every rule has a ``KeyCondition``. ``quorum``, ``lifetime_seconds`` and
    ``timelock_seconds`` belong to approve rules only.
    """

    name: str
    action: DecisionAction
    conditions: tuple[Condition, ...]
    quorum: tuple[QuorumTerm, ...] = ()
    lifetime_seconds: int | None = None
    timelock_seconds: int = 0

    def __post_init__(self) -> None:
        if not any(isinstance(condition, KeyCondition) for condition in self.conditions):
            raise InternalError(f"rule {self.name!r} names no keys")

    @property
    def keys(self) -> frozenset[str]:
        """The labels of the keys the rule is written for."""
        return next(c.key_labels for c in self.conditions if isinstance(c, KeyCondition))

    @property
    def velocity(self) -> VelocityLimit | None:
        return next((c for c in self.conditions if isinstance(c, VelocityLimit)), None)

    def check(self, facts: RequestFacts, velocity: VelocityLookup | None = None) -> RuleTrace:
        """Every condition's outcome for ``facts``; the rule matches when all of them matched.

        ``velocity`` looks up the key's usage; without it, a rule with a velocity limit raises InternalError
        rather than guessing the usage.
        """
        usage = velocity if velocity is not None else self._usage_not_supplied
        # Every condition is checked, not only up to the first failure, so an explanation lists all the
        # reasons a rule did not match.
        outcomes = [
            outcome for condition in self.conditions if (outcome := condition.check(facts, usage)) is not None
        ]
        return RuleTrace(self.name, all(outcome.matched for outcome in outcomes), tuple(outcomes))

    def decide(self, policy_version: int) -> Decision:
        if self.action is DecisionAction.SIGN:
            return Decision(
                DecisionAction.SIGN, self.name, f"rule {self.name!r} allows this request", policy_version
            )
        if self.action is DecisionAction.APPROVE:
            quorum = " AND ".join(term.describe() for term in self.quorum)
            return Decision(
                DecisionAction.APPROVE,
                self.name,
                f"rule {self.name!r} needs approval by {quorum}",
                policy_version,
                quorum=self.quorum,
                timelock_seconds=self.timelock_seconds,
            )
        return Decision(
            DecisionAction.DENY, self.name, f"rule {self.name!r} denies this request", policy_version
        )

    def _usage_not_supplied(self, key_label: str, window_seconds: int) -> VelocityUsage:
        raise InternalError(f"rule {self.name!r} has a velocity limit but the key's usage was not supplied")

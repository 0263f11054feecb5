"""What the daemon computes itself from a stored request before anything counts or signs.

The database is not trusted to be unchanged: a row edited behind the daemon's back must neither gather
approvals nor be signed. The daemon therefore recomputes the payload hash, the digest and the policy's facts
from the stored payload, and judges the request on those (custody/domain/signing.py), so that a forged row
would also need forged Ed25519 signatures.

A request's payload is parsed once on each path to the HSM: the submission that the policy signs at once
hands its own parse along, and a request signed later is parsed once when its claim is taken. The policy is
asked once per policy version on that path too: at submission the decision just made is the answer (same
parse, same policy version, in the same process); later the active policy is asked again on the recomputed
facts, because the stored decision is only a database row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from custody.chains.evm import ParsedPayload, parse_payload
from custody.chains.evm.intents import payload_intents
from custody.domain.errors import CustodyError
from custody.domain.policy import Policy, RequestFacts, VelocityUsage
from custody.domain.requests import Decision, SigningRequest
from custody.domain.signing import Recomputed


@dataclass
class Prepared:
    """A request's payload as this process parsed it, carried along the path to the HSM."""

    recomputed: Recomputed
    parsed: ParsedPayload | None  # None for governance requests and payloads that no longer parse
    # The policy's decision on ``recomputed.facts`` per policy version, so that it is asked once per version.
    _decisions: dict[int, Decision] = field(default_factory=dict)

    def decision_under(self, policy: Policy) -> Decision | None:
        """What ``policy`` decides about the recomputed facts, velocity left out: the usage counted now
        includes requests that came after this one, which were not there when it was decided."""
        facts = self.recomputed.facts
        if facts is None:
            return None
        decision = self._decisions.get(policy.version)
        if decision is None:
            decision = policy.evaluate(facts, _no_earlier_usage).decision
            self._decisions[policy.version] = decision
        return decision


def prepared_at_submission(
    parsed: ParsedPayload, payload_hash: bytes, facts: RequestFacts, decision: Decision
) -> Prepared:
    """The submission's own parse and decision, for a request the policy signs at once."""
    return Prepared(
        recomputed=Recomputed(payload_hash=payload_hash, digest=parsed.digest, facts=facts),
        parsed=parsed,
        _decisions={decision.policy_version: decision},
    )


def prepare(request: SigningRequest, now: datetime) -> Prepared:
    """Hash, digest and facts as the daemon computes them at ``now`` from the stored payload."""
    payload_hash = hashlib.sha256(request.payload).digest()
    if request.kind.is_governance:
        return Prepared(Recomputed(payload_hash=payload_hash, digest=payload_hash, facts=None), parsed=None)
    try:
        parsed = parse_payload(request.kind, request.payload)
    except CustodyError:
        # A stored payload that no longer parses cannot match anything that was approved.
        return Prepared(Recomputed(payload_hash=payload_hash, digest=b"", facts=None), parsed=None)
    facts = request_facts(request.key_label, parsed, replacement=request.replaces is not None, now=now)
    return Prepared(Recomputed(payload_hash=payload_hash, digest=parsed.digest, facts=facts), parsed=parsed)


def request_facts(key_label: str, parsed: ParsedPayload, *, replacement: bool, now: datetime) -> RequestFacts:
    """What the policy looks at, taken from the payload as the daemon parsed it, at ``now`` (permit horizons
    are measured from it)."""
    return RequestFacts(
        key_label=key_label,
        kind=parsed.kind,
        chain_id=parsed.chain_id,
        transaction_type=parsed.transaction_type,
        to=parsed.to,
        value=parsed.value,
        selector=parsed.selector,
        replacement=replacement,
        max_fee_wei=parsed.max_fee_wei,
        intents=payload_intents(parsed),
        now=int(now.timestamp()),
    )


def _no_earlier_usage(key_label: str, window_seconds: int) -> VelocityUsage:
    return VelocityUsage(count=0, total_value=0, token_amounts={})

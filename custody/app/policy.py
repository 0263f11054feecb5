"""Use cases for the policy: which version is in force, proposing a new one, explaining a decision.

The database holds the active policy. ``policy.toml`` named by the configuration only seeds an empty database;
after that a policy changes only through a proposal that the admin quorum of the policy in force approves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from custody.app.audit import DAEMON_ACTOR, AuditUseCases
from custody.audit.events import AuditKind
from custody.domain.canonical_json import canonical_json
from custody.domain.errors import (
    Aborted,
    AlreadyExists,
    ConfigurationError,
    InternalError,
    InvalidInput,
    NotFound,
)
from custody.domain.ids import new_request_id
from custody.domain.policy import Policy, RuleTrace, trace_from_json
from custody.domain.principals import Principal, Role
from custody.domain.requests import Decision, PayloadKind, RequestState, SigningRequest
from custody.policy_file import parse_policy_text
from custody.store.base import Store, StoredPolicy, StoreTransaction

log = logging.getLogger(__name__)

# Governance requests (policy changes, unfreezes) wait this long for the admin quorum.
GOVERNANCE_LIFETIME = timedelta(hours=24)
MAX_POLICY_DOCUMENT_BYTES = 64 * 1024
# Parsed policy documents kept: the versions in force lately, and room for rows a writer edits in place.
_PARSED_POLICIES = 16


@dataclass(frozen=True)
class ActivePolicy:
    policy: Policy
    document: str


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    rules: tuple[RuleTrace, ...]


class PolicyUseCases:
    def __init__(
        self,
        store: Store,
        audit: AuditUseCases,
        clock: Callable[[], datetime],
        *,
        open_seals: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        # Opens the HSM seal key (custody/app/integrity.py) before the policy is seeded and sealed: seeding is
        # the first thing every start does after opening the audit log.
        self._open_seals = open_seals
        # Parsed policies by version and exact text, the most recently used last: a row edited in place keeps
        # its version but is another document, and must be parsed (and its seal checked) as what it now says.
        self._parsed: OrderedDict[tuple[int, str], ActivePolicy] = OrderedDict()
        self._lock = threading.Lock()

    # -- the policy in force ----------------------------------------------------------------------------------

    def active(self, tx: StoreTransaction | None = None) -> ActivePolicy:
        """The active policy, read from the database each time so every replica sees an activation at once;
        parsing is cached by version and text."""
        stored = (tx or self._store).active_policy()
        if stored is None:
            raise ConfigurationError(
                "the database holds no policy; the daemon seeds it from policy.toml at start"
            )
        cache_key = (stored.version, stored.document)
        with self._lock:
            cached = self._parsed.get(cache_key)
            if cached is not None:
                self._parsed.move_to_end(cache_key)
        if cached is None:
            parsed = ActivePolicy(
                policy=parse_policy_text(stored.document, f"policy version {stored.version}"),
                document=stored.document,
            )
            with self._lock:
                cached = self._parsed.setdefault(cache_key, parsed)
                while len(self._parsed) > _PARSED_POLICIES:
                    self._parsed.popitem(last=False)
        return cached

    def document_of(self, policy: Policy) -> str:
        """The exact stored text ``policy`` was parsed from (by ``active``), whose seal is checked before a
        request is signed under it."""
        with self._lock:
            for cached in reversed(self._parsed.values()):
                if cached.policy is policy:
                    return cached.document
        raise InternalError(f"policy version {policy.version} was not read through PolicyUseCases.active")

    def seed(self, document: str, source: str) -> None:
        """Store ``document`` as the first policy when the database has none; otherwise keep the database's.

        A policy file that differs from the policy in force is reported, never applied: changing the policy
        takes the admin quorum. The seal key is opened first, so a database whose seals cannot be trusted
        stops the start here.
        """
        seeded = parse_policy_text(document, source)
        self._open_seals()
        stored = self._store.active_policy()
        if stored is None:
            try:
                with self._store.transaction() as tx:
                    tx.activate_policy(
                        StoredPolicy(
                            version=seeded.version,
                            document=document,
                            activated_at=self._clock(),
                            request_id=None,
                        )
                    )
                    self._audit.record(
                        tx,
                        DAEMON_ACTOR,
                        AuditKind.POLICY_ACTIVATED,
                        version=seeded.version,
                        source="bootstrap file",
                    )
                log.info("activated policy version %d from %s", seeded.version, source)
                return
            except (Aborted, AlreadyExists):
                # Another replica seeded the database at the same moment; its policy is the one in force.
                stored = self._store.active_policy()
        if stored is not None and stored.document != document:
            log.warning(
                "%s differs from the active policy version %d in the database; the database's policy stays in"
                " force (change it with `custody policy propose`)",
                source,
                stored.version,
            )

    def get(self, caller: Principal) -> ActivePolicy:
        del caller  # Every authenticated principal may read the rules it is judged by.
        return self.active()

    # -- proposals --------------------------------------------------------------------------------------------

    def propose(self, caller: Principal, document: str) -> SigningRequest:
        """Record a policy change that waits for the admin quorum of the policy in force."""
        caller.require(Role.ADMIN, "propose a policy")
        if len(document.encode("utf-8")) > MAX_POLICY_DOCUMENT_BYTES:
            raise InvalidInput(
                f"a policy document is at most {MAX_POLICY_DOCUMENT_BYTES} bytes", field="document"
            )
        try:
            proposed = parse_policy_text(document, "the proposed policy")
        except ConfigurationError as exc:
            raise InvalidInput(exc.message, field="document") from None
        now = self._clock()
        with self._store.transaction() as tx:
            current = self.active(tx).policy
            if proposed.version != current.version + 1:
                raise InvalidInput(
                    f"the proposed policy has version {proposed.version}; the next version is {current.version + 1}",
                    field="document",
                )
            unknown = proposed.unknown_key_labels(frozenset(key.label for key in tx.list_keys()))
            if unknown:
                raise InvalidInput(
                    f"the proposed policy names keys that do not exist: {', '.join(sorted(unknown))}",
                    field="document",
                )
            payload = document.encode("utf-8")
            request = governance_request(
                kind=PayloadKind.POLICY_CHANGE,
                payload=payload,
                requester=caller.name,
                key_label="",
                key_id="",
                decision=current.governance_decision(),
                now=now,
                summary={
                    "proposed_version": str(proposed.version),
                    "active_version": str(current.version),
                    "document_sha256": "0x" + hashlib.sha256(payload).hexdigest(),
                    "rules": ", ".join(rule.name for rule in proposed.rules),
                },
            )
            tx.insert_request(request)
            self._audit.record(
                tx,
                caller.name,
                AuditKind.POLICY_PROPOSED,
                request.request_id,
                proposed_version=proposed.version,
                document_sha256=request.summary["document_sha256"],
            )
        log.info("policy version %d proposed by %s as %s", proposed.version, caller.name, request.request_id)
        return request

    def explain(self, request: SigningRequest) -> Explanation:
        rules = trace_from_json(request.policy_trace) if request.policy_trace else ()
        return Explanation(decision=request.decision, rules=rules)


def governance_request(
    *,
    kind: PayloadKind,
    payload: bytes,
    requester: str,
    key_label: str,
    key_id: str,
    decision: Decision,
    now: datetime,
    summary: dict[str, str],
) -> SigningRequest:
    """A request for a change to custody itself. Its digest is the payload's SHA-256: approvers sign a statement
    binding exactly this document or action, and the HSM never signs it."""
    digest = hashlib.sha256(payload).digest()
    return SigningRequest(
        request_id=new_request_id(now.timestamp()),
        key_label=key_label,
        key_id=key_id,
        requester=requester,
        kind=kind,
        chain_id=None,
        payload=payload,
        payload_hash=digest,
        digest=digest,
        decision=decision,
        state=RequestState.PENDING_APPROVAL,
        created_at=now,
        updated_at=now,
        summary=summary,
        expires_at=now + GOVERNANCE_LIFETIME,
    )


def unfreeze_payload(key_label: str, freeze: int) -> bytes:
    """What the admins approve to unfreeze a key: the key, and which of its freezes is lifted (the key's
    ``freezes`` count when the unfreeze was asked for), so that the approval cannot lift a later freeze."""
    return canonical_json(
        {"action": "unfreeze", "key": key_label, "freeze": freeze}, ascii_only=True
    ).encode()


def unfreeze_lifts(payload: bytes) -> int | None:
    """The freeze an unfreeze payload lifts; None for a payload that names none (asked for before unfreezes
    named their freeze), which therefore lifts nothing."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    freeze = document.get("freeze") if isinstance(document, dict) else None
    return freeze if isinstance(freeze, int) and not isinstance(freeze, bool) else None


def require_request(tx: StoreTransaction, request_id: str) -> SigningRequest:
    request = tx.get_request(request_id)
    if request is None:
        raise NotFound(f"there is no request {request_id}")
    return request

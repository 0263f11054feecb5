"""Prometheus metrics on their own listener, and the store instrumentation that feeds most of them.

The metrics live in a registry of their own (not prometheus_client's global one), so only custody's series
are served. Request, signature, approval and denial counts are taken from what the store actually committed:
``InstrumentedStore`` wraps the real store, notes what a transaction wrote (a request inserted, a transition,
an approval) and counts it only when that transaction commits, so a rolled-back change is never counted.

Series:
- custody_requests_total{kind,state}: requests entering a state (inserted in it, or moved to it).
- custody_signatures_total{kind}: requests moved to SIGNED, each with its stored signature.
- custody_approvals_total{verdict}: approvals and rejections counted ("approve", "reject").
- custody_denials_total: requests that policy denied.
- custody_hsm_call_seconds{operation} and custody_hsm_errors_total{error}: see custody.hsm.instrumented.
- custody_db_transaction_seconds: every write transaction, committed or not.
- custody_audit_write_failures_total: transactions that wrote an audit event and did not commit.
- custody_queue_depth{state}: requests waiting (PENDING_APPROVAL, and APPROVED but not yet signed), refreshed
  with every health check and counted up to QUEUE_COUNT_LIMIT.
- custody_refusals_total{kind}: every call the transport refused ("auth.refused", "permission.denied"),
  counted one by one although the audit log records them aggregated per peer; never labelled with the peer's
  identity, which any certificate of the CA can choose.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from custody.domain.errors import ConfigurationError, StoreUnavailable
from custody.domain.requests import Approval, RequestState, SigningRequest
from custody.store.base import Store, StoreTransaction

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "custody_requests_total",
    "Requests entering a state, by payload kind.",
    ["kind", "state"],
    registry=REGISTRY,
)
SIGNATURES = Counter(
    "custody_signatures_total", "Signatures made and stored, by payload kind.", ["kind"], registry=REGISTRY
)
APPROVALS = Counter(
    "custody_approvals_total", "Approver verdicts counted, by verdict.", ["verdict"], registry=REGISTRY
)
DENIALS = Counter("custody_denials_total", "Requests denied by policy.", registry=REGISTRY)
SEAL_MISMATCHES = Counter(
    "custody_seal_mismatches_total",
    "Requests refused because a record they rely on did not carry a valid HSM seal (seal.mismatch events).",
    registry=REGISTRY,
)
# HSM calls take from well under a millisecond (SoftHSM2) to tens of milliseconds (network HSMs).
HSM_CALL_SECONDS = Histogram(
    "custody_hsm_call_seconds",
    "Duration of calls into the HSM, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    registry=REGISTRY,
)
HSM_ERRORS = Counter(
    "custody_hsm_errors_total", "HSM calls that raised, by custody error type.", ["error"], registry=REGISTRY
)
DB_TRANSACTION_SECONDS = Histogram(
    "custody_db_transaction_seconds",
    "Duration of database write transactions, from begin to commit or rollback.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    registry=REGISTRY,
)
AUDIT_WRITE_FAILURES = Counter(
    "custody_audit_write_failures_total",
    "Transactions that wrote an audit event and then failed, so their change did not happen.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "custody_queue_depth",
    "Requests waiting, by state (APPROVED: not yet signed).",
    ["state"],
    registry=REGISTRY,
)
REFUSALS = Counter(
    "custody_refusals_total",
    "Calls refused for authentication or permission, by audit event kind.",
    ["kind"],
    registry=REGISTRY,
)

# The store lists at most this many requests per query, so deeper queues show as this number.
QUEUE_COUNT_LIMIT = 1000
QUEUED_STATES = (RequestState.PENDING_APPROVAL, RequestState.APPROVED)

# Store methods that write; called on the store itself each runs in a write transaction of its own.
_WRITE_METHODS = frozenset(
    {
        "insert_key",
        "set_key_state",
        "insert_request",
        "transition_request",
        "claim_signing",
        "insert_approval",
        "reserve_nonce",
        "move_nonce",
        "append_audit",
        "activate_policy",
    }
)


def start_metrics_listener(listen: str) -> tuple[str, int, Callable[[], None]]:
    """Serve the registry over HTTP on ``listen`` (HOST:PORT, port 0 picks one); returns host, port and a stop
    function."""
    host, _, port = listen.rpartition(":")
    try:
        server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=REGISTRY)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {listen}: {exc.strerror or 'the address is not available'}"
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return host, int(server.server_port), stop


def refresh_queue_depth(store: Store) -> None:
    for state in QUEUED_STATES:
        waiting = store.list_requests(state=state, limit=QUEUE_COUNT_LIMIT)
        QUEUE_DEPTH.labels(state=state.value).set(len(waiting))


class _Tally:
    """What one transaction wrote that the counters care about, applied only once it has committed."""

    def __init__(self) -> None:
        self._pending: list[Callable[[], None]] = []
        self.wrote_audit = False

    def note(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        if method == "insert_request":
            request: SigningRequest = args[0] if args else kwargs["request"]
            self._pending.append(functools.partial(_count_state, request.kind.value, request.state))
        elif method == "transition_request" and isinstance(result, SigningRequest):
            self._pending.append(functools.partial(_count_state, result.kind.value, result.state))
        elif method == "insert_approval":
            approval: Approval = args[0] if args else kwargs["approval"]
            self._pending.append(APPROVALS.labels(verdict=approval.verdict.value).inc)
        elif method == "append_audit" and getattr(result, "kind", None) == "seal.mismatch":
            self._pending.append(SEAL_MISMATCHES.inc)

    def committed(self) -> None:
        for count in self._pending:
            count()


def _count_state(kind: str, state: RequestState) -> None:
    REQUESTS.labels(kind=kind, state=state.value).inc()
    if state is RequestState.SIGNED:
        SIGNATURES.labels(kind=kind).inc()
    elif state is RequestState.DENIED:
        DENIALS.inc()


class _InstrumentedTransaction:
    """Delegates to the real transaction, noting what it writes for the tally."""

    def __init__(self, inner: StoreTransaction, tally: _Tally) -> None:
        self._inner = inner
        self._tally = tally

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in _WRITE_METHODS:
            if callable(attribute):
                setattr(self, name, attribute)
            return attribute
        tally = self._tally

        def noted(*args: Any, **kwargs: Any) -> Any:
            if name == "append_audit":
                tally.wrote_audit = True
            result = attribute(*args, **kwargs)
            tally.note(name, args, kwargs, result)
            return result

        # Methods are kept on the object, so that later calls in this transaction skip __getattr__ and the
        # wrapping: a request's path calls the same few methods several times.
        setattr(self, name, noted)
        return noted


class InstrumentedStore:
    """The real store, timed and counted; every other behaviour is the real store's own.

    It implements the Store protocol by delegation: ``transaction()`` and the write methods called on the
    store itself are timed and tallied, reads pass straight through.
    """

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    @property
    def inner(self) -> Store:
        return self._inner

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        tally = _Tally()
        with self._measured(tally), self._inner.transaction() as tx:
            yield _InstrumentedTransaction(tx, tally)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in _WRITE_METHODS:
            return attribute

        @functools.wraps(attribute)
        def measured(*args: Any, **kwargs: Any) -> Any:
            tally = _Tally()
            tally.wrote_audit = name == "append_audit"
            with self._measured(tally):
                result = attribute(*args, **kwargs)
                tally.note(name, args, kwargs, result)
            return result

        return measured

    @contextmanager
    def _measured(self, tally: _Tally) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except StoreUnavailable:
            # A use case may also roll back its own audit event on purpose by raising; only a database that
            # could not take the write is an audit failure.
            if tally.wrote_audit:
                AUDIT_WRITE_FAILURES.inc()
            raise
        finally:
            DB_TRANSACTION_SECONDS.observe(time.perf_counter() - started)
        tally.committed()

"""The store instrumentation on a real SQLite store: counts follow what commits, and only that."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.domain.errors import NotFound, StoreUnavailable
from custody.domain.requests import RequestState
from custody.observability.metrics import REGISTRY, InstrumentedStore, refresh_queue_depth
from custody.store.sqlite import SqliteStore
from custody.testing.store_faults import failing_audit_writes
from tests.integration.store.helpers import (
    later,
    make_approval,
    make_approver,
    make_draft,
    make_key,
    make_message_request,
    make_transaction_request,
    sign_message,
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    """Metric values relative to the start of a test (the registry is shared by the whole process)."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self._series = series
        self._start = [sample(name, **labels) for name, labels in series]

    def now(self) -> list[float]:
        return [
            sample(name, **labels) - start
            for (name, labels), start in zip(self._series, self._start, strict=True)
        ]


@pytest.fixture
def real_store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "custody.db")
    yield store
    store.close()


def test_committed_changes_are_counted_and_timed(real_store: SqliteStore) -> None:
    store = InstrumentedStore(real_store)
    deltas = Deltas(
        ("custody_requests_total", {"kind": "message", "state": "APPROVED"}),
        ("custody_requests_total", {"kind": "message", "state": "SIGNED"}),
        ("custody_signatures_total", {"kind": "message"}),
        ("custody_requests_total", {"kind": "transaction", "state": "PENDING_APPROVAL"}),
        ("custody_approvals_total", {"verdict": "approve"}),
        ("custody_denials_total", {}),
        ("custody_db_transaction_seconds_count", {}),
    )
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    message = make_message_request(test_key)
    with store.transaction() as tx:
        tx.insert_request(message)
        tx.append_audit(make_draft(1, request_id=message.request_id))
    store.transition_request(
        message.request_id,
        RequestState.APPROVED,
        RequestState.SIGNED,
        later(1),
        result=sign_message(test_key),
    )
    pending = make_transaction_request(test_key)
    store.insert_request(pending)
    store.insert_approval(make_approval(pending, make_approver("alice")))
    denied = make_message_request(test_key, suffix=9, state=RequestState.DENIED)
    store.insert_request(denied)
    assert deltas.now() == [1, 1, 1, 1, 1, 1, 6]
    # Reads pass straight through, untimed.
    assert store.get_request(message.request_id) is not None
    assert deltas.now()[-1] == 6


def test_a_rolled_back_transaction_counts_nothing_but_its_time(real_store: SqliteStore) -> None:
    store = InstrumentedStore(real_store)
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    deltas = Deltas(
        ("custody_requests_total", {"kind": "message", "state": "APPROVED"}),
        ("custody_audit_write_failures_total", {}),
        ("custody_db_transaction_seconds_count", {}),
    )
    request = make_message_request(test_key)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.insert_request(request)
        tx.append_audit(make_draft(1, request_id=request.request_id))
        # A use case refusing after it wrote: a deliberate rollback, not an audit failure.
        raise NotFound("the use case changed its mind")
    assert real_store.get_request(request.request_id) is None
    assert deltas.now() == [0, 0, 1]


def test_an_audit_write_the_database_refuses_is_counted(real_store: SqliteStore) -> None:
    store = InstrumentedStore(real_store)
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    deltas = Deltas(
        ("custody_audit_write_failures_total", {}),
        ("custody_requests_total", {"kind": "message", "state": "APPROVED"}),
    )
    request = make_message_request(test_key)
    with failing_audit_writes(real_store) as fault:
        with pytest.raises(StoreUnavailable), store.transaction() as tx:
            tx.insert_request(request)
            tx.append_audit(make_draft(1, request_id=request.request_id))
        with pytest.raises(StoreUnavailable):
            store.append_audit(make_draft(2))
    assert fault.hits == 2
    assert real_store.get_request(request.request_id) is None
    assert deltas.now() == [2, 0]


def test_queue_depth_counts_waiting_requests(real_store: SqliteStore) -> None:
    store = InstrumentedStore(real_store)
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    for suffix in range(3):
        store.insert_request(make_transaction_request(test_key, suffix=10 + suffix))
    store.insert_request(make_message_request(test_key, suffix=20))
    store.insert_request(make_message_request(test_key, suffix=21, state=RequestState.DENIED))
    refresh_queue_depth(store)  # type: ignore[arg-type]
    assert sample("custody_queue_depth", state="PENDING_APPROVAL") == 3
    assert sample("custody_queue_depth", state="APPROVED") == 1

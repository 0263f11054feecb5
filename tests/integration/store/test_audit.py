"""The audit log in the SQLite store: appended events chain, read back exactly, filter and stream."""

from __future__ import annotations

import weakref
from datetime import timedelta, timezone

import pytest

from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, event_hash
from custody.domain.errors import Aborted, InvalidInput
from custody.domain.requests import RequestState
from custody.store.base import Store

from .conftest import Database
from .helpers import BASE_TIME, check_chain, later, make_draft, make_key, make_message_request


def test_an_empty_log_has_no_head(store: Store) -> None:
    assert store.audit_head() is None
    assert store.list_audit_events() == []
    assert store.last_audit_event_of_kind("request.submitted") is None
    assert list(store.iter_audit_events()) == []


def test_appended_events_read_back_exactly_and_chain(store: Store) -> None:
    appended = [store.append_audit(make_draft(index)) for index in range(1, 6)]

    assert [event.sequence for event in appended] == [1, 2, 3, 4, 5]
    assert appended[0].previous_hash == GENESIS_HASH
    stored = store.list_audit_events()
    assert stored == appended
    assert store.audit_head() == appended[-1]
    check_chain(stored)
    first = stored[0]
    assert first.time == BASE_TIME + timedelta(seconds=1)
    assert first.actor == "backend"
    assert first.kind == "request.submitted"
    assert first.request_id is None
    assert first.details == {
        "index": 1,
        "value_wei": 2**200 + 1,
        "reason": "event 1 for Zoë ✓",
        "nested": {"a": True, "b": [1, 2, {"c": None}]},
    }


def test_the_stored_details_are_the_json_the_hash_covers(store: Store, database: Database) -> None:
    event = store.append_audit(make_draft(1))
    [row] = database.rows("SELECT time, details, previous_hash, hash FROM audit_events WHERE sequence = 1")
    assert row["time"] == "2024-05-01T12:00:01.123456Z"
    # Compact, sorted keys, ASCII escapes: exactly the bytes inside the canonical encoding.
    assert row["details"] == (
        '{"index":1,"nested":{"a":true,"b":[1,2,{"c":null}]},'
        '"reason":"event 1 for Zo\\u00eb \\u2713","value_wei":' + str(2**200 + 1) + "}"
    )
    assert bytes(row["previous_hash"]) == GENESIS_HASH
    assert bytes(row["hash"]) == event.hash == event_hash(1, make_draft(1), GENESIS_HASH)


def test_a_time_in_another_zone_is_stored_as_utc_with_the_same_hash(store: Store) -> None:
    elsewhere = BASE_TIME.astimezone(timezone(timedelta(hours=-5)))
    draft = AuditDraft(time=elsewhere, actor="alice", kind="key.frozen", details={"label": "ops"})
    event = store.append_audit(draft)
    assert event.time == BASE_TIME and event.time.utcoffset() == timedelta(0)
    assert event.hash == event_hash(1, draft, GENESIS_HASH)
    check_chain(store.list_audit_events())


def test_drafts_that_cannot_be_hashed_are_refused_before_writing(store: Store) -> None:
    naive = AuditDraft(time=BASE_TIME.replace(tzinfo=None), actor="custody", kind="daemon.started")
    with pytest.raises(InvalidInput, match=r"the time of a daemon\.started audit event has no time zone"):
        store.append_audit(naive)
    not_json = AuditDraft(time=BASE_TIME, actor="custody", kind="key.created", details={"key": b"\x01"})
    with pytest.raises(InvalidInput, match=r"the details of a key\.created audit event must be JSON values"):
        store.append_audit(not_json)
    not_a_number = AuditDraft(
        time=BASE_TIME, actor="custody", kind="key.created", details={"x": float("nan")}
    )
    with pytest.raises(InvalidInput, match="must be JSON values"):
        store.append_audit(not_a_number)
    assert store.audit_head() is None


def test_events_in_a_transaction_commit_with_it_or_not_at_all(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = make_message_request(test_key, state=RequestState.PENDING_APPROVAL)
    store.insert_request(request)
    with store.transaction() as tx:
        tx.transition_request(
            request.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
        )
        approved = tx.append_audit(make_draft(1, kind="request.approved", request_id=request.request_id))
        # The transaction sees its own appends: the next one chains after it.
        assert tx.audit_head() == approved
        cancelled_draft = make_draft(2, kind="request.cancelled", request_id=request.request_id)
    assert store.audit_head() == approved

    with pytest.raises(Aborted), store.transaction() as tx:
        tx.append_audit(cancelled_draft)
        # Losing the race rolls back the event written before it.
        tx.transition_request(
            request.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, later(2)
        )
    assert store.audit_head() == approved
    assert [event.sequence for event in store.list_audit_events()] == [1]
    # The next append takes sequence 2: the rolled-back event left no gap.
    assert store.append_audit(cancelled_draft).sequence == 2
    check_chain(store.list_audit_events())


def _fill(store: Store) -> list[str]:
    """Twelve events over two requests, three actors and four kinds, a minute apart."""
    requests = ["req_a", "req_b"]
    with store.transaction() as tx:
        for index in range(12):
            tx.append_audit(
                make_draft(
                    index,
                    kind=("request.submitted", "approval.counted", "request.signed", "auth.failed")[
                        index % 4
                    ],
                    actor=("alice", "bob", "custody")[index % 3],
                    request_id=None if index % 4 == 3 else requests[index % 2],
                    at=later(index),
                )
            )
    return requests


def test_filters(store: Store) -> None:
    _fill(store)
    events = store.list_audit_events()
    assert [event.sequence for event in events] == list(range(1, 13))

    def sequences(**filters: object) -> list[int]:
        return [event.sequence for event in store.list_audit_events(**filters)]  # type: ignore[arg-type]

    assert sequences(request_id="req_a") == [1, 3, 5, 7, 9, 11]
    assert sequences(request_id="req_b") == [2, 6, 10]
    assert sequences(actor="custody") == [3, 6, 9, 12]
    assert sequences(kind="auth.failed") == [4, 8, 12]
    assert sequences(kind="request.signed", actor="custody") == [3]
    # since is inclusive and until exclusive; event n was written at minute n - 1.
    assert sequences(since=later(3), until=later(6)) == [4, 5, 6]
    assert sequences(since=later(3).astimezone(timezone(timedelta(hours=2))), until=later(4)) == [4]
    assert sequences(after_sequence=9) == [10, 11, 12]
    assert sequences(actor="alice", after_sequence=4, limit=2) == [7, 10]
    assert sequences(request_id="nobody") == []
    # The limit is clamped to 1..10000 rather than refused.
    assert sequences(limit=0) == [1]
    assert sequences(limit=-5) == [1]
    with pytest.raises(InvalidInput, match="cannot be stored"):
        store.list_audit_events(since=BASE_TIME.replace(tzinfo=None))


def test_list_limit_is_clamped_to_ten_thousand(store: Store) -> None:
    with store.transaction() as tx:
        for index in range(10_005):
            tx.append_audit(AuditDraft(time=BASE_TIME, actor="custody", kind="tick", details={"i": index}))
    assert len(store.list_audit_events(limit=50_000)) == 10_000
    assert [event.sequence for event in store.list_audit_events(after_sequence=10_000, limit=50_000)] == [
        10_001,
        10_002,
        10_003,
        10_004,
        10_005,
    ]


def test_last_event_of_kind(store: Store) -> None:
    _fill(store)
    last_signed = store.last_audit_event_of_kind("request.signed")
    assert last_signed is not None and last_signed.sequence == 11
    assert store.last_audit_event_of_kind("audit.checkpoint") is None
    checkpoint = store.append_audit(
        AuditDraft(
            time=later(30),
            actor="custody",
            kind="audit.checkpoint",
            details={
                "covers_sequence": 12,
                "covers_hash": "00" * 32,
                "public_key": "11" * 32,
                "signature": "22",
            },
        )
    )
    assert store.last_audit_event_of_kind("audit.checkpoint") == checkpoint


EVENTS_TO_STREAM = 20_000


def test_iter_audit_events_streams_twenty_thousand_events(store: Store) -> None:
    with store.transaction() as tx:
        for index in range(EVENTS_TO_STREAM):
            tx.append_audit(make_draft(index, request_id=f"req_{index % 97}"))

    events = list(store.iter_audit_events())
    assert len(events) == EVENTS_TO_STREAM
    check_chain(events)
    assert events[-1] == store.audit_head()
    tail = list(store.iter_audit_events(after_sequence=EVENTS_TO_STREAM - 3))
    assert [event.sequence for event in tail] == [
        EVENTS_TO_STREAM - 2,
        EVENTS_TO_STREAM - 1,
        EVENTS_TO_STREAM,
    ]
    check_chain(tail, first_sequence=EVENTS_TO_STREAM - 2)
    assert list(store.iter_audit_events(after_sequence=EVENTS_TO_STREAM)) == []

    # Streaming holds one batch at a time: of the events it has yielded, and not kept here, never more than one
    # batch of 5,000 is alive, however long the log.
    alive = 0
    most_alive = 0
    count = 0

    def freed(_reference: weakref.ref[AuditEvent]) -> None:
        nonlocal alive
        alive -= 1

    references = []
    for event in store.iter_audit_events():
        references.append(weakref.ref(event, freed))
        alive += 1
        count += 1
        most_alive = max(most_alive, alive)
    del event
    assert count == EVENTS_TO_STREAM
    assert most_alive == 5_000


def test_iteration_holds_no_lock_between_batches(store: Store) -> None:
    with store.transaction() as tx:
        for index in range(12_000):
            tx.append_audit(make_draft(index))
    stream = store.iter_audit_events()
    first = [next(stream) for _ in range(7_000)]
    # A writer is not blocked by a half-read stream, and what it appends the stream still reaches.
    appended = store.append_audit(make_draft(12_000, kind="audit.checkpoint"))
    rest = list(stream)
    assert rest[-1] == appended
    check_chain(first + rest)


def test_an_append_after_reading_the_head_in_the_transaction_chains_on_it(store: Store) -> None:
    with store.transaction() as tx:
        tx.append_audit(make_draft(1))
    with store.transaction() as tx:
        head = tx.audit_head()
        assert head is not None and head.sequence == 1
        second = tx.append_audit(make_draft(2))
        third = tx.append_audit(make_draft(3))
    assert (second.sequence, second.previous_hash) == (2, head.hash)
    assert (third.sequence, third.previous_hash) == (3, second.hash)
    check_chain(store.list_audit_events())


def test_an_append_after_reading_an_empty_log_in_the_transaction_starts_it(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.audit_head() is None
        first = tx.append_audit(make_draft(1))
    assert (first.sequence, first.previous_hash) == (1, GENESIS_HASH)
    check_chain(store.list_audit_events())

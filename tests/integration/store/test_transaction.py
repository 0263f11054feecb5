"""``transaction()``: several operations commit together or not at all, and see their own writes."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from custody.domain.errors import AlreadyExists, InternalError, StoreUnavailable
from custody.domain.keys import KeyState
from custody.domain.requests import RequestState
from custody.store.base import Store, StoredPolicy, StoreTransaction
from custody.store.sqlite import SqliteStore

from .conftest import Database
from .helpers import (
    BASE_TIME,
    later,
    make_approval,
    make_approver,
    make_key,
    make_transaction_request,
    verify_approval,
)


class _Interrupted(Exception):
    """Raised by a test inside a transaction block, after its writes."""


def test_an_exception_after_two_writes_leaves_neither(store: Store) -> None:
    treasury = make_key("treasury")
    store.insert_key(treasury.key)
    request = make_transaction_request(treasury)
    store.insert_request(request)
    alice = make_approver("alice")

    with pytest.raises(_Interrupted), store.transaction() as tx:
        tx.insert_approval(make_approval(request, alice, created_at=later(1)))
        tx.transition_request(
            request.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
        )
        raise _Interrupted

    assert store.list_approvals(request.request_id) == []
    assert store.get_request(request.request_id) == request


def test_a_custody_error_inside_the_block_rolls_back_too(store: Store) -> None:
    treasury = make_key("treasury")

    with (
        pytest.raises(AlreadyExists, match="a key labelled treasury already exists"),
        store.transaction() as tx,
    ):
        tx.insert_key(treasury.key)
        tx.insert_key(treasury.key)

    assert store.list_keys() == []


def test_reads_in_a_transaction_see_its_own_writes(store: Store, database: Database) -> None:
    treasury = make_key("treasury")
    request = make_transaction_request(treasury)
    alice = make_approver("alice")
    approval = make_approval(request, alice, created_at=later(1))
    policy = StoredPolicy(version=1, document="version = 1\n", activated_at=BASE_TIME, request_id=None)
    outside = database.open()
    try:
        with store.transaction() as tx:
            tx.insert_key(treasury.key)
            tx.insert_request(request)
            tx.insert_approval(approval)
            tx.activate_policy(policy)
            frozen = tx.set_key_state("treasury", KeyState.ACTIVE, KeyState.FROZEN, later(1))

            assert tx.get_key("treasury") == frozen
            assert tx.list_keys() == [frozen]
            assert tx.get_request(request.request_id) == request
            assert tx.list_approvals(request.request_id) == [approval]
            assert tx.active_policy() == policy
            assert tx.pending_requests_before_version(2) == [request]
            # Nobody else sees any of it before the commit.
            assert outside.get_key("treasury") is None
            assert outside.get_request(request.request_id) is None
            assert outside.active_policy() is None

        assert outside.get_key("treasury") == frozen
        assert outside.get_request(request.request_id) == request
        assert outside.active_policy() == policy
        [stored] = outside.list_approvals(request.request_id)
        assert stored == approval
        verify_approval(stored, alice.public_key)
    finally:
        outside.close()


def test_the_transaction_object_is_a_store_transaction(store: Store) -> None:
    with store.transaction() as tx:
        accepted: StoreTransaction = tx
        assert accepted.active_policy() is None


def test_nested_transaction_in_one_thread_is_refused(store: Store) -> None:
    treasury = make_key("treasury")

    with pytest.raises(InternalError, match="this thread already has a store transaction open"):
        with store.transaction() as tx:
            tx.insert_key(treasury.key)
            with store.transaction():
                pass
    assert store.list_keys() == []

    # The store's own write methods open a transaction too, so calling one inside a block is the same mistake.
    with pytest.raises(InternalError, match="could not store the key: this thread already has a store"):
        with store.transaction():
            store.insert_key(treasury.key)
    assert store.list_keys() == []

    # After the refusals the store works as before, from this thread too.
    store.insert_key(treasury.key)
    assert store.list_keys() == [treasury.key]


def test_an_ended_transaction_refuses_use(store: Store) -> None:
    treasury = make_key("treasury")
    with store.transaction() as tx:
        tx.insert_key(treasury.key)

    with pytest.raises(
        InternalError, match="could not read the key: the store transaction it was called on has"
    ):
        tx.get_key("treasury")
    with pytest.raises(
        InternalError, match="could not store the key: the store transaction it was called on has"
    ):
        tx.insert_key(make_key("ops").key)
    assert store.list_keys() == [treasury.key]


def test_other_threads_wait_for_the_transaction_and_then_see_it(store: Store) -> None:
    treasury = make_key("treasury")
    store.insert_key(treasury.key)
    inside = threading.Event()
    outcome: list[str] = []

    def freeze_from_another_thread() -> None:
        inside.wait(timeout=30)
        try:
            store.set_key_state("treasury", KeyState.ACTIVE, KeyState.FROZEN, later(2))
            outcome.append("frozen")
        except Exception as failure:  # reported to the test thread below
            outcome.append(f"{type(failure).__name__}: {failure}")

    other = threading.Thread(target=freeze_from_another_thread)
    other.start()
    with store.transaction() as tx:
        tx.set_key_state("treasury", KeyState.ACTIVE, KeyState.FROZEN, later(1))
        inside.set()
        # Give the other thread time to reach the write lock; it must not get past it while this block runs.
        time.sleep(0.2)
        assert outcome == []
        tx.set_key_state("treasury", KeyState.FROZEN, KeyState.ACTIVE, later(1))
    other.join(timeout=30)

    # The other thread ran after the commit and saw the key ACTIVE again, so its own change applied.
    assert outcome == ["frozen"]
    key = store.get_key("treasury")
    assert key is not None and key.state is KeyState.FROZEN


def test_a_transaction_blocked_by_another_process_is_unavailable(db_path: Path) -> None:
    store = SqliteStore(db_path, busy_timeout_seconds=0.2)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(
            StoreUnavailable, match="could not write to the database: the database stayed locked"
        ):
            with store.transaction() as tx:
                tx.insert_key(make_key("treasury").key)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # The failed attempt left the thread free to open the next transaction.
    with store.transaction() as tx:
        tx.insert_key(make_key("ops").key)
    assert [key.label for key in store.list_keys()] == ["ops"]
    store.close()

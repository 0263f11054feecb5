"""Signed approvals and policy versions in a real SQLite file."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from cryptography.exceptions import InvalidSignature

from custody.domain.errors import Aborted, AlreadyExists, InvalidInput, NotFound
from custody.domain.requests import Approval, PayloadKind, Verdict
from custody.store import codec
from custody.store.base import Store, StoredPolicy

from .conftest import Database
from .helpers import (
    BASE_TIME,
    TestKey,
    later,
    make_approval,
    make_approver,
    make_governance_request,
    make_key,
    make_transaction_request,
    verify_approval,
)

RACERS = 16


@pytest.fixture
def treasury(store: Store) -> TestKey:
    test_key = make_key("treasury")
    store.insert_key(test_key.key)
    return test_key


def test_approvals_round_trip_in_the_order_counted(store: Store, treasury: TestKey) -> None:
    request = make_transaction_request(treasury)
    store.insert_request(request)
    alice, bob, carol = make_approver("alice"), make_approver("bob"), make_approver("carol")
    # Inserted out of time order, and bob and alice at the same instant: the order is by time, then approver.
    approvals = [
        make_approval(
            request, carol, verdict=Verdict.REJECT, created_at=later(3), reason="wrong destination"
        ),
        make_approval(request, bob, created_at=later(1)),
        make_approval(request, alice, created_at=later(1)),
    ]
    for approval in approvals:
        store.insert_approval(approval)

    stored = store.list_approvals(request.request_id)
    assert [approval.approver for approval in stored] == ["alice", "bob", "carol"]
    assert stored == [approvals[2], approvals[1], approvals[0]]
    assert stored[2].verdict is Verdict.REJECT
    assert stored[2].reason == "wrong destination"
    for approval, approver in zip(stored, (alice, bob, carol), strict=True):
        verify_approval(approval, approver.public_key)
    # A signature is bound to its own statement and key: the stored bytes are exactly what was signed.
    with pytest.raises(InvalidSignature):
        bob.public_key.verify(stored[0].signature, stored[0].statement)


def test_approvals_of_a_governance_request(store: Store) -> None:
    request = make_governance_request(PayloadKind.POLICY_CHANGE)
    store.insert_request(request)
    dave = make_approver("dave")
    approval = make_approval(request, dave, created_at=later(1))
    store.insert_approval(approval)

    [stored] = store.list_approvals(request.request_id)
    assert stored == approval
    verify_approval(stored, dave.public_key)
    assert b'"key_id":""' in stored.statement


def test_no_approvals_is_an_empty_list(store: Store, treasury: TestKey) -> None:
    request = make_transaction_request(treasury)
    store.insert_request(request)
    assert store.list_approvals(request.request_id) == []
    assert store.list_approvals("req_unknown") == []


def test_an_approver_gives_one_verdict(store: Store, treasury: TestKey) -> None:
    request = make_transaction_request(treasury)
    store.insert_request(request)
    alice = make_approver("alice")
    first = make_approval(request, alice, created_at=later(1))
    store.insert_approval(first)

    for verdict in Verdict:
        with pytest.raises(
            AlreadyExists, match=f"alice already gave a verdict on request {request.request_id}"
        ):
            store.insert_approval(make_approval(request, alice, verdict=verdict, created_at=later(2)))
    assert store.list_approvals(request.request_id) == [first]


def test_the_same_approver_may_judge_two_requests(store: Store, treasury: TestKey) -> None:
    first = make_transaction_request(treasury, suffix=1)
    second = make_transaction_request(treasury, suffix=2)
    store.insert_request(first)
    store.insert_request(second)
    alice = make_approver("alice")

    store.insert_approval(make_approval(first, alice))
    store.insert_approval(make_approval(second, alice))
    assert len(store.list_approvals(first.request_id)) == len(store.list_approvals(second.request_id)) == 1


def test_approval_of_an_unknown_request_is_not_found(store: Store, treasury: TestKey) -> None:
    request = make_transaction_request(treasury)  # never inserted

    with pytest.raises(NotFound, match=f"there is no request with id {request.request_id}"):
        store.insert_approval(make_approval(request, make_approver("alice")))


def test_naive_approval_time_is_refused(store: Store, treasury: TestKey) -> None:
    request = make_transaction_request(treasury)
    store.insert_request(request)
    approval = replace(
        make_approval(request, make_approver("alice")), created_at=BASE_TIME.replace(tzinfo=None)
    )

    with pytest.raises(InvalidInput, match="created_at: a time without a time zone"):
        store.insert_approval(approval)
    assert store.list_approvals(request.request_id) == []


def _race_inserts(stores: list[Store], verdicts: list[Approval]) -> list[str]:
    """Insert verdicts[i] through stores[i], all threads released together; say which were stored."""
    start = threading.Barrier(len(stores))

    def attempt(racer: int) -> str:
        start.wait(timeout=30)
        try:
            stores[racer].insert_approval(verdicts[racer])
        except AlreadyExists:
            return "refused"
        return "stored"

    with ThreadPoolExecutor(max_workers=len(stores)) as pool:
        return list(pool.map(attempt, range(len(stores))))


@pytest.mark.parametrize("shared", [True, False], ids=["one store object", "a store object each"])
def test_racing_approvals_count_each_approver_once(database: Database, shared: bool) -> None:
    setup = database.open()
    treasury = make_key("treasury")
    setup.insert_key(treasury.key)
    request = make_transaction_request(treasury)
    setup.insert_request(request)
    approvers = [make_approver(name) for name in ("alice", "bob", "carol")]
    racers = [setup] * RACERS if shared else [database.open() for _ in range(RACERS)]
    try:
        for approver in approvers:
            # Every racer holds a verdict of its own (different times and reasons), all for the same approver.
            verdicts = [
                make_approval(request, approver, created_at=later(racer), reason=f"racer {racer}")
                for racer in range(RACERS)
            ]
            outcomes = _race_inserts(racers, verdicts)
            assert outcomes.count("stored") == 1, outcomes
            stored = [a for a in setup.list_approvals(request.request_id) if a.approver == approver.name]
            assert stored == [verdicts[outcomes.index("stored")]]
            verify_approval(stored[0], approver.public_key)
        assert len(setup.list_approvals(request.request_id)) == len(approvers)
    finally:
        for racer in racers:
            racer.close()


def _policy(version: int, request_id: str | None = None) -> StoredPolicy:
    return StoredPolicy(
        version=version,
        document=f"version = {version}\n# ünïcode kept as written ✓\n",
        activated_at=later(version),
        request_id=request_id,
    )


def test_no_policy_before_the_first(store: Store) -> None:
    assert store.active_policy() is None


def test_policy_versions_activate_in_order(store: Store) -> None:
    bootstrap = _policy(1)
    store.activate_policy(bootstrap)
    assert store.active_policy() == bootstrap

    second = _policy(2, request_id="req_0000018f34069e7b0000000000000003")
    store.activate_policy(second)
    assert store.active_policy() == second

    # A version may be skipped; the newest one is active.
    fifth = _policy(5, request_id="req_0000018f34069e7b0000000000000004")
    store.activate_policy(fifth)
    assert store.active_policy() == fifth


def test_an_older_policy_version_is_aborted(store: Store) -> None:
    store.activate_policy(_policy(3))

    with pytest.raises(Aborted, match="policy version 2 is older than the active version 3"):
        store.activate_policy(_policy(2))
    assert store.active_policy() == _policy(3)


def test_an_existing_policy_version_already_exists(store: Store) -> None:
    store.activate_policy(_policy(1))
    store.activate_policy(_policy(2))

    for version in (1, 2):
        with pytest.raises(AlreadyExists, match=f"policy version {version} already exists"):
            store.activate_policy(replace(_policy(version), document="version = 9\n"))
    assert store.active_policy() == _policy(2)


def test_racing_activations_of_one_version_have_one_winner(database: Database) -> None:
    stores = [database.open() for _ in range(RACERS)]
    stores[0].activate_policy(_policy(1))
    start = threading.Barrier(RACERS)

    def attempt(racer: int) -> str:
        start.wait(timeout=30)
        try:
            stores[racer].activate_policy(replace(_policy(2), document=f"version = 2\n# racer {racer}\n"))
        except (AlreadyExists, Aborted):
            return "refused"
        return "activated"

    try:
        with ThreadPoolExecutor(max_workers=RACERS) as pool:
            outcomes = list(pool.map(attempt, range(RACERS)))
        assert outcomes.count("activated") == 1
        active = stores[0].active_policy()
        assert active is not None
        assert active.document == f"version = 2\n# racer {outcomes.index('activated')}\n"
    finally:
        for opened in stores:
            opened.close()


def test_naive_activation_time_is_refused(store: Store) -> None:
    policy = replace(_policy(1), activated_at=BASE_TIME.replace(tzinfo=None))

    with pytest.raises(InvalidInput, match="activated_at: a time without a time zone"):
        store.activate_policy(policy)
    assert store.active_policy() is None


def test_the_schema_itself_counts_an_approver_once(
    store: Store, database: Database, treasury: TestKey
) -> None:
    request = make_transaction_request(treasury)
    store.insert_request(request)
    alice = make_approver("alice")
    store.insert_approval(make_approval(request, alice))
    again = codec.approval_to_row(make_approval(request, alice, created_at=later(1)))

    # Written past the store's own check, so that only the constraint stands in the way.
    with pytest.raises(database.integrity_error, match=r"UNIQUE constraint failed|duplicate key value"):
        database.execute(
            f"INSERT INTO approvals ({', '.join(again)}) VALUES ({', '.join('?' for _ in again)})",
            list(again.values()),
        )
    assert len(store.list_approvals(request.request_id)) == 1

"""What the background workers and the policy ask the store: signing claims, due and expired requests, velocity
and the requests a new policy version supersedes; each at its edges."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from custody.domain.errors import InvalidInput
from custody.domain.requests import PayloadKind, RequestState, SignatureResult, SigningRequest
from custody.store.base import Store, VelocityUsage

from .conftest import Database
from .helpers import (
    BASE_TIME,
    TestKey,
    later,
    make_governance_request,
    make_key,
    make_message_request,
    make_transaction_request,
)

RACERS = 16
LEASE = timedelta(minutes=5)


@pytest.fixture
def ops(store: Store) -> TestKey:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    return test_key


def _approved(
    store: Store,
    test_key: TestKey,
    suffix: int,
    *,
    created_at: datetime = BASE_TIME,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
) -> SigningRequest:
    """An APPROVED message request; with ``not_before`` it was approved under a time-lock."""
    state = RequestState.APPROVED if not_before is None else RequestState.PENDING_APPROVAL
    request = replace(
        make_message_request(test_key, suffix=suffix, created_at=created_at, text=f"m{suffix}", state=state),
        expires_at=expires_at,
    )
    store.insert_request(request)
    if not_before is None:
        return request
    return store.transition_request(
        request.request_id,
        RequestState.PENDING_APPROVAL,
        RequestState.APPROVED,
        created_at,
        not_before=not_before,
    )


def _ids(requests: object) -> list[str]:
    return [request.request_id for request in requests]  # type: ignore[attr-defined]


# Signing claims.


def test_claim_is_taken_once_and_held(store: Store, ops: TestKey) -> None:
    request = _approved(store, ops, 1)

    assert store.claim_signing(request.request_id, "worker-a", later(1), later(1) + LEASE) is True
    # Held: nobody may take it, the holder included, until the lease lapses.
    assert store.claim_signing(request.request_id, "worker-b", later(2), later(2) + LEASE) is False
    assert store.claim_signing(request.request_id, "worker-a", later(2), later(2) + LEASE) is False
    # At the very moment the lease ends it still holds; only after it may another worker take over.
    assert store.claim_signing(request.request_id, "worker-b", later(1) + LEASE, later(20)) is False
    lapsed = later(1) + LEASE + timedelta(microseconds=1)
    assert store.claim_signing(request.request_id, "worker-b", lapsed, lapsed + LEASE) is True
    assert store.claim_signing(request.request_id, "worker-a", lapsed, lapsed + LEASE) is False


def test_only_an_approved_request_can_be_claimed(store: Store, ops: TestKey) -> None:
    pending = make_transaction_request(ops, suffix=1)
    denied = make_message_request(ops, suffix=2, state=RequestState.DENIED)
    for request in (pending, denied):
        store.insert_request(request)

    for request_id in (pending.request_id, denied.request_id, "req_unknown"):
        assert store.claim_signing(request_id, "worker-a", later(2), later(2) + LEASE) is False


def test_a_claim_must_last(store: Store, ops: TestKey) -> None:
    request = _approved(store, ops, 1)

    for lease_until in (later(1), later(0)):
        with pytest.raises(InvalidInput, match="lease_until: a signing claim must last beyond now"):
            store.claim_signing(request.request_id, "worker-a", later(1), lease_until)
    assert store.claim_signing(request.request_id, "worker-a", later(1), later(1) + LEASE) is True


def _race_claims(stores: list[Store], request_id: str, now: datetime) -> list[bool]:
    start = threading.Barrier(len(stores))

    def attempt(racer: int) -> bool:
        start.wait(timeout=30)
        return stores[racer].claim_signing(request_id, f"worker-{racer}", now, now + LEASE)

    with ThreadPoolExecutor(max_workers=len(stores)) as pool:
        return list(pool.map(attempt, range(len(stores))))


@pytest.mark.parametrize("shared", [True, False], ids=["one store object", "a store object each"])
def test_racing_claims_have_one_winner(database: Database, shared: bool) -> None:
    setup = database.open()
    test_key = make_key("ops")
    setup.insert_key(test_key.key)
    request_ids = [_approved(setup, test_key, suffix).request_id for suffix in range(20)]
    racers = [setup] * RACERS if shared else [database.open() for _ in range(RACERS)]
    try:
        for request_id in request_ids:
            assert _race_claims(racers, request_id, later(1)).count(True) == 1
            # A live claim cannot be re-taken by anyone; once it lapsed, again exactly one racer takes it.
            assert _race_claims(racers, request_id, later(2)).count(True) == 0
            assert _race_claims(racers, request_id, later(1) + LEASE + timedelta(seconds=1)).count(True) == 1
    finally:
        for racer in racers:
            racer.close()


# Due requests.


def test_due_requests_at_the_edge_of_the_time_lock(store: Store, ops: TestKey) -> None:
    unlocked = _approved(store, ops, 1, created_at=later(0))
    due_now = _approved(store, ops, 2, created_at=later(1), not_before=later(60))
    due_later = _approved(
        store, ops, 3, created_at=later(2), not_before=later(60) + timedelta(microseconds=1)
    )

    assert _ids(store.due_requests(later(60), 10)) == [unlocked.request_id, due_now.request_id]
    assert _ids(store.due_requests(later(59), 10)) == [unlocked.request_id]
    assert _ids(store.due_requests(later(61), 10)) == [
        unlocked.request_id,
        due_now.request_id,
        due_later.request_id,
    ]
    assert _ids(store.due_requests(later(61), 2)) == [unlocked.request_id, due_now.request_id]


def test_due_requests_leave_out_claimed_expired_unapproved_and_governance(store: Store, ops: TestKey) -> None:
    claimed = _approved(store, ops, 1, created_at=later(0))
    free = _approved(store, ops, 2, created_at=later(1))
    expired = _approved(store, ops, 3, created_at=later(2), expires_at=later(10))
    store.insert_request(make_transaction_request(ops, suffix=4))
    unfreeze = make_governance_request(PayloadKind.KEY_UNFREEZE, ops, suffix=5)
    store.insert_request(unfreeze)
    store.transition_request(
        unfreeze.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(3)
    )
    assert store.claim_signing(claimed.request_id, "worker-a", later(5), later(15))

    assert _ids(store.due_requests(later(10), 10)) == [free.request_id]
    assert _ids(store.due_requests(later(9), 10)) == [free.request_id, expired.request_id]
    # Once the claim lapses the request is due again: its worker died before signing.
    assert _ids(store.due_requests(later(16), 10)) == [claimed.request_id, free.request_id]


# Expired requests.


def test_expired_requests_at_the_edge_of_the_lifetime(store: Store, ops: TestKey) -> None:
    pending = replace(make_transaction_request(ops, suffix=1), expires_at=later(30))
    store.insert_request(pending)
    approved = _approved(store, ops, 2, expires_at=later(30) + timedelta(microseconds=1))
    _approved(store, ops, 3)  # no lifetime: never expires

    assert store.expired_requests(later(30) - timedelta(microseconds=1), 10) == []
    assert _ids(store.expired_requests(later(30), 10)) == [pending.request_id]
    assert _ids(store.expired_requests(later(31), 10)) == [pending.request_id, approved.request_id]
    assert _ids(store.expired_requests(later(31), 1)) == [pending.request_id]


def test_expired_requests_leave_out_final_and_governance_approved(store: Store, ops: TestKey) -> None:
    signed_away = replace(make_transaction_request(ops, suffix=1), expires_at=later(30))
    store.insert_request(signed_away)
    store.transition_request(
        signed_away.request_id, RequestState.PENDING_APPROVAL, RequestState.REJECTED, later(1)
    )
    policy_change = make_governance_request(PayloadKind.POLICY_CHANGE, suffix=2, expires_at=later(30))
    store.insert_request(policy_change)
    store.transition_request(
        policy_change.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
    )
    waiting_unfreeze = make_governance_request(PayloadKind.KEY_UNFREEZE, ops, suffix=3, expires_at=later(30))
    store.insert_request(waiting_unfreeze)

    # A governance request that is APPROVED took effect; only the one still waiting for its quorum expires.
    assert _ids(store.expired_requests(later(40), 10)) == [waiting_unfreeze.request_id]


# Velocity.


def test_velocity_sums_values_beyond_64_bits(store: Store, ops: TestKey) -> None:
    values = [2**64 + 5, 2**200, 3 * 10**18]
    for suffix, value in enumerate(values):
        store.insert_request(
            replace(make_transaction_request(ops, suffix=suffix, state=RequestState.APPROVED), value=value)
        )

    assert store.velocity_usage("ops", BASE_TIME) == VelocityUsage(count=3, total_value=sum(values))
    assert store.velocity_usage("other", BASE_TIME) == VelocityUsage(count=0, total_value=0)


def test_velocity_window_includes_its_start(store: Store, ops: TestKey) -> None:
    for minute in (0, 10, 20):
        request = make_transaction_request(
            ops, suffix=minute, created_at=later(minute), state=RequestState.APPROVED
        )
        store.insert_request(replace(request, value=10**18 + minute))

    assert store.velocity_usage("ops", later(10)) == VelocityUsage(count=2, total_value=2 * 10**18 + 30)
    assert store.velocity_usage("ops", later(10) + timedelta(microseconds=1)) == VelocityUsage(
        count=1, total_value=10**18 + 20
    )
    assert store.velocity_usage("ops", later(20) + timedelta(microseconds=1)) == VelocityUsage(0, 0)


def test_velocity_counts_waiting_approved_and_signed_only(store: Store, ops: TestKey) -> None:
    value = 7 * 10**17
    states = {
        1: RequestState.APPROVED,  # counts
        2: RequestState.APPROVED,  # will be SIGNED: counts
        3: RequestState.PENDING_APPROVAL,  # waiting for approvals: counts, or many could each pass alone
        4: RequestState.DENIED,  # does not count
        5: RequestState.APPROVED,  # will be FAILED: does not count
    }
    for suffix, state in states.items():
        store.insert_request(replace(make_transaction_request(ops, suffix=suffix, state=state), value=value))
    store.transition_request(
        make_transaction_request(ops, suffix=2).request_id,
        RequestState.APPROVED,
        RequestState.SIGNED,
        later(1),
        # Opaque bytes, not a signature: velocity reads only the state and the value.
        result=SignatureResult(signature=bytes(65)),
    )
    store.transition_request(
        make_transaction_request(ops, suffix=5).request_id,
        RequestState.APPROVED,
        RequestState.FAILED,
        later(1),
    )
    # An approved unfreeze of the same key moves no value and is not a use of the key.
    unfreeze = make_governance_request(PayloadKind.KEY_UNFREEZE, ops, suffix=6)
    store.insert_request(unfreeze)
    store.transition_request(
        unfreeze.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
    )

    assert store.velocity_usage("ops", BASE_TIME) == VelocityUsage(count=3, total_value=3 * value)


# Requests superseded by a new policy version.


def test_pending_requests_before_version(store: Store, ops: TestKey) -> None:
    def under(
        version: int, suffix: int, state: RequestState, kind: PayloadKind = PayloadKind.MESSAGE
    ) -> SigningRequest:
        if kind is PayloadKind.MESSAGE:
            request = make_message_request(ops, suffix=suffix, state=state, created_at=later(suffix))
        else:
            request = make_governance_request(
                kind,
                None if kind is PayloadKind.POLICY_CHANGE else ops,
                suffix=suffix,
                created_at=later(suffix),
            )
        request = replace(request, decision=replace(request.decision, policy_version=version))
        store.insert_request(request)
        return request

    pending_v1 = under(1, 1, RequestState.PENDING_APPROVAL)
    approved_v2 = under(2, 2, RequestState.APPROVED)
    under(2, 3, RequestState.DENIED)
    under(3, 4, RequestState.PENDING_APPROVAL)  # current version: not superseded
    under(2, 5, RequestState.APPROVED)  # signed below: done
    store.transition_request(
        make_message_request(ops, suffix=5, created_at=later(5)).request_id,
        RequestState.APPROVED,
        RequestState.FAILED,
        later(6),
    )
    policy_change_v2 = under(2, 6, RequestState.PENDING_APPROVAL, PayloadKind.POLICY_CHANGE)
    unfreeze_v2 = under(2, 7, RequestState.PENDING_APPROVAL, PayloadKind.KEY_UNFREEZE)
    store.transition_request(
        unfreeze_v2.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(8)
    )

    # The approved unfreeze took effect and stays; the still-waiting policy change is superseded like any other.
    assert _ids(store.pending_requests_before_version(3)) == [
        pending_v1.request_id,
        approved_v2.request_id,
        policy_change_v2.request_id,
    ]
    assert _ids(store.pending_requests_before_version(2)) == [pending_v1.request_id]
    assert store.pending_requests_before_version(1) == []

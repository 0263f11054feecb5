"""Of many callers racing to move one request, exactly one wins and its signature or approval is the one stored."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

from custody.domain.errors import Aborted
from custody.domain.requests import RequestState, SignatureResult
from custody.store.base import Store

from .conftest import Database
from .helpers import (
    later,
    make_approver,
    make_key,
    make_message_request,
    make_transaction_request,
    verify_approval,
)
from .race_worker import approver_name, race_for_requests, race_to_approve, racer_signature

RACERS = 16
REQUESTS = 50


def _approved_requests(store: Store, count: int) -> list[str]:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request_ids = []
    for index in range(count):
        request = make_message_request(test_key, suffix=index, created_at=later(index), text=f"race {index}")
        store.insert_request(request)
        request_ids.append(request.request_id)
    return request_ids


def _race(stores: list[Store], request_ids: list[str]) -> None:
    """Race len(stores) threads on each request, all released together, and check the outcome per request."""
    start = threading.Barrier(len(stores))

    def attempt(racer: int, request_id: str) -> str:
        start.wait(timeout=30)
        try:
            stores[racer].transition_request(
                request_id,
                RequestState.APPROVED,
                RequestState.SIGNED,
                later(1),
                result=SignatureResult(signature=racer_signature(racer)),
            )
        except Aborted as lost:
            assert "is no longer in state APPROVED; it is now SIGNED" in str(lost)
            return "aborted"
        return "won"

    with ThreadPoolExecutor(max_workers=len(stores)) as pool:
        for request_id in request_ids:
            outcomes = list(pool.map(attempt, range(len(stores)), [request_id] * len(stores)))
            assert outcomes.count("won") == 1, outcomes
            assert outcomes.count("aborted") == len(stores) - 1
            winner = outcomes.index("won")
            stored = stores[0].get_request(request_id)
            assert stored is not None
            assert stored.state is RequestState.SIGNED
            assert stored.result == SignatureResult(signature=racer_signature(winner))


def test_threads_with_their_own_store_objects(database: Database) -> None:
    setup = database.open()
    request_ids = _approved_requests(setup, REQUESTS)
    stores = [database.open() for _ in range(RACERS)]
    try:
        _race(stores, request_ids)
    finally:
        for store in [setup, *stores]:
            store.close()


def test_threads_sharing_one_store_object(store: Store) -> None:
    request_ids = _approved_requests(store, REQUESTS)
    _race([store] * RACERS, request_ids)


def test_two_processes_on_one_file(database: Database) -> None:
    setup = database.open()
    request_ids = _approved_requests(setup, REQUESTS)
    setup.close()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results = context.Queue()
    # The two processes walk the requests in opposite orders as well as the same one, so they meet both
    # head-on and in lockstep.
    orders = [request_ids + request_ids[::-1], request_ids[::-1] + request_ids]
    processes = [
        context.Process(
            target=race_for_requests, args=(database.url, racer + 1, orders[racer], start, results)
        )
        for racer in range(2)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    won_by = {racer: set(won) for racer, won, _lost in reports}
    assert won_by[1].isdisjoint(won_by[2])
    assert won_by[1] | won_by[2] == set(request_ids)
    # Each process tried each request twice, so every attempt but one per request was aborted.
    assert sum(lost for _racer, _won, lost in reports) == 2 * 2 * REQUESTS - REQUESTS
    check = database.open()
    try:
        for racer, won in won_by.items():
            for request_id in won:
                stored = check.get_request(request_id)
                assert stored is not None and stored.state is RequestState.SIGNED
                assert stored.result == SignatureResult(signature=racer_signature(racer))
    finally:
        check.close()


def test_two_processes_approving_one_request_in_a_transaction(database: Database) -> None:
    setup = database.open()
    test_key = make_key("treasury")
    setup.insert_key(test_key.key)
    request_ids = []
    for index in range(REQUESTS):
        request = make_transaction_request(test_key, suffix=index, created_at=later(index))
        setup.insert_request(request)
        request_ids.append(request.request_id)
    setup.close()
    approvers = {racer: make_approver(approver_name(racer)) for racer in (1, 2)}
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results = context.Queue()
    orders = {1: request_ids + request_ids[::-1], 2: request_ids[::-1] + request_ids}
    processes = [
        context.Process(
            target=race_to_approve,
            args=(
                database.url,
                racer,
                approvers[racer].private_key.private_bytes_raw(),
                orders[racer],
                start,
                results,
            ),
        )
        for racer in (1, 2)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    won_by = {racer: set(won) for racer, won, _lost in reports}
    assert won_by[1].isdisjoint(won_by[2])
    assert won_by[1] | won_by[2] == set(request_ids)
    assert sum(lost for _racer, _won, lost in reports) == 2 * 2 * REQUESTS - REQUESTS
    check = database.open()
    try:
        for racer, won in won_by.items():
            for request_id in won:
                stored = check.get_request(request_id)
                assert stored is not None and stored.state is RequestState.APPROVED
                # The loser's approval was rolled back with its aborted transition: only the winner's counts.
                [approval] = check.list_approvals(request_id)
                assert approval.approver == approver_name(racer)
                verify_approval(approval, approvers[racer].public_key)
    finally:
        check.close()

"""Writers racing to append audit events: every event gets its own sequence number, 1..N without gaps, and the
chain has no forks, whether the writers are threads sharing a store, threads with stores of their own, or
processes sharing the file."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Database
from .helpers import check_chain, make_draft
from .race_worker import append_audit_events

THREADS = 16
EVENTS_PER_WRITER = 50


@pytest.mark.parametrize("shared", [True, False], ids=["one store", "a store per thread"])
def test_sixteen_threads_appending_at_once(database: Database, shared: bool) -> None:
    setup = database.open()
    stores = [setup] * THREADS if shared else [database.open() for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def append(writer: int) -> list[int]:
        start.wait(timeout=30)
        return [
            stores[writer].append_audit(make_draft(index, actor=f"writer-{writer}")).sequence
            for index in range(EVENTS_PER_WRITER)
        ]

    try:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            given = list(pool.map(append, range(THREADS)))
        total = THREADS * EVENTS_PER_WRITER
        assert sorted(sequence for sequences in given for sequence in sequences) == list(range(1, total + 1))
        events = list(setup.iter_audit_events())
        check_chain(events)
        for writer, sequences in enumerate(given):
            # Each writer's events are stored in the order it appended them, under the numbers it was told.
            mine = [event for event in events if event.actor == f"writer-{writer}"]
            assert [event.sequence for event in mine] == sequences
            assert [event.details["index"] for event in mine] == list(range(EVENTS_PER_WRITER))
    finally:
        for store in set(stores):
            store.close()


def test_two_processes_appending_to_one_file(database: Database) -> None:
    database.open().close()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results = context.Queue()
    processes = [
        context.Process(
            target=append_audit_events, args=(database.url, racer, EVENTS_PER_WRITER * 4, start, results)
        )
        for racer in (1, 2)
    ]
    for process in processes:
        process.start()
    reports = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    total = 2 * EVENTS_PER_WRITER * 4
    assert sorted(reports[1] + reports[2]) == list(range(1, total + 1))
    store = database.open()
    try:
        events = list(store.iter_audit_events())
        check_chain(events)
        for racer, sequences in reports.items():
            assert [event.sequence for event in events if event.actor == f"racer-{racer}"] == sequences
        # The two processes really did interleave rather than one running after the other.
        actors = [event.actor for event in events]
        switches = sum(1 for before, after in itertools.pairwise(actors) if before != after)
        assert switches > 1
    finally:
        store.close()

"""Failing closed: when the audit event recording a change cannot be written, the change is not written either.

Each test runs the daemon's shape of transaction -- sign a request and record that in the audit log, in one
transaction -- against a database that cannot take the write, and shows the caller gets StoreUnavailable while
the request keeps its old state and the log gains nothing. The failures are real: a file made immutable, a
file system that is full, and (for machines where neither can be arranged) SQLite's own disk-full error raised
by custody.store.faults inside real connections.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from eth_account import Account

from custody.audit.events import AuditDraft, AuditEvent
from custody.domain.errors import StoreUnavailable
from custody.domain.requests import RequestState, SigningRequest
from custody.store.sqlite import SqliteStore
from custody.testing.store_faults import failing_audit_writes

from .helpers import TestKey, check_chain, later, make_key, make_message_request, sign_message


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    """This file tests what only SQLite has, so its store is always a SQLite file."""
    return sqlite_store


def _prepare(store: SqliteStore) -> tuple[TestKey, SigningRequest, AuditEvent]:
    """A key, an APPROVED request and the audit event of its submission."""
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = make_message_request(test_key, state=RequestState.APPROVED)
    with store.transaction() as tx:
        tx.insert_request(request)
        submitted = tx.append_audit(
            AuditDraft(
                time=later(0),
                actor="backend",
                kind="request.submitted",
                request_id=request.request_id,
                details={"key": "ops"},
            )
        )
    return test_key, request, submitted


def _sign_and_record(store: SqliteStore, test_key: TestKey, request: SigningRequest) -> None:
    with store.transaction() as tx:
        tx.transition_request(
            request.request_id,
            RequestState.APPROVED,
            RequestState.SIGNED,
            later(1),
            result=sign_message(test_key),
        )
        tx.append_audit(
            AuditDraft(
                time=later(1),
                actor="custody",
                kind="request.signed",
                request_id=request.request_id,
                details={"digest": request.digest.hex()},
            )
        )


def _assert_nothing_changed(store: SqliteStore, request: SigningRequest, head: AuditEvent) -> None:
    stored = store.get_request(request.request_id)
    assert stored == request
    assert stored is not None and stored.state is RequestState.APPROVED and stored.result is None
    assert store.audit_head() == head
    assert store.last_audit_event_of_kind("request.signed") is None


def _assert_signing_works_again(store: SqliteStore, test_key: TestKey, request: SigningRequest) -> None:
    """Once the fault is gone the same transaction commits, and the chain continues without a gap."""
    _sign_and_record(store, test_key, request)
    stored = store.get_request(request.request_id)
    assert stored is not None and stored.state is RequestState.SIGNED and stored.result is not None
    assert Account._recover_hash(stored.digest, signature=stored.result.signature) == test_key.key.address
    events = list(store.iter_audit_events())
    assert [event.kind for event in events] == ["request.submitted", "request.signed"]
    check_chain(events)


def test_an_injected_disk_full_error_on_the_audit_write_rolls_back_the_signature(store: SqliteStore) -> None:
    test_key, request, submitted = _prepare(store)
    with failing_audit_writes(store) as fault:
        with pytest.raises(
            StoreUnavailable,
            match=r"^could not write the audit event: the disk holding the database is full$",
        ):
            _sign_and_record(store, test_key, request)
        assert fault.hits == 1
        # A store-level append, in a transaction of its own, fails the same way.
        with pytest.raises(StoreUnavailable, match="the disk holding the database is full"):
            store.append_audit(AuditDraft(time=later(2), actor="custody", kind="daemon.stopped"))
        assert fault.hits == 2
        _assert_nothing_changed(store, request, submitted)
    _assert_signing_works_again(store, test_key, request)


def test_an_injected_fault_can_target_one_kind_of_event(store: SqliteStore) -> None:
    test_key, request, submitted = _prepare(store)
    with failing_audit_writes(store, kinds={"request.signed"}) as fault:
        # Other kinds are written as usual ...
        other = store.append_audit(AuditDraft(time=later(1), actor="alice", kind="auth.failed"))
        # ... while the signing transaction fails and leaves nothing.
        with pytest.raises(StoreUnavailable, match="the disk holding the database is full"):
            _sign_and_record(store, test_key, request)
        assert fault.hits == 1
        _assert_nothing_changed(store, request, other)
    _sign_and_record(store, test_key, request)
    events = list(store.iter_audit_events())
    assert [event.kind for event in events] == ["request.submitted", "auth.failed", "request.signed"]
    assert events[0] == submitted
    check_chain(events)


def test_an_injected_fault_covers_work_started_after_it(store: SqliteStore) -> None:
    """Idle pooled connections are replaced when the fault begins; a transaction already running finishes on
    its own connection, which is then closed rather than pooled, so everything after it meets the fault."""
    test_key, request, submitted = _prepare(store)
    with ExitStack() as fault_scope:
        with store.transaction() as tx:
            fault = fault_scope.enter_context(failing_audit_writes(store))
            in_flight = tx.append_audit(AuditDraft(time=later(1), actor="alice", kind="auth.failed"))
        assert fault.hits == 0
        for _attempt in range(3):
            with pytest.raises(StoreUnavailable, match="the disk holding the database is full"):
                _sign_and_record(store, test_key, request)
        assert fault.hits == 3
        _assert_nothing_changed(store, request, in_flight)
    _sign_and_record(store, test_key, request)
    events = list(store.iter_audit_events())
    assert events[:2] == [submitted, in_flight]
    check_chain(events)


@pytest.fixture
def immutable_file() -> Iterator[list[Path]]:
    """Paths made immutable with chattr +i, which stops writes even for root; undone after the test."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed, and running as root makes chmod useless for a read-only file")
    marked: list[Path] = []
    yield marked
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_database_fails_the_audit_write_and_changes_nothing(
    db_path: Path, immutable_file: list[Path]
) -> None:
    store = SqliteStore(db_path)
    test_key, request, submitted = _prepare(store)
    store.close()
    made = subprocess.run(["chattr", "+i", str(db_path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"this file system does not support immutable files: {made.stderr.decode().strip()}")
    immutable_file.append(db_path)
    with pytest.raises(PermissionError):
        db_path.open("r+b").close()  # proves the file really is unwritable, root or not

    read_only = SqliteStore(db_path)
    try:
        with pytest.raises(StoreUnavailable, match="the database is read-only"):
            _sign_and_record(read_only, test_key, request)
        # The audit write alone, first thing in its transaction, is refused the same way.
        with pytest.raises(StoreUnavailable, match="the database is read-only"):
            read_only.append_audit(AuditDraft(time=later(2), actor="custody", kind="daemon.stopped"))
        _assert_nothing_changed(read_only, request, submitted)
    finally:
        read_only.close()

    subprocess.run(["chattr", "-i", str(db_path)], check=True)
    immutable_file.remove(db_path)
    writable = SqliteStore(db_path)
    try:
        _assert_nothing_changed(writable, request, submitted)
        _assert_signing_works_again(writable, test_key, request)
    finally:
        writable.close()


@pytest.fixture
def small_file_system(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root and mount(8)")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this sandbox does not allow mounting a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def _fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            while True:
                try:
                    out.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    # Even a one-byte file no longer fits.
    with pytest.raises(OSError) as refused:
        (directory / "probe").write_bytes(b"x")
    assert refused.value.errno == errno.ENOSPC
    (directory / "probe").unlink(missing_ok=True)
    return filler


def test_a_full_file_system_fails_the_commit_and_changes_nothing(small_file_system: Path) -> None:
    store = SqliteStore(small_file_system / "custody.db")
    try:
        test_key, request, submitted = _prepare(store)
        filler = _fill(small_file_system)

        # The signature and its audit event reach the disk together at COMMIT, where the disk refuses them.
        with pytest.raises(
            StoreUnavailable,
            match=r"^could not write to the database: the disk holding the database is full$",
        ):
            _sign_and_record(store, test_key, request)
        with pytest.raises(StoreUnavailable, match="the disk holding the database is full"):
            store.append_audit(AuditDraft(time=later(2), actor="custody", kind="daemon.stopped"))
        _assert_nothing_changed(store, request, submitted)

        # Freed space brings the store back, and nothing half-written is left to trip over.
        filler.unlink()
        _assert_nothing_changed(store, request, submitted)
        _assert_signing_works_again(store, test_key, request)
    finally:
        store.close()
    reopened = SqliteStore(small_file_system / "custody.db")
    try:
        check_chain(list(reopened.iter_audit_events()))
        stored = reopened.get_request(request.request_id)
        assert stored is not None and stored.state is RequestState.SIGNED
    finally:
        reopened.close()


def test_statements_after_sqlite_rolled_the_transaction_back_are_refused(store: SqliteStore) -> None:
    """SQLite rolls a transaction back by itself after some errors (a full disk, an I/O error). A caller that
    caught the error and went on must not get its later statements committed one by one in autocommit mode."""
    test_key = make_key("rolled-back")
    with (
        pytest.raises(StoreUnavailable, match="SQLite rolled back this transaction"),
        store.transaction() as tx,
    ):
        tx.insert_key(test_key.key)
        # What SQLite does on its own after such an error; the test cannot fill the disk on cue.
        tx._connection.execute("ROLLBACK")  # type: ignore[attr-defined]
        tx.insert_key(make_key("after-the-rollback").key)
    assert store.get_key("rolled-back") is None
    assert store.get_key("after-the-rollback") is None

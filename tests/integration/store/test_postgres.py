"""What only the PostgreSQL store has: replicas sharing one database, migrations raced by replicas starting
together, connections that the server ends under the store, an unreachable server, and PostgreSQL's own
errors. Everything runs against the real server, in a fresh schema per test (see postgres_databases.py)."""

from __future__ import annotations

import functools
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from custody.audit.events import AuditDraft
from custody.domain.errors import (
    Aborted,
    AlreadyExists,
    ConfigurationError,
    InternalError,
    StoreUnavailable,
)
from custody.domain.keys import KeyState
from custody.domain.requests import RequestState, SignatureResult
from custody.store import open_store
from custody.store.base import Store
from custody.store.migrate import latest_version
from custody.store.postgres import WRITE_LOCK_KEY, PostgresStore
from custody.store.sqlite import SqliteStore

from .conftest import BACKENDS, Database
from .helpers import (
    Approver,
    check_chain,
    later,
    make_approval,
    make_approver,
    make_key,
    make_message_request,
    make_transaction_request,
    sign_message,
)
from .postgres_databases import postgres_schema

pytestmark = pytest.mark.skipif(
    "postgresql" not in BACKENDS, reason="CUSTODY_TEST_BACKENDS leaves PostgreSQL out"
)


@pytest.fixture
def schema_url(postgres_session_database: str) -> Iterator[str]:
    """A fresh, empty schema that no store has opened yet."""
    with postgres_schema(postgres_session_database) as url:
        yield url


@pytest.fixture
def database(schema_url: str) -> Database:
    return Database("postgresql", schema_url)


# Replicas.

REPLICAS = 3
ROUNDS = 30

_Outcome = TypeVar("_Outcome")


def _all_at_once(pool: ThreadPoolExecutor, attempt: Callable[[int], _Outcome]) -> list[_Outcome]:
    """Run ``attempt(replica number)`` for every replica in its own thread, all released together."""
    start = threading.Barrier(REPLICAS)

    def run(number: int) -> _Outcome:
        start.wait(timeout=30)
        return attempt(number)

    return list(pool.map(run, range(REPLICAS)))


def _approve_as(replicas: list[Store], approvers: list[Approver], request_id: str, number: int) -> str:
    """What an approval does, as one transaction on replica ``number`` by approver ``number``: record the
    verdict and its audit event, and move the request on once two verdicts are in. Says whether this call
    completed the quorum."""
    approver = approvers[number]
    with replicas[number].transaction() as tx:
        request = tx.get_request(request_id)
        assert request is not None
        tx.insert_approval(make_approval(request, approver, created_at=later(1)))
        tx.append_audit(
            AuditDraft(time=later(1), actor=approver.name, kind="approval.recorded", request_id=request_id)
        )
        if len(tx.list_approvals(request_id)) < 2:
            return "counted"
        try:
            tx.transition_request(request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1))
        except Aborted:
            return "counted"
        tx.append_audit(
            AuditDraft(time=later(1), actor="custody", kind="request.approved", request_id=request_id)
        )
        return "approved"


def _sign_as(replicas: list[Store], request_id: str, result: SignatureResult, number: int) -> bool:
    """What the signing worker does on replica ``number``: claim the request and, holding the claim, record
    its signature and the signing audit event in one transaction."""
    replica = replicas[number]
    if not replica.claim_signing(request_id, f"replica-{number}", later(1), later(2)):
        return False
    with replica.transaction() as tx:
        tx.transition_request(request_id, RequestState.APPROVED, RequestState.SIGNED, later(1), result=result)
        tx.append_audit(
            AuditDraft(time=later(1), actor=f"replica-{number}", kind="request.signed", request_id=request_id)
        )
    return True


def test_replicas_approving_and_signing_at_once_sign_each_request_once(database: Database) -> None:
    replicas = [database.open() for _ in range(REPLICAS)]
    ops = make_key("ops")
    replicas[0].insert_key(ops.key)
    approvers = [make_approver(name) for name in ("alice", "bob", "carol")]
    requests = []
    for index in range(ROUNDS):
        request = make_message_request(
            ops,
            suffix=index,
            text=f"round {index}",
            state=RequestState.PENDING_APPROVAL,
            created_at=later(index),
        )
        replicas[0].insert_request(request)
        requests.append(request)
    try:
        with ThreadPoolExecutor(max_workers=REPLICAS) as pool:
            for request in requests:
                result = sign_message(ops, request.summary["text"])
                approve = functools.partial(_approve_as, replicas, approvers, request.request_id)
                assert _all_at_once(pool, approve).count("approved") == 1
                sign = functools.partial(_sign_as, replicas, request.request_id, result)
                assert _all_at_once(pool, sign).count(True) == 1
                stored = replicas[1].get_request(request.request_id)
                assert stored is not None and stored.state is RequestState.SIGNED and stored.result == result
                assert len(replicas[2].list_approvals(request.request_id)) == REPLICAS

        events = list(replicas[0].iter_audit_events())
        check_chain(events)
        for request in requests:
            kinds = [event.kind for event in events if event.request_id == request.request_id]
            assert kinds.count("approval.recorded") == REPLICAS
            assert kinds.count("request.approved") == 1
            assert kinds.count("request.signed") == 1
    finally:
        for replica in replicas:
            replica.close()


def test_three_stores_migrate_a_fresh_database_once(schema_url: str) -> None:
    start = threading.Barrier(3)

    def open_at_once(_: int) -> PostgresStore:
        start.wait(timeout=30)
        return PostgresStore.from_url(schema_url)

    with ThreadPoolExecutor(max_workers=3) as pool:
        stores = list(pool.map(open_at_once, range(3)))
    try:
        assert [store.schema_version() for store in stores] == [latest_version()] * 3
        rows = Database("postgresql", schema_url).rows("SELECT version FROM schema_version ORDER BY version")
        assert [row["version"] for row in rows] == list(range(1, latest_version() + 1))
        # And the schema works: what one store writes, another reads.
        ops = make_key("ops")
        stores[0].insert_key(ops.key)
        assert stores[2].get_key("ops") == ops.key
    finally:
        for store in stores:
            store.close()


def test_a_newer_schema_is_refused(database: Database) -> None:
    database.open().close()
    database.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
        (latest_version() + 1, "2030-01-01T00:00:00.000000Z"),
    )

    with pytest.raises(
        ConfigurationError, match=f"schema is version {latest_version() + 1} but this custody"
    ):
        database.open()


def test_text_compares_byte_by_byte_whatever_the_database_collation(database: Database) -> None:
    database.open().close()
    columns = database.rows(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND data_type = 'text'"
    )
    assert len(columns) > 40
    assert {row["collation_name"] for row in columns} == {"C"}


def test_blobs_are_bytea(database: Database) -> None:
    database.open().close()
    types = database.rows(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'audit_events' AND column_name IN ('previous_hash', 'hash')"
    )
    assert [row["data_type"] for row in types] == ["bytea", "bytea"]


# Connections that the server ends.


def _named(url: str) -> tuple[str, str]:
    """The URL with an application name of its own, so that the test can find the store's sessions."""
    name = f"custody-test-{secrets.token_hex(4)}"
    return f"{url}&application_name={name}", name


def _terminate_sessions(database: Database, application_name: str) -> int:
    """End the store's sessions from another connection, waiting until they are gone."""
    rows = database.rows(
        "SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity WHERE application_name = ?",
        (application_name,),
    )
    return sum(1 for row in rows if row["ended"])


def test_connections_ended_by_the_server_are_replaced_on_the_next_call(database: Database) -> None:
    url, name = _named(database.url)
    store = PostgresStore.from_url(url)
    try:
        ops = make_key("ops")
        store.insert_key(ops.key)
        # Several pooled connections, all of which the server then ends, as a restart would.
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(lambda _: store.get_key("ops"), range(8))) == [ops.key] * 8
        assert _terminate_sessions(database, name) >= 1

        assert store.get_key("ops") == ops.key
        assert _terminate_sessions(database, name) >= 1
        assert store.schema_version() == latest_version()
        assert _terminate_sessions(database, name) >= 1
        frozen = store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(1))
        assert store.get_key("ops") == frozen
        assert _terminate_sessions(database, name) >= 1
        with store.transaction() as tx:
            tx.append_audit(AuditDraft(time=later(2), actor="alice", kind="key.frozen"))
        assert [event.kind for event in store.iter_audit_events()] == ["key.frozen"]
    finally:
        store.close()


def test_a_connection_ended_inside_a_transaction_keeps_nothing_and_the_store_recovers(
    database: Database,
) -> None:
    url, name = _named(database.url)
    store = PostgresStore.from_url(url)
    try:
        ops = make_key("ops")
        with pytest.raises(
            StoreUnavailable, match=r"^could not store the key: the connection to the PostgreSQL"
        ):
            with store.transaction() as tx:
                tx.append_audit(AuditDraft(time=later(1), actor="admin", kind="key.created"))
                assert _terminate_sessions(database, name) == 1
                tx.insert_key(ops.key)

        assert store.list_keys() == []
        assert store.audit_head() is None
        store.insert_key(ops.key)
        assert store.list_keys() == [ops.key]
    finally:
        store.close()


# Errors.


def test_an_unreachable_server_is_unavailable_without_the_password() -> None:
    url = "postgresql://custody:s3cret-pa55word@127.0.0.1:1/custody"
    with pytest.raises(StoreUnavailable) as raised:
        open_store(url, Path("/"))
    message = str(raised.value)
    assert message == (
        "could not read the schema version: the PostgreSQL database custody at 127.0.0.1:1 cannot be reached"
    )
    assert "s3cret" not in message and "custody:" not in message


def test_a_missing_database_is_named(postgres_session_database: str) -> None:
    url = postgres_session_database.rsplit("/", 1)[0] + "/custody_test_missing"
    with pytest.raises(
        StoreUnavailable, match=r"the PostgreSQL database custody_test_missing at .* does not exist"
    ):
        open_store(url, Path("/"))


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("postgresql://custody:s3cret@127.0.0.1:5432", "names no database"),
        ("postgresql://custody:s3cret@127.0.0.1:5432/custody?nonsense=1", "is malformed"),
        ("postgresql://custody:s3cret@[::1/custody", "is malformed"),
    ],
)
def test_bad_urls_are_refused_without_the_password(url: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint) as raised:
        PostgresStore.from_url(url)
    assert "s3cret" not in str(raised.value)


def test_open_store_chooses_the_backend_by_url(tmp_path: Path, database: Database) -> None:
    sqlite = open_store("sqlite:///custody.db", tmp_path)
    # The test server trusts every local connection, so the password is accepted and ignored.
    postgres = open_store(
        database.url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@"), tmp_path
    )
    also_postgres = open_store(database.url.replace("postgresql://", "postgres://", 1), tmp_path)
    try:
        assert isinstance(sqlite, SqliteStore) and sqlite.path == tmp_path / "custody.db"
        assert isinstance(postgres, PostgresStore) and isinstance(also_postgres, PostgresStore)
        # The repr names the host and the database only.
        assert "s3cret" not in repr(postgres)
        assert repr(postgres).startswith("PostgresStore(the PostgreSQL database ")
    finally:
        for store in (sqlite, postgres, also_postgres):
            store.close()
    with pytest.raises(ConfigurationError, match="the database URL has the scheme 'mysql'") as raised:
        open_store("mysql://custody:s3cret@localhost/custody", tmp_path)
    assert "s3cret" not in str(raised.value)


def test_a_writer_held_up_past_the_lock_timeout_is_unavailable(database: Database) -> None:
    store = PostgresStore(database.url, lock_timeout_seconds=0.2)
    blocker = psycopg.connect(database.url, autocommit=True)
    try:
        blocker.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
        with pytest.raises(
            StoreUnavailable, match="could not store the key: another writer held the PostgreSQL"
        ):
            store.insert_key(make_key("ops").key)
        # Reads take no lock.
        assert store.list_keys() == []
        blocker.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK_KEY,))
        store.insert_key(make_key("ops").key)
        assert [key.label for key in store.list_keys()] == ["ops"]
    finally:
        blocker.close()
        store.close()


@pytest.fixture
def failing_audit_inserts(database: Database) -> Iterator[None]:
    """A trigger that makes PostgreSQL itself refuse every audit insert as on a full disk: a fault injected
    into the real database, the way test_sqlite_fail_closed does it for SQLite."""
    database.open().close()
    database.execute(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS"
        " 'BEGIN RAISE EXCEPTION ''could not extend file'' USING ERRCODE = ''disk_full''; END'"
    )
    database.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
    )
    yield


def test_a_failed_audit_write_fails_the_whole_transaction(
    database: Database, failing_audit_inserts: None
) -> None:
    store = database.open()
    try:
        ops = make_key("ops")
        store.insert_key(ops.key)
        request = make_message_request(ops)
        store.insert_request(request)
        with pytest.raises(StoreUnavailable, match=r"^could not write the audit event: the disk holding the"):
            with store.transaction() as tx:
                tx.transition_request(
                    request.request_id,
                    RequestState.APPROVED,
                    RequestState.SIGNED,
                    later(1),
                    result=sign_message(ops),
                )
                tx.append_audit(AuditDraft(time=later(1), actor="custody", kind="request.signed"))
        assert store.get_request(request.request_id) == request
        assert store.audit_head() is None
    finally:
        store.close()


def test_carrying_on_after_a_failed_statement_commits_nothing(
    database: Database, failing_audit_inserts: None
) -> None:
    """PostgreSQL would answer COMMIT with a silent ROLLBACK here; the store says so instead. The audit insert
    is held back and sent with the next statement that needs an answer, where its error is raised, naming it."""
    store = database.open()
    try:
        with pytest.raises(
            InternalError, match="a statement in the transaction failed, so nothing in it was kept"
        ):
            with store.transaction() as tx:
                tx.insert_key(make_key("ops").key)
                tx.append_audit(AuditDraft(time=later(1), actor="admin", kind="key.created"))
                with pytest.raises(StoreUnavailable, match=r"^could not write the audit event: the disk"):
                    tx.list_keys()
        assert store.list_keys() == []
    finally:
        store.close()


def test_writes_held_back_in_a_transaction_that_fails_are_never_sent(database: Database) -> None:
    """Seals and audit events are sent with the next statement that needs an answer or with the COMMIT; a
    transaction that raises before then rolls back without them, and its pooled connection does not carry them
    into the next transaction."""
    store = database.open()
    try:
        with pytest.raises(RuntimeError, match="the caller gave up"):
            with store.transaction() as tx:
                tx.append_audit(AuditDraft(time=later(1), actor="admin", kind="key.created"))
                tx.put_seal("key:ops", b"\x01" * 32)
                raise RuntimeError("the caller gave up")
        with store.transaction() as tx:
            tx.append_audit(AuditDraft(time=later(2), actor="admin", kind="daemon.started"))
        assert [event.kind for event in store.iter_audit_events()] == ["daemon.started"]
        assert store.seals(["key:ops"]) == {}
    finally:
        store.close()


def test_a_unique_violation_from_a_writer_outside_the_lock_is_already_exists(database: Database) -> None:
    """The store checks uniqueness itself under the write lock; should a writer that skips the lock slip a
    duplicate in between that check and the insert, the constraint refuses it and the caller hears
    AlreadyExists, as on SQLite."""
    store = database.open()
    treasury = make_key("treasury")
    store.insert_key(treasury.key)
    request = make_transaction_request(treasury)
    store.insert_request(request)
    alice = make_approver("alice")
    try:
        database.execute(
            "CREATE FUNCTION sneak_in() RETURNS trigger LANGUAGE plpgsql AS"
            " 'BEGIN INSERT INTO approvals SELECT NEW.*; RETURN NEW; END'"
        )
        database.execute(
            "CREATE TRIGGER sneak_in BEFORE INSERT ON approvals FOR EACH ROW"
            " WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION sneak_in()"
        )
        with pytest.raises(AlreadyExists, match="could not store the approval: the database already holds"):
            store.insert_approval(make_approval(request, alice))
        assert store.list_approvals(request.request_id) == []
    finally:
        store.close()


def test_a_closed_store_refuses_work(database: Database) -> None:
    store = database.open()
    store.close()
    with pytest.raises(StoreUnavailable, match="the store has been closed"):
        store.list_keys()


def test_a_lapsed_claim_is_taken_over_by_another_replica(database: Database) -> None:
    first, second = database.open(), database.open()
    try:
        ops = make_key("ops")
        first.insert_key(ops.key)
        request = make_message_request(ops)
        first.insert_request(request)
        assert first.claim_signing(request.request_id, "replica-1", later(1), later(2))
        assert not second.claim_signing(request.request_id, "replica-2", later(1), later(2))
        assert second.claim_signing(
            request.request_id, "replica-2", later(2) + timedelta(seconds=1), later(3)
        )
        assert first.due_requests(later(2), 10) == []
    finally:
        first.close()
        second.close()

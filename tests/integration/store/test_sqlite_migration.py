"""Databases written by older versions of the schema (1 and 2) upgrade to the current one and keep every row."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eth_account import Account

from custody.domain.errors import StoreUnavailable
from custody.domain.keys import KeyState
from custody.domain.requests import Approval, PayloadKind, RequestState, SigningRequest
from custody.store import codec
from custody.store.base import NonceUse, StoredPolicy
from custody.store.migrate import latest_version, load_migrations
from custody.store.sqlite import SqliteStore

from .helpers import (
    TestKey,
    check_chain,
    later,
    make_approval,
    make_approver,
    make_draft,
    make_governance_request,
    make_key,
    make_message_request,
    make_transaction_request,
    moved,
    sign_message,
    sign_transaction,
)

# The request columns of schema version 1, as 0001_initial.sql creates them.
_V1_REQUEST_COLUMNS = (
    "request_id",
    "key_label",
    "key_id",
    "requester",
    "kind",
    "chain_id",
    "payload",
    "payload_hash",
    "digest",
    "decision_action",
    "decision_rule",
    "decision_reason",
    "policy_version",
    "state",
    "signature",
    "signed_tx",
    "tx_hash",
    "error",
    "summary",
    "created_at",
    "updated_at",
)


def _insert_v1(connection: sqlite3.Connection, table: str, row: dict[str, object]) -> None:
    columns = list(row)
    connection.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [row[column] for column in columns],
    )


def _key_row_before_version_5(test_key: TestKey) -> dict[str, object]:
    """A key's row as the schema had it until version 5 added the count of its freezes."""
    row = codec.key_to_row(test_key.key)
    del row["freezes"]
    return row


def _build_v1_database(db_path: Path) -> tuple[list[TestKey], list[SigningRequest]]:
    """Run only migration 1 and fill it as version 1 of the store did: keys, and requests in several states."""
    ops, treasury = make_key("ops"), make_key("treasury")
    signed_message = moved(
        make_message_request(ops, suffix=1, text="v1 signed"),
        RequestState.SIGNED,
        later(1),
        result=sign_message(ops, "v1 signed"),
    )
    signed_transaction = moved(
        make_transaction_request(treasury, suffix=2, state=RequestState.APPROVED),
        RequestState.SIGNED,
        later(2),
        result=sign_transaction(treasury),
    )
    pending = make_transaction_request(treasury, suffix=3, created_at=later(3))
    failed = moved(
        make_message_request(ops, suffix=4, text="v1 failed", created_at=later(4)),
        RequestState.FAILED,
        later(5),
        error="the HSM refused the operation",
    )
    denied = make_message_request(
        ops, suffix=5, text="v1 denied", state=RequestState.DENIED, created_at=later(6)
    )
    requests = [signed_message, signed_transaction, pending, failed, denied]

    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("BEGIN")
        for statement in load_migrations()[0].statements:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (1, ?)",
            (codec.encode_time(datetime(2024, 4, 1, tzinfo=UTC), "applied_at"),),
        )
        for test_key in (ops, treasury):
            _insert_v1(connection, "keys", _key_row_before_version_5(test_key))
        for request in requests:
            row = codec.request_to_row(request)
            _insert_v1(connection, "requests", {column: row[column] for column in _V1_REQUEST_COLUMNS})
        connection.execute("COMMIT")
    finally:
        connection.close()
    return [ops, treasury], requests


def test_version_1_database_upgrades_and_keeps_every_row(db_path: Path) -> None:
    test_keys, requests = _build_v1_database(db_path)
    ops, treasury = test_keys

    store = SqliteStore(db_path)
    try:
        assert store.schema_version() == latest_version() >= 2
        assert store.list_keys() == [ops.key, treasury.key]
        for request in requests:
            assert store.get_request(request.request_id) == request
        assert [request.request_id for request in store.list_requests()] == [
            request.request_id
            for request in sorted(requests, key=lambda r: (r.created_at, r.request_id), reverse=True)
        ]
        # The signatures that crossed the migration still verify against the keys that made them.
        signed_message = store.get_request(requests[0].request_id)
        assert signed_message is not None and signed_message.result is not None
        assert Account._recover_hash(signed_message.digest, signature=signed_message.result.signature) == (
            ops.key.address
        )
        signed_transaction = store.get_request(requests[1].request_id)
        assert signed_transaction is not None and signed_transaction.result is not None
        assert signed_transaction.result.signed_tx is not None
        assert Account.recover_transaction(signed_transaction.result.signed_tx) == treasury.key.address

        # The upgraded tables take what version 1 could not: governance kinds, no key, the new columns.
        policy_change = make_governance_request(PayloadKind.POLICY_CHANGE, suffix=10)
        store.insert_request(policy_change)
        assert store.get_request(policy_change.request_id) == policy_change
        # The old pending request moves on under the new code.
        approved = store.transition_request(
            requests[2].request_id,
            RequestState.PENDING_APPROVAL,
            RequestState.APPROVED,
            later(10),
            not_before=later(20),
        )
        assert approved.not_before == later(20)
        assert (
            store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(11)).state is KeyState.FROZEN
        )
    finally:
        store.close()

    with sqlite3.connect(db_path) as connection:
        assert [
            row[0] for row in connection.execute("SELECT version FROM schema_version ORDER BY version")
        ] == (list(range(1, latest_version() + 1)))
        indexes = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        }
        assert {
            "requests_by_created",
            "requests_by_state",
            "requests_by_key",
            "requests_by_requester",
            "requests_due",
            "requests_expiring",
            "requests_velocity",
        } <= indexes
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_rebuilt_requests_table_still_refuses_an_unknown_key(db_path: Path) -> None:
    _build_v1_database(db_path)
    SqliteStore(db_path).close()
    stranger = make_message_request(make_key("stranger"), suffix=30)
    row = codec.request_to_row(stranger)

    connection = sqlite3.connect(db_path)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        # Written past the store's own checks, so that only the schema stands in the way.
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
            _insert_v1(connection, "requests", row)
    finally:
        connection.close()


def test_a_failing_upgrade_leaves_version_1_untouched(db_path: Path) -> None:
    _, requests = _build_v1_database(db_path)
    # A table in the way of migration 2 makes it fail halfway, after the requests table was rebuilt.
    with sqlite3.connect(db_path) as connection:
        connection.execute("CREATE TABLE approvals (x TEXT)")

    with pytest.raises(
        StoreUnavailable,
        match="could not upgrade the database schema to version 2: the database already holds a table or index",
    ):
        SqliteStore(db_path)

    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 1
        columns = [row[1] for row in connection.execute("PRAGMA table_info(requests)")]
        assert tuple(columns) == _V1_REQUEST_COLUMNS
        assert connection.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == len(requests)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "requests_new" not in tables
        assert "policy_versions" not in tables


def _build_v2_database(
    db_path: Path,
) -> tuple[list[TestKey], list[SigningRequest], list[Approval], StoredPolicy]:
    """Run migrations 1 and 2 only and fill them as version 2 of the store did: keys, requests of every kind
    in several states, approvals and a policy version."""
    ops, treasury = make_key("ops"), make_key("treasury")
    alice = make_approver("alice")
    signed = moved(
        make_transaction_request(treasury, suffix=1, state=RequestState.APPROVED),
        RequestState.SIGNED,
        later(2),
        result=sign_transaction(treasury),
    )
    pending = make_transaction_request(treasury, suffix=2, created_at=later(3))
    message = moved(
        make_message_request(ops, suffix=3, text="v2 signed", created_at=later(4)),
        RequestState.SIGNED,
        later(5),
        result=sign_message(ops, "v2 signed"),
    )
    policy_change = make_governance_request(PayloadKind.POLICY_CHANGE, suffix=4, created_at=later(6))
    requests = [signed, pending, message, policy_change]
    approvals = [make_approval(pending, alice, created_at=later(7))]
    policy = StoredPolicy(version=1, document="version = 1\n", activated_at=later(0), request_id=None)

    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("BEGIN")
        for migration in load_migrations()[:2]:
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (migration.version, codec.encode_time(datetime(2024, 4, 1, tzinfo=UTC), "applied_at")),
            )
        for test_key in (ops, treasury):
            _insert_v1(connection, "keys", _key_row_before_version_5(test_key))
        for request in requests:
            row = codec.request_to_row(request)
            _insert_v1(connection, "requests", {column: row[column] for column in _V2_REQUEST_COLUMNS})
        for approval in approvals:
            _insert_v1(connection, "approvals", codec.approval_to_row(approval))
        _insert_v1(connection, "policy_versions", codec.policy_to_row(policy))
        connection.execute("COMMIT")
    finally:
        connection.close()
    return [ops, treasury], requests, approvals, policy


# Version 3 adds one request column and version 4 another; nothing else changes in the existing tables.
_V2_REQUEST_COLUMNS = tuple(
    column for column in codec.REQUEST_COLUMNS if column not in {"replaces", "token_amounts"}
)


def test_version_2_database_upgrades_to_3_and_keeps_every_row(db_path: Path) -> None:
    test_keys, requests, approvals, policy = _build_v2_database(db_path)
    ops, treasury = test_keys
    store = SqliteStore(db_path)
    try:
        assert store.schema_version() == latest_version() >= 3
        assert store.list_keys() == [ops.key, treasury.key]
        for request in requests:
            assert store.get_request(request.request_id) == request
            stored = store.get_request(request.request_id)
            assert stored is not None and stored.replaces is None
        assert store.list_approvals(requests[1].request_id) == approvals
        assert store.active_policy() == policy
        signed = store.get_request(requests[0].request_id)
        assert signed is not None and signed.result is not None and signed.result.signed_tx is not None
        assert Account.recover_transaction(signed.result.signed_tx) == treasury.key.address

        # What version 3 adds works on the upgraded file: the audit log, nonces, replacements.
        assert store.audit_head() is None
        event = store.append_audit(make_draft(1, request_id=requests[1].request_id))
        assert event.sequence == 1
        check_chain(list(store.iter_audit_events()))
        pending = requests[1]
        store.reserve_nonce(
            NonceUse(
                key_id=pending.key_id,
                chain_id=11155111,
                scope="account",
                nonce=7,
                request_id=pending.request_id,
                payload_hash=pending.payload_hash,
                created_at=later(8),
            )
        )
        replacement = dataclasses.replace(
            make_transaction_request(treasury, suffix=9, created_at=later(9)), replaces=pending.request_id
        )
        store.insert_request(replacement)
        assert store.get_request(replacement.request_id) == replacement
    finally:
        store.close()

    with sqlite3.connect(db_path) as connection:
        assert [
            row[0] for row in connection.execute("SELECT version FROM schema_version ORDER BY version")
        ] == list(range(1, latest_version() + 1))
        indexes = {
            row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert {
            "audit_by_request",
            "audit_by_actor",
            "audit_by_kind",
            "audit_by_time",
            "nonces_by_request",
        } <= (indexes)
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_failing_upgrade_to_3_leaves_version_2_untouched(db_path: Path) -> None:
    _, requests, _, _ = _build_v2_database(db_path)
    # A table in the way of migration 3 makes it fail after the audit table was created.
    with sqlite3.connect(db_path) as connection:
        connection.execute("CREATE TABLE nonces (x TEXT)")

    with pytest.raises(
        StoreUnavailable,
        match="could not upgrade the database schema to version 3: the database already holds a table or index",
    ):
        SqliteStore(db_path)

    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 2
        columns = {row[1] for row in connection.execute("PRAGMA table_info(requests)")}
        assert set(_V2_REQUEST_COLUMNS) <= columns
        assert "replaces" not in columns
        assert connection.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == len(requests)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "audit_events" not in tables

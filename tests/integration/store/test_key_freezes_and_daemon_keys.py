"""Each freeze of a key is counted, the key's waiting unfreezes are found, and the daemon's own HSM keys are
stored by purpose; a database of schema version 4 upgrades with its frozen keys on their first freeze."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from custody.domain.errors import AlreadyExists
from custody.domain.keys import KeyState
from custody.domain.requests import PayloadKind, RequestState
from custody.store import codec
from custody.store.base import DaemonKey, Store
from custody.store.migrate import load_migrations
from custody.store.sqlite import SqliteStore

from .helpers import later, make_governance_request, make_key, make_transaction_request


def test_every_move_to_frozen_counts_one_more_freeze(store: Store) -> None:
    store.insert_key(make_key("ops").key)
    assert store.get_key("ops").freezes == 0  # type: ignore[union-attr]

    assert store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(1)).freezes == 1
    # A second freeze of a frozen key is a freeze of its own.
    assert store.set_key_state("ops", KeyState.FROZEN, KeyState.FROZEN, later(2)).freezes == 2
    unfrozen = store.set_key_state("ops", KeyState.FROZEN, KeyState.ACTIVE, later(3))
    assert (unfrozen.state, unfrozen.freezes) == (KeyState.ACTIVE, 2)
    assert store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(4)).freezes == 3
    assert store.get_key("ops") == store.list_keys()[0]


def test_waiting_unfreezes_are_the_keys_pending_unfreeze_requests_oldest_first(store: Store) -> None:
    ops, treasury = make_key("ops"), make_key("treasury")
    store.insert_key(ops.key)
    store.insert_key(treasury.key)
    older = make_governance_request(PayloadKind.KEY_UNFREEZE, ops, suffix=1, created_at=later(1))
    newer = make_governance_request(PayloadKind.KEY_UNFREEZE, ops, suffix=2, created_at=later(2))
    decided = make_governance_request(PayloadKind.KEY_UNFREEZE, ops, suffix=3, created_at=later(0))
    other_key = make_governance_request(PayloadKind.KEY_UNFREEZE, treasury, suffix=4, created_at=later(0))
    for request in (newer, older, decided, other_key):
        store.insert_request(request)
    store.insert_request(make_transaction_request(ops, suffix=5, state=RequestState.PENDING_APPROVAL))
    store.transition_request(
        decided.request_id, RequestState.PENDING_APPROVAL, RequestState.REJECTED, later(3)
    )

    assert [request.request_id for request in store.waiting_unfreezes("ops")] == [
        older.request_id,
        newer.request_id,
    ]
    assert [request.request_id for request in store.waiting_unfreezes("treasury")] == [other_key.request_id]
    assert store.waiting_unfreezes("nobody") == []


def test_the_daemons_own_key_is_stored_once_per_purpose(store: Store) -> None:
    assert store.daemon_key("audit") is None
    audit = DaemonKey(purpose="audit", key_id="a1" * 16, public_key=bytes(range(32)), created_at=later(1))
    store.insert_daemon_key(audit)
    assert store.daemon_key("audit") == audit

    with pytest.raises(AlreadyExists, match="audit key is already stored"):
        store.insert_daemon_key(DaemonKey("audit", "b2" * 16, bytes(32), later(2)))
    secret = DaemonKey(purpose="seal", key_id="c3" * 16, public_key=None, created_at=later(3))
    store.insert_daemon_key(secret)
    assert store.daemon_key("seal") == secret
    assert store.daemon_key("audit") == audit


def test_a_version_4_database_upgrades_with_its_frozen_keys_on_their_first_freeze(tmp_path: Path) -> None:
    db_path = tmp_path / "custody.db"
    ops, treasury = make_key("ops"), make_key("treasury")
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        for migration in load_migrations()[:4]:
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (migration.version, codec.encode_time(datetime(2024, 4, 1, tzinfo=UTC), "applied_at")),
            )
        for test_key, state in ((ops, KeyState.FROZEN), (treasury, KeyState.ACTIVE)):
            row = codec.key_to_row(test_key.key)
            del row["freezes"]
            row["state"] = state.value
            columns = list(row)
            connection.execute(
                f"INSERT INTO keys ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                [row[column] for column in columns],
            )
        connection.execute("COMMIT")
    finally:
        connection.close()

    store = SqliteStore(db_path)
    try:
        assert store.schema_version() >= 5
        assert [(key.label, key.state, key.freezes) for key in store.list_keys()] == [
            ("ops", KeyState.FROZEN, 1),
            ("treasury", KeyState.ACTIVE, 0),
        ]
        assert store.daemon_key("audit") is None
    finally:
        store.close()

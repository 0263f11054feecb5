"""Schema version 7 on SQLite and PostgreSQL: a database of version 6 upgrades keeping every row, and then
stores EIP-7702 authorization requests and their nonces, while the schema still refuses unknown kinds and
nonce scopes written past the store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account import Account

from custody.chains.evm import parse_payload
from custody.domain.requests import PayloadKind, RequestState, SigningRequest
from custody.store import codec
from custody.store.base import NonceUse
from custody.store.migrate import for_postgresql, latest_version, load_migrations

from .conftest import Database
from .helpers import (
    later,
    make_approval,
    make_approver,
    make_key,
    make_message_request,
    make_transaction_request,
    moved,
    sign_message,
    sign_transaction,
)

DELEGATE = "0x63c0c19a282a1B52b07dD5a65b58948A07DAE32B"


def _insert(database: Database, table: str, row: dict[str, Any]) -> None:
    columns = list(row)
    database.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [row[column] for column in columns],
    )


def _nonce(request: SigningRequest, scope: str, nonce: int, chain_id: int = 11155111) -> NonceUse:
    return NonceUse(
        key_id=request.key_id,
        chain_id=chain_id,
        scope=scope,
        nonce=nonce,
        request_id=request.request_id,
        payload_hash=request.payload_hash,
        created_at=request.created_at,
    )


def _authorization_request(test_key: Any, *, suffix: int, chain_id: int, nonce: int) -> SigningRequest:
    parsed = parse_payload(
        PayloadKind.AUTHORIZATION,
        json.dumps({"chainId": chain_id, "address": DELEGATE, "nonce": nonce}).encode(),
    )
    base = make_message_request(test_key, suffix=suffix, state=RequestState.DENIED, created_at=later(suffix))
    return dataclasses.replace(
        base,
        kind=PayloadKind.AUTHORIZATION,
        chain_id=chain_id,
        payload=parsed.canonical,
        payload_hash=hashlib.sha256(parsed.canonical).digest(),
        digest=parsed.digest,
        summary=parsed.summary(),
    )


def test_a_version_6_database_upgrades_to_7_keeping_every_row(database: Database) -> None:
    migrations = load_migrations()
    assert latest_version() >= 7
    for migration in migrations[:6]:
        statements = (
            migration.statements if database.backend == "sqlite" else for_postgresql(migration).statements
        )
        for statement in statements:
            database.execute(statement)
        database.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (migration.version, codec.encode_time(datetime(2026, 1, 1, tzinfo=UTC), "applied_at")),
        )
    ops, treasury = make_key("ops"), make_key("treasury")
    signed = moved(
        make_transaction_request(treasury, suffix=1, state=RequestState.APPROVED),
        RequestState.SIGNED,
        later(2),
        result=sign_transaction(treasury),
    )
    pending = make_transaction_request(treasury, suffix=2, created_at=later(3))
    replacement = dataclasses.replace(
        make_transaction_request(treasury, suffix=3, created_at=later(4)), replaces=pending.request_id
    )
    message = moved(
        make_message_request(ops, suffix=4, text="v6 signed", created_at=later(5)),
        RequestState.SIGNED,
        later(6),
        result=sign_message(ops, "v6 signed"),
    )
    requests = [signed, pending, replacement, message]
    approval = make_approval(pending, make_approver("alice"), created_at=later(7))
    nonces = [_nonce(signed, "account", 1), _nonce(pending, "account", 2)]
    for test_key in (ops, treasury):
        _insert(database, "keys", codec.key_to_row(test_key.key))
    for request in requests:
        _insert(database, "requests", codec.request_to_row(request))
    _insert(database, "approvals", codec.approval_to_row(approval))
    for use in nonces:
        _insert(database, "nonces", codec.nonce_to_row(use))

    store = database.open()
    try:
        assert store.schema_version() == latest_version()
        for request in requests:
            assert store.get_request(request.request_id) == request
        assert store.list_approvals(pending.request_id) == [approval]
        for use in nonces:
            assert store.nonce_holder(use.key_id, use.chain_id, use.scope, use.nonce) == use
        stored = store.get_request(signed.request_id)
        assert stored is not None and stored.result is not None and stored.result.signed_tx is not None
        assert Account.recover_transaction(stored.result.signed_tx) == treasury.key.address

        # What version 7 adds: authorization requests, on every chain (0) or one, and their own nonce scope.
        for suffix, chain_id in ((10, 0), (11, 11155111)):
            authorization = _authorization_request(ops, suffix=suffix, chain_id=chain_id, nonce=2)
            store.insert_request(authorization)
            assert store.get_request(authorization.request_id) == authorization
            store.reserve_nonce(_nonce(authorization, "authorization", 2, chain_id=chain_id))
        # The account nonce 2 on Sepolia and the authorization nonce 2 on Sepolia are different slots.
        assert store.nonce_holder(treasury.key.key_id, 11155111, "account", 2) == nonces[1]
    finally:
        store.close()

    # Past the store, the rebuilt tables still refuse what no version of custody writes.
    unknown_kind = codec.request_to_row(make_message_request(ops, suffix=20, created_at=later(20)))
    unknown_kind["kind"] = "raw_digest"
    with pytest.raises(database.integrity_error):
        _insert(database, "requests", unknown_kind)
    unknown_scope = codec.nonce_to_row(_nonce(message, "everything", 9))
    with pytest.raises(database.integrity_error):
        _insert(database, "nonces", unknown_scope)
    orphan_approval = codec.approval_to_row(
        dataclasses.replace(approval, request_id=make_message_request(ops, suffix=21).request_id)
    )
    with pytest.raises(database.integrity_error):
        _insert(database, "approvals", orphan_approval)
    if database.backend == "sqlite":
        assert database.rows("PRAGMA foreign_key_check") == []
        assert database.rows("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
        tables = {row["name"] for row in database.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not {"requests_v7", "approvals_v7", "nonces_v7"} & tables

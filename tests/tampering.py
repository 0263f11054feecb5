"""What a database writer does to the audit log and the database, written once for the in-process and the
end-to-end tests."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg

from custody.audit.events import AuditEvent, event_hash
from custody.store.codec import decode_time

# Runs one statement on the database behind the daemon's back; placeholders are written "?".
Sql = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class DevEnvLike(Protocol):
    """Where an environment's database is: a SQLite file custody.db in its directory, or a PostgreSQL URL."""

    @property
    def directory(self) -> Path: ...

    @property
    def database_url(self) -> str | None: ...


def rewrite_audit_actor(sql: Sql, sequence: int, actor: str) -> None:
    """Give event ``sequence`` another actor and compute its hash and every later hash again, as a writer who
    knows the hash chain's encoding would."""
    ((previous_hash,),) = sql("SELECT hash FROM audit_events WHERE sequence = ?", (sequence - 1,))
    rows = sql(
        "SELECT sequence, time, actor, kind, request_id, details FROM audit_events WHERE sequence >= ?"
        " ORDER BY sequence",
        (sequence,),
    )
    for number, time_text, stored_actor, kind, request_id, details in rows:
        event = AuditEvent(
            sequence=number,
            time=decode_time(time_text),
            actor=actor if number == sequence else stored_actor,
            kind=kind,
            request_id=request_id,
            details=json.loads(details),
            previous_hash=bytes(previous_hash),
            hash=b"",
        )
        new_hash = event_hash(number, event, event.previous_hash)
        sql(
            "UPDATE audit_events SET actor = ?, previous_hash = ?, hash = ? WHERE sequence = ?",
            (event.actor, event.previous_hash, new_hash, number),
        )
        previous_hash = new_hash


def append_chained_audit_event(sql: Sql, kind: str, **details: Any) -> int:
    """Append one event to the audit log with plain SQL, its hash chained onto the head, as a writer who knows
    the hash chain's encoding (it is public) but holds no HSM key would; returns its sequence."""
    ((sequence, previous_hash, time_text),) = sql(
        "SELECT sequence, hash, time FROM audit_events ORDER BY sequence DESC LIMIT 1", ()
    )
    event = _daemon_event(sequence + 1, time_text, kind, details, bytes(previous_hash))
    sql(
        "INSERT INTO audit_events (sequence, time, actor, kind, request_id, details, previous_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.sequence,
            time_text,
            event.actor,
            kind,
            None,
            json.dumps(details, sort_keys=True, separators=(",", ":")),
            event.previous_hash,
            event_hash(event.sequence, event, event.previous_hash),
        ),
    )
    return event.sequence


def rewrite_audit_event_in_place(sql: Sql, sequence: int, kind: str, **details: Any) -> None:
    """Turn event ``sequence`` into one of ``kind`` with ``details`` and its own hash computed again, keeping its
    place and previous hash: the chain breaks only at the event after it, which no check of the head reads."""
    ((time_text, previous_hash),) = sql(
        "SELECT time, previous_hash FROM audit_events WHERE sequence = ?", (sequence,)
    )
    event = _daemon_event(sequence, time_text, kind, details, bytes(previous_hash))
    sql(
        "UPDATE audit_events SET actor = ?, kind = ?, request_id = NULL, details = ?, hash = ? WHERE sequence = ?",
        (
            event.actor,
            kind,
            json.dumps(details, sort_keys=True, separators=(",", ":")),
            event_hash(sequence, event, event.previous_hash),
            sequence,
        ),
    )


def _daemon_event(
    sequence: int, time_text: str, kind: str, details: dict[str, Any], previous_hash: bytes
) -> AuditEvent:
    """An event as the daemon would write it (actor custody, no request), before its hash is computed."""
    return AuditEvent(
        sequence=sequence,
        time=decode_time(time_text),
        actor="custody",
        kind=kind,
        request_id=None,
        details=details,
        previous_hash=previous_hash,
        hash=b"",
    )


def copy_database(env: DevEnvLike, name: str) -> None:
    """Keep a copy of the environment's database under ``name``, taken while the daemon may run: for SQLite with
    the online backup API into a file beside it, for PostgreSQL with plain SQL into a schema of that name."""
    if env.database_url is None:
        with (
            sqlite3.connect(env.directory / "custody.db") as source,
            sqlite3.connect(env.directory / f"{name}.db") as copy,
        ):
            source.backup(copy)
        return
    with psycopg.connect(env.database_url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{name}"')
        for table in _postgres_tables(connection):
            connection.execute(f'CREATE TABLE "{name}"."{table}" AS TABLE public."{table}"')


def restore_database(env: DevEnvLike, name: str) -> None:
    """Put the copy ``name`` back in place of the environment's database, with the daemon stopped."""
    if env.database_url is None:
        with (
            sqlite3.connect(env.directory / f"{name}.db") as copy,
            sqlite3.connect(env.directory / "custody.db") as database,
        ):
            copy.backup(database)
        return
    with psycopg.connect(env.database_url) as connection, connection.transaction():
        tables = _postgres_tables(connection)
        connection.execute("TRUNCATE " + ", ".join(f'public."{table}"' for table in tables))
        # As a restore of a dump does: the rows go back table by table, without checking references between them
        # on the way (every one held when the copy was taken).
        connection.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            connection.execute(f'INSERT INTO public."{table}" SELECT * FROM "{name}"."{table}"')


def _postgres_tables(connection: psycopg.Connection[Any]) -> list[str]:
    rows = connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        " AND table_type = 'BASE TABLE' ORDER BY table_name"
    ).fetchall()
    return [str(table) for (table,) in rows]

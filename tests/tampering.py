"""What a database writer does to the audit log, written once for the in-process and the end-to-end tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from custody.audit.events import AuditEvent, event_hash
from custody.store.codec import decode_time

# Runs one statement on the database behind the daemon's back; placeholders are written "?".
Sql = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


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

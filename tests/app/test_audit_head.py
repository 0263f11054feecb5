"""The audit log's head kept in memory: events rewritten after the last checkpoint, with their hashes computed
again so that the chain verifies, are neither appended to nor covered by a checkpoint; events another replica
appends on the same database are accepted once their chain continues from the remembered head.

The rewrite is made with plain SQL on the database file, as someone who can write the database would.
"""

from __future__ import annotations

import json

import pytest

from custody.audit.events import AuditEvent, event_hash
from custody.domain.errors import Unavailable
from custody.domain.requests import RequestState
from custody.store.codec import decode_time
from tests.app.conftest import App, AppFactory, assert_signed_by


def _rewrite_from(app: App, sequence: int, actor: str) -> None:
    """Give event ``sequence`` another actor and compute its hash and every later hash again."""
    ((previous_hash,),) = app.sql("SELECT hash FROM audit_events WHERE sequence = ?", (sequence - 1,))
    rows = app.sql(
        "SELECT sequence, time, actor, kind, request_id, details FROM audit_events WHERE sequence >= ?"
        " ORDER BY sequence",
        (sequence,),
    )
    for number, time, stored_actor, kind, request_id, details in rows:
        event = AuditEvent(
            sequence=number,
            time=decode_time(time),
            actor=actor if number == sequence else stored_actor,
            kind=kind,
            request_id=request_id,
            details=json.loads(details),
            previous_hash=bytes(previous_hash),
            hash=b"",
        )
        new_hash = event_hash(number, event, event.previous_hash)
        app.sql(
            "UPDATE audit_events SET actor = ?, previous_hash = ?, hash = ? WHERE sequence = ?",
            (event.actor, event.previous_hash, new_hash, number),
        )
        previous_hash = new_hash


def test_events_rewritten_after_the_last_checkpoint_get_no_checkpoint_and_no_successor(app: App) -> None:
    signed = app.submit_tx("ops")
    assert_signed_by(signed, app.keys["ops"].address)
    head = app.head()
    _rewrite_from(app, head - 1, "someone-else")
    # The rewritten chain verifies on its own: only the head this daemon remembers tells it apart.
    assert app.custody.audit.verify_head().ok

    with pytest.raises(Unavailable, match="was changed in the database"):
        app.custody.audit.checkpoint()
    with pytest.raises(Unavailable):
        app.submit_tx("ops")

    assert app.head() == head
    assert app.sql("SELECT COUNT(*) FROM audit_events WHERE kind = 'audit.checkpoint'") == [(0,)]


def test_events_removed_from_the_head_stop_appends(app: App) -> None:
    app.submit_tx("ops")
    head = app.head()
    app.sql("DELETE FROM audit_events WHERE sequence = ?", (head,))

    with pytest.raises(Unavailable, match="went back"):
        app.submit_tx("ops")


def test_events_another_replica_appends_are_accepted_when_they_chain_on(
    app: App, make_app: AppFactory
) -> None:
    replica = make_app(database=app.database, clock=app.clock)
    replica._nonces = app._nonces
    assert_signed_by(replica.submit_tx("ops"), replica.keys["ops"].address)

    request = app.submit_tx("ops")

    assert request.state is not RequestState.FAILED
    assert_signed_by(app.get(request.request_id), app.keys["ops"].address)
    assert app.custody.audit.checkpoint() is not None

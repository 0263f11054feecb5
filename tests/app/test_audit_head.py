"""The audit log's head kept in memory: events rewritten after the last checkpoint, with their hashes computed
again so that the chain verifies, are neither appended to nor covered by a checkpoint; events another replica
appends on the same database are accepted once their chain continues from the remembered head.

The rewrite is made with plain SQL on the database file, as someone who can write the database would.
"""

from __future__ import annotations

import pytest

from custody.domain.errors import Unavailable
from custody.domain.requests import RequestState
from tests.app.conftest import App, AppFactory, assert_signed_by
from tests.tampering import rewrite_audit_actor


def test_events_rewritten_after_the_last_checkpoint_get_no_checkpoint_and_no_successor(app: App) -> None:
    signed = app.submit_tx("ops")
    assert_signed_by(signed, app.keys["ops"].address)
    head = app.head()
    rewrite_audit_actor(app.sql, head - 1, "someone-else")
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

"""The anchor in the HSM token: a database restored to an older copy, truncated or rewritten is refused at start
and reported by online verification, because the token vouches for a later audit event than the database holds.

The database is copied and put back with SQLite's own backup API and edited with plain SQL, as someone who can
write the database but holds no HSM PIN could.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from custody.app.anchor import token_state
from custody.audit.anchor import Anchor
from custody.domain.errors import ConfigurationError
from custody.domain.requests import RequestState
from tests.tampering import rewrite_audit_actor

from .conftest import ADMIN, App, AppFactory, assert_signed_by


def _copy(database: Path, to: Path) -> None:
    with sqlite3.connect(database) as source, sqlite3.connect(to) as copy:
        source.backup(copy)


def _restore(copy: Path, database: Path) -> None:
    """Put the copy back in place of the stopped application's database, as an operator restores a backup
    with SQLite's backup API (which keeps the database's write-ahead log consistent)."""
    _copy(copy, database)


def _anchor(app: App) -> Anchor:
    seal_key_id = app.custody.sealer.key_id
    assert seal_key_id is not None
    anchor = app.custody.sealer.anchor.latest(seal_key_id)
    assert anchor is not None
    return anchor


def test_the_anchor_follows_every_checkpoint_and_each_start(app: App, make_app: AppFactory) -> None:
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)

    checkpoint = app.custody.audit.checkpoint()

    assert checkpoint is not None
    assert _anchor(app) == Anchor.of(app.custody.sealer.key_id or b"", checkpoint)
    app.submit_tx("ops")
    restarted = make_app.restart(app)
    (shutdown_checkpoint,) = restarted.events(kind="audit.checkpoint", after_sequence=checkpoint.sequence)
    assert _anchor(restarted).sequence == shutdown_checkpoint.sequence
    # One anchor per seal key: moving it forward removes the one before.
    assert [anchor.sequence for anchor in token_state(restarted.custody.sealer.anchor._hsm).anchors] == [
        shutdown_checkpoint.sequence
    ]


def test_a_database_restored_to_an_older_copy_is_refused_at_start(
    app: App, make_app: AppFactory, tmp_path: Path
) -> None:
    older = tmp_path / "older.db"
    _copy(app.database, older)
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    request = app.pending()
    app.approve(request, "alice")
    make_app.stop(app)
    ((head,),) = app.sql("SELECT MAX(sequence) FROM audit_events")

    _restore(older, app.database)

    with pytest.raises(ConfigurationError) as refused:
        make_app(database=app.database, clock=app.clock)
    ((restored_head,),) = app.sql("SELECT MAX(sequence) FROM audit_events")
    assert refused.value.message.startswith(
        f"the database's audit log ends at event {restored_head}, but the HSM token's anchor vouches for event"
        f" {head}: the database was restored to an older copy"
    )


def test_a_rewritten_audit_log_is_refused_at_start(app: App, make_app: AppFactory) -> None:
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    make_app.stop(app)
    ((head,),) = app.sql("SELECT MAX(sequence) FROM audit_events")
    # The writer rewrites an event and every hash after it, the anchored shutdown checkpoint included.
    rewrite_audit_actor(app.sql, head - 3, "someone-else")

    with pytest.raises(ConfigurationError, match=f"audit event {head} in the database's audit log has hash"):
        make_app(database=app.database, clock=app.clock)


def test_online_verification_names_events_removed_before_the_anchor(app: App) -> None:
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    checkpoint = app.custody.audit.checkpoint()
    assert checkpoint is not None
    assert app.custody.audit.verify_chain(ADMIN).ok
    # Removing the newest events, checkpoint included, leaves a chain that verifies on its own.
    app.sql("DELETE FROM audit_events WHERE sequence >= ?", (checkpoint.sequence - 1,))

    verification = app.custody.audit.verify_chain(ADMIN)

    assert not verification.ok
    assert verification.first_bad_sequence == checkpoint.sequence
    assert "the HSM token's anchor vouches for event" in verification.problem


def test_an_older_copy_restored_on_purpose_starts_once_the_anchor_is_retired(
    app: App, make_app: AppFactory, tmp_path: Path
) -> None:
    older = tmp_path / "older.db"
    request = app.pending()
    app.approve(request, "alice")
    _copy(app.database, older)
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    make_app.stop(app)
    ((retired_head,),) = app.sql("SELECT MAX(sequence) FROM audit_events")
    _restore(older, app.database)
    ((restored_head,),) = app.sql("SELECT MAX(sequence) FROM audit_events")

    make_app.retire_token_state()
    restarted = make_app(database=app.database, clock=app.clock)
    restarted._nonces = app._nonces

    (retired,) = restarted.events(kind="anchor.retired", after_sequence=restored_head)
    assert [anchor["sequence"] for anchor in retired.details["anchors"]] == [retired_head]
    # The restored copy's own seals still verify: its seal key is found by its id, whatever its label.
    assert_signed_by(restarted.approve(request, "bob"), restarted.keys["treasury"].address)
    assert restarted.get(request.request_id).state is RequestState.SIGNED
    assert _anchor(restarted).sequence >= retired.sequence

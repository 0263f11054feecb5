"""Checkpoints by time: the worker signs a checkpoint once the oldest event no checkpoint covers is a minute old
(``limits.audit_checkpoint_interval_seconds``), so an export of a quiet daemon is covered within a minute.

The application's clock is the test's, so the minute passes without waiting.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.audit.chain import checkpoint_statement

from .conftest import App, assert_signed_by

INTERVAL_SECONDS = 60


def _checkpoints(app: App) -> list[tuple[int, int]]:
    """(sequence, covered sequence) of every checkpoint, each checked against the audit public key."""
    found = []
    for event in app.events(kind="audit.checkpoint"):
        covered, head_hash = event.details["covers_sequence"], bytes.fromhex(event.details["covers_hash"])
        Ed25519PublicKey.from_public_bytes(app.custody.audit.public_key).verify(
            bytes.fromhex(event.details["signature"]), checkpoint_statement(covered, head_hash)
        )
        found.append((event.sequence, covered))
    return found


def test_events_a_minute_old_get_a_checkpoint_without_a_thousand_more(app: App) -> None:
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    head = app.head()

    app.clock.advance(INTERVAL_SECONDS - 1)
    app.run_worker()
    assert _checkpoints(app) == []

    app.clock.advance(1)
    app.run_worker()
    assert _checkpoints(app) == [(head + 1, head)]


def test_the_minute_counts_from_the_oldest_event_a_checkpoint_does_not_cover(app: App) -> None:
    app.clock.advance(INTERVAL_SECONDS)
    app.run_worker()
    (first,) = _checkpoints(app)

    # An hour with nothing new: nothing to sign, however long it lasts.
    app.clock.advance(3600)
    app.run_worker()
    assert _checkpoints(app) == [first]

    # One event after the quiet hour is covered a minute after it was written, not at once.
    assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)
    head = app.head()
    app.clock.advance(INTERVAL_SECONDS / 2)
    app.submit_tx("ops")
    app.run_worker()
    assert _checkpoints(app) == [first]
    app.clock.advance(INTERVAL_SECONDS / 2)
    app.run_worker()
    ((_, covered),) = _checkpoints(app)[1:]
    assert covered == app.head() - 1 > head

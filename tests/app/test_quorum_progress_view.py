"""The quorum progress people see counts what signing would count: approvals whose statements still verify,
never rows that someone with database access added or edited."""

from __future__ import annotations

from custody.domain.requests import RequestState

from .conftest import App, assert_signed_by


def _forge_approval(app: App, request_id: str, approver: str, statement: bytes, signature: bytes) -> None:
    """An approval row written with plain SQL, as someone with write access to the database could."""
    app.sql(
        "INSERT INTO approvals (request_id, approver, verdict, statement, signature, reason, created_at)"
        " SELECT request_id, ?, 'approve', ?, ?, '', created_at FROM approvals WHERE request_id = ? LIMIT 1",
        (approver, statement, signature, request_id),
    )


def test_progress_counts_only_approvals_that_verify(app: App) -> None:
    request = app.pending()
    after_alice = app.approve(request, "alice")
    assert app.custody.signing.view(after_alice).progress.describe() == "1 of 2 from treasury"  # type: ignore[union-attr]

    # Bob's row carries a statement naming bob, signed by alice's key instead of his; carol's carries a
    # statement bound to no request at all. Neither verifies, so neither may show as progress.
    bob_statement = app.statement(request, "bob")
    _forge_approval(
        app, request.request_id, "bob", bob_statement, app.approver_keys["alice"].sign(bob_statement)
    )
    carol_statement = app.statement(request, "carol", request_id="0" * 32)
    _forge_approval(
        app, request.request_id, "carol", carol_statement, app.approver_keys["carol"].sign(carol_statement)
    )

    stored = app.get(request.request_id)
    view = app.custody.signing.view(stored)
    assert sorted(approval.approver for approval in view.approvals) == ["alice", "bob", "carol"]
    assert view.progress is not None
    assert view.progress.describe() == "1 of 2 from treasury"
    assert not view.progress.met
    # Signing agrees: the worker finds nothing to sign, and the request still waits.
    app.run_worker()
    assert app.get(request.request_id).state is RequestState.PENDING_APPROVAL


def test_progress_of_a_request_whose_payload_was_edited_counts_nobody(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    # A digest edited behind the application's back no longer matches the payload it recomputes, so the
    # approval given for the original request binds nothing.
    app.sql("UPDATE requests SET digest = ? WHERE request_id = ?", (b"\x01" * 32, request.request_id))
    view = app.custody.signing.view(app.get(request.request_id))
    assert view.progress is not None
    assert view.progress.describe() == "0 of 2 from treasury"


def test_progress_of_a_signed_request_shows_its_quorum(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    signed = app.approve(request, "bob")
    assert_signed_by(signed, app.keys["treasury"].address)
    view = app.custody.signing.view(signed)
    assert view.progress is not None and view.progress.met
    assert view.progress.describe() == "2 of 2 from treasury"

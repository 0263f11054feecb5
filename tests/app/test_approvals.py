"""M-of-N approvals: the 2-of-3 treasury quorum, every refusal of a verdict, rejection, rows edited behind the
application's back, and requests that outlive their lifetime."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from custody.domain.errors import (
    AlreadyExists,
    CustodyError,
    FailedPrecondition,
    InvalidInput,
    PermissionDenied,
)
from custody.domain.requests import RequestState, Verdict

from .conftest import ADMIN, BACKEND, CAROL, DAY, PRINCIPALS, App, assert_signed_by, assert_unsigned


def test_two_of_three_treasury_approvals_sign_the_request(app: App) -> None:
    request = app.pending()
    assert [(term.group, term.threshold) for term in request.decision.quorum] == [("treasury", 2)]
    first = app.approve(request, "alice")
    assert first.state is RequestState.PENDING_APPROVAL
    assert_unsigned(first)
    signed = app.approve(request, "bob")
    assert_signed_by(signed, app.keys["treasury"].address)
    approvals = app.custody.signing.view(signed).approvals
    assert sorted(approval.approver for approval in approvals) == ["alice", "bob"]
    # Every counted statement verifies with the approver's own key, independently of custody.
    for approval in approvals:
        app.approver_keys[approval.approver].public_key().verify(approval.signature, approval.statement)


def test_the_requesters_own_approval_never_counts(app: App) -> None:
    request = app.pending(caller=CAROL)
    with pytest.raises(PermissionDenied):
        app.approve(request, "carol")
    app.approve(request, "alice")
    assert_signed_by(app.approve(request, "bob"), app.keys["treasury"].address)


def test_an_approver_counts_once(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    with pytest.raises(AlreadyExists):
        app.approve(request, "alice")
    assert app.get(request.request_id).state is RequestState.PENDING_APPROVAL


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("statement-for-another-request", FailedPrecondition),
        ("another-digest", FailedPrecondition),
        ("another-payload-hash", FailedPrecondition),
        ("another-policy-version", FailedPrecondition),
        ("expired-statement", FailedPrecondition),
        ("signed-with-another-key", PermissionDenied),
        ("approver-outside-the-quorum-groups", PermissionDenied),
        ("statement-names-someone-else", FailedPrecondition),
        ("garbage-statement", InvalidInput),
    ],
)
def test_statements_that_do_not_bind_this_request_are_refused(
    app: App, case: str, expected: type[CustodyError]
) -> None:
    request = app.pending()
    other = app.pending()
    approver = {"approver-outside-the-quorum-groups": "dave", "statement-names-someone-else": "bob"}.get(
        case, "alice"
    )
    overrides: dict[str, object] = {
        "statement-for-another-request": {"request_id": other.request_id},
        "another-digest": {"digest": other.digest},
        "another-payload-hash": {"payload_hash": bytes(32)},
        "another-policy-version": {"policy_version": request.decision.policy_version + 1},
        "expired-statement": {"expires_in": -5},
        "statement-names-someone-else": {"caller": "alice"},
    }.get(case, {})
    with pytest.raises(CustodyError) as refused:
        if case == "garbage-statement":
            app.custody.approvals.approve(PRINCIPALS["alice"], request.request_id, b"approve it", bytes(64))
        else:
            app.approve(
                request, approver, signer="bob" if case == "signed-with-another-key" else None, **overrides
            )
    assert type(refused.value) is expected, refused.value
    after = app.get(request.request_id)
    assert after.state is RequestState.PENDING_APPROVAL
    assert app.custody.signing.view(after).approvals == ()
    refusals = app.events(kind="approval.refused", request_id=request.request_id)
    # The refusal is recorded against whoever made the call.
    assert [event.actor for event in refusals] == [overrides.get("caller", approver)]


def test_principals_without_the_approver_role_are_refused(app: App) -> None:
    request = app.pending()
    for caller in (BACKEND, ADMIN):
        statement = app.statement(request, caller.name)
        with pytest.raises(PermissionDenied):
            app.custody.approvals.approve(caller, request.request_id, statement, bytes(64))


def test_the_statement_verdict_must_match_the_call(app: App) -> None:
    request = app.pending()
    statement = app.statement(request, "alice", Verdict.REJECT)
    with pytest.raises(InvalidInput):
        app.custody.approvals.approve(
            PRINCIPALS["alice"], request.request_id, statement, app.approver_keys["alice"].sign(statement)
        )


def test_a_rejection_ends_the_request(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    rejected = app.reject(request, "carol", "the recipient is not on our list")
    assert rejected.state is RequestState.REJECTED
    assert rejected.error is not None and "carol" in rejected.error
    with pytest.raises(FailedPrecondition):
        app.approve(request, "bob")
    assert_unsigned(app.get(request.request_id))
    assert app.custody.signing.view(rejected).approvals[-1].reason == "the recipient is not on our list"


def test_a_rejection_needs_a_reason(app: App) -> None:
    request = app.pending()
    statement = app.statement(request, "carol", Verdict.REJECT)
    with pytest.raises(InvalidInput):
        app.custody.approvals.reject(
            PRINCIPALS["carol"],
            request.request_id,
            statement,
            app.approver_keys["carol"].sign(statement),
            " ",
        )
    assert app.get(request.request_id).state is RequestState.PENDING_APPROVAL


def test_an_edited_row_gathers_no_approvals_and_is_not_signed(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    tampered = json.loads(request.payload)
    tampered["to"] = "0x000000000000000000000000000000000000dEaD"
    app.sql(
        "UPDATE requests SET payload = ? WHERE request_id = ?",
        (json.dumps(tampered, sort_keys=True, separators=(",", ":")).encode(), request.request_id),
    )
    with pytest.raises(FailedPrecondition):
        app.approve(request, "bob")
    after = app.get(request.request_id)
    assert after.state is RequestState.FAILED
    assert_unsigned(after)


def test_a_request_past_its_lifetime_expires_and_is_never_signed(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    app.clock.advance(DAY.total_seconds() - 60)
    app.run_worker()
    assert app.get(request.request_id).state is RequestState.PENDING_APPROVAL
    app.clock.advance(120)
    app.run_worker()
    expired = app.get(request.request_id)
    assert expired.state is RequestState.EXPIRED
    with pytest.raises(FailedPrecondition):
        app.approve(request, "bob", expires_in=600)
    assert_unsigned(app.get(request.request_id))
    assert [event.actor for event in app.events(kind="request.expired")] == ["custody"]


def test_an_approval_after_the_lifetime_expires_the_request_even_before_the_worker_does(app: App) -> None:
    request = app.pending()
    app.approve(request, "alice")
    app.clock.advance(DAY.total_seconds() + 1)
    with pytest.raises(FailedPrecondition):
        app.approve(request, "bob")
    assert app.get(request.request_id).state is RequestState.EXPIRED


def test_a_pending_row_edited_to_sign_at_once_is_not_signed(app: App) -> None:
    """Whoever can write to the database sets a waiting treasury request to APPROVED with an empty quorum and
    the decision "sign": the worker picks it up, asks the policy again, finds that it needs two approvals it
    does not have, and marks it FAILED without calling the HSM."""
    request = app.pending()
    app.sql(
        "UPDATE requests SET state = 'APPROVED', decision_action = 'sign', quorum = '[]' WHERE request_id = ?",
        (request.request_id,),
    )
    app.run_worker()
    failed = app.get(request.request_id)
    assert failed.state is RequestState.FAILED
    assert_unsigned(failed)
    # The edited row no longer carries the daemon's seal, which is checked before anything else it says.
    assert failed.error is not None and "sealed" in failed.error
    assert not app.events(kind="request.signed", request_id=request.request_id)


def test_a_forged_approval_row_does_not_count_towards_a_policy_change(app: App) -> None:
    """A policy change takes effect the moment its quorum is met, so a forged approval row must not count
    towards it: bob's genuine approval next to a forged one from alice leaves the proposal waiting."""
    proposal = app.custody.policy.propose(ADMIN, app.next_policy())
    app.sql(
        "INSERT INTO approvals (request_id, approver, verdict, statement, signature, reason, created_at)"
        " SELECT request_id, 'alice', 'approve', ?, ?, '', created_at FROM requests WHERE request_id = ?",
        (app.statement(proposal, "alice"), bytes(64), proposal.request_id),
    )
    assert app.approve(proposal, "bob").state is RequestState.PENDING_APPROVAL
    assert app.custody.policy.get(ADMIN).policy.version == 1


def test_racing_approvals_sign_exactly_once(app: App) -> None:
    """Three approvers race to the threshold from threads of one process, round after round: exactly two
    verdicts count, the third is refused, and each request has one signature and one signing audit event."""
    for _ in range(30):
        request = app.pending()
        # Statements and signatures are made before the race so the calls leave as close together as possible.
        prepared = []
        for name in ("alice", "bob", "carol"):
            statement = app.statement(request, name)
            prepared.append((name, request.request_id, statement, app.approver_keys[name].sign(statement)))

        def call(item: tuple[str, str, bytes, bytes]) -> object:
            name, request_id, statement, signature = item
            try:
                return app.custody.approvals.approve(PRINCIPALS[name], request_id, statement, signature)
            except CustodyError as error:
                return error

        with ThreadPoolExecutor(max_workers=len(prepared)) as pool:
            outcomes = list(pool.map(call, prepared))
        refused = [outcome for outcome in outcomes if isinstance(outcome, CustodyError)]
        assert len(refused) == 1 and isinstance(refused[0], FailedPrecondition), outcomes
        final = app.get(request.request_id)
        assert_signed_by(final, app.keys["treasury"].address)
        assert len(app.custody.signing.view(final).approvals) == 2
        assert len(app.events(kind="request.signed", request_id=request.request_id)) == 1

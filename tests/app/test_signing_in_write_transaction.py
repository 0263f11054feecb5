"""`[hsm] sign_in_write_transaction`: a request the policy signs at once is signed inside the transaction that
records it. The signature must still never leave the daemon without its record: it is returned only after the
transaction that stores it and its audit event commits, and a transaction that cannot commit leaves nothing,
not even the request. The same flows run with the option off, for comparison."""

from __future__ import annotations

from typing import cast

import pytest

from custody.domain.errors import KeyFrozen, StoreUnavailable
from custody.domain.keys import KeyState
from custody.domain.requests import RequestState
from custody.store.sqlite import SqliteStore
from custody.testing.store_faults import failing_audit_writes
from tests.app.conftest import ADMIN, App, AppFactory, assert_signed_by, assert_unsigned, transaction

MODES = pytest.mark.parametrize(
    "sign_in_write_transaction", [False, True], ids=["two-transactions", "sign-in-write-transaction"]
)


@MODES
def test_an_auto_signed_request_is_returned_as_stored_with_its_audit_events(
    make_app: AppFactory, sign_in_write_transaction: bool
) -> None:
    app = make_app(sign_in_write_transaction=sign_in_write_transaction)

    signed = app.submit_tx("ops")

    assert_signed_by(signed, app.keys["ops"].address)
    stored = app.get(signed.request_id)
    assert stored.state is RequestState.SIGNED and stored.result == signed.result
    assert [event.kind for event in app.events(request_id=signed.request_id)] == [
        "request.submitted",
        "request.signed",
    ]
    assert app.custody.audit.verify_head().ok


@MODES
def test_a_signature_whose_record_cannot_be_written_is_never_returned(
    make_app: AppFactory, sign_in_write_transaction: bool
) -> None:
    app = make_app(sign_in_write_transaction=sign_in_write_transaction)
    before = len(app.custody.signing.list(ADMIN, key_label="ops"))
    nonce = app.nonce()

    with (
        failing_audit_writes(_sqlite_store(app), kinds={"request.signed"}) as fault,
        pytest.raises(StoreUnavailable, match="the disk holding the database is full"),
    ):
        app.submit("ops", transaction(nonce))

    assert fault.hits == 1
    assert app.events(kind="request.signed") == []
    requests = app.custody.signing.list(ADMIN, key_label="ops")
    if sign_in_write_transaction:
        # One transaction: the request, its nonce and its submission event were rolled back with the signature.
        assert len(requests) == before
    else:
        # Two transactions: the request was recorded and claimed; it stays APPROVED without a signature.
        (waiting,) = [request for request in requests if request.state is RequestState.APPROVED]
        assert waiting.result is None
    # Once the audit log can be written again, the same transaction signs.
    if sign_in_write_transaction:
        assert_signed_by(app.submit("ops", transaction(nonce)), app.keys["ops"].address)
    assert app.custody.audit.verify_head().ok


def _sqlite_store(app: App) -> SqliteStore:
    # The store under the sealing layer, as the application was built on it: the fault wraps its connections.
    return cast(SqliteStore, app.custody._store)


OPS_WITHOUT_VELOCITY = """
[[rules]]
name = "ops-transactions-unlimited"
keys = ["ops"]
kinds = ["transaction"]
chain_ids = [1, 11155111]
action = "sign"
"""


def _velocity_then_unlimited(document: str) -> str:
    """The ops rule gains a velocity limit of two that freezes the key when hit, and a later rule signs ops
    transactions without one: the third request is decided "sign" by the later rule while the first one's
    breach freezes the key, in the same transaction."""
    cap = 'max_value_wei = "1000000000000000000"  # 1 ether\n'
    velocity = "velocity = { window_seconds = 3600, max_count = 2, freeze_on_breach = true }\n"
    assert cap in document
    return document.replace(cap, cap + velocity, 1) + OPS_WITHOUT_VELOCITY


@MODES
def test_a_key_frozen_by_the_submission_itself_signs_nothing_and_raises_no_false_alarm(
    make_app: AppFactory, sign_in_write_transaction: bool
) -> None:
    app = make_app(policy=_velocity_then_unlimited, sign_in_write_transaction=sign_in_write_transaction)
    for _ in range(2):
        assert_signed_by(app.submit_tx("ops"), app.keys["ops"].address)

    with pytest.raises(KeyFrozen, match="frozen"):
        app.submit_tx("ops")

    assert app.custody.keys.get_key(ADMIN, "ops").state is KeyState.FROZEN
    (third,) = [
        request
        for request in app.custody.signing.list(ADMIN, key_label="ops")
        if request.decision.rule == "ops-transactions-unlimited"
    ]
    # Decided "sign" and recorded APPROVED, but never signed: it waits for the unfreeze.
    assert third.state is RequestState.APPROVED
    assert_unsigned(third)
    assert app.events(kind="request.signed", request_id=third.request_id) == []
    assert len(app.events(kind="key.frozen")) == 1
    # The key's row changed in this very transaction, with its seal: nothing was written behind the daemon's
    # back, and nothing says so.
    assert app.events(kind="seal.mismatch") == []
    assert app.custody.sealer.last_mismatch is None

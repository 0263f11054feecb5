"""`[hsm] sign_in_write_transaction`: a request the policy signs at once is signed inside the transaction that
records it. The signature must still never leave the daemon without its record: it is returned only after the
transaction that stores it and its audit event commits, and a transaction that cannot commit leaves nothing,
not even the request. The same flows run with the option off, for comparison."""

from __future__ import annotations

from typing import cast

import pytest

from custody.domain.errors import StoreUnavailable
from custody.domain.requests import RequestState
from custody.store.sqlite import SqliteStore
from custody.testing.store_faults import failing_audit_writes
from tests.app.conftest import ADMIN, App, AppFactory, assert_signed_by, transaction

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

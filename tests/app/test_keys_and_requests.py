"""Keys made in the HSM and the requests made with them: who may create a key, what its address is, who sees
and cancels which request."""

from __future__ import annotations

import pytest
from eth_utils import keccak, to_checksum_address

from custody.domain.errors import AlreadyExists, NotFound, PermissionDenied, WrongState
from custody.domain.keys import KeyState
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState

from .conftest import ADMIN, ALICE, BACKEND, CAROL, App, assert_signed_by


def test_created_keys_carry_the_address_of_their_public_key(app: App) -> None:
    for label, key in app.keys.items():
        assert key.label == label
        assert key.state is KeyState.ACTIVE
        assert len(key.public_key) == 65 and key.public_key[0] == 4
        # Independent of custody's code: keccak of the 64-byte point, last 20 bytes, EIP-55 by eth-utils.
        assert key.address == to_checksum_address(keccak(key.public_key[1:])[-20:])
    assert {key.label for key in app.custody.keys.list_keys(BACKEND)} == {"ops", "treasury"}
    assert app.custody.keys.get_key(ALICE, "ops") == app.keys["ops"]
    created = {event.details["key"]: event for event in app.events(kind="key.created")}
    assert created["ops"].actor == "admin"
    assert created["ops"].details["address"] == app.keys["ops"].address


def test_only_admins_create_keys_and_a_label_is_taken_once(app: App) -> None:
    with pytest.raises(PermissionDenied):
        app.custody.keys.create_key(BACKEND, "sneaky")
    with pytest.raises(AlreadyExists, match="already exists"):
        app.custody.keys.create_key(ADMIN, "ops")
    assert {key.label for key in app.custody.keys.list_keys(ADMIN)} == {"ops", "treasury"}


def test_a_requester_sees_only_requests_on_its_keys(app: App) -> None:
    treasury_only = Principal("payroll", frozenset({Role.REQUESTER}), frozenset({"treasury"}))
    ops = app.submit_tx("ops")
    treasury = app.pending(caller=treasury_only)
    assert [request.request_id for request in app.custody.signing.list(treasury_only)] == [
        treasury.request_id
    ]
    # Someone who may not see a request learns nothing about it, not even that it exists.
    with pytest.raises(NotFound):
        app.custody.signing.get(treasury_only, ops.request_id)
    with pytest.raises(PermissionDenied):
        app.custody.signing.list(treasury_only, key_label="ops")
    # Approvers see every request.
    assert {request.request_id for request in app.custody.signing.list(ALICE)} == {
        ops.request_id,
        treasury.request_id,
    }


def test_a_requester_cancels_its_own_waiting_request_and_nothing_final(app: App) -> None:
    waiting = app.pending()
    with pytest.raises(PermissionDenied):
        app.custody.signing.cancel(CAROL, waiting.request_id, "not mine")
    cancelled = app.custody.signing.cancel(BACKEND, waiting.request_id, "wrong amount")
    assert cancelled.state is RequestState.CANCELLED
    signed = app.submit("ops", b"final", kind=PayloadKind.MESSAGE)
    assert_signed_by(signed, app.keys["ops"].address)
    with pytest.raises(WrongState):
        app.custody.signing.cancel(BACKEND, signed.request_id, "too late")
    with pytest.raises(NotFound):
        app.custody.signing.get(ADMIN, "req_" + "0" * 32)


def test_watching_a_request_ends_at_its_final_state(app: App) -> None:
    waiting = app.pending()
    app.approve(waiting, "alice")
    app.approve(waiting, "bob")
    seen = list(app.custody.signing.watch(BACKEND, waiting.request_id, is_active=lambda: True))
    assert [request.state for request in seen] == [RequestState.SIGNED]
    assert_signed_by(seen[0], app.keys["treasury"].address)

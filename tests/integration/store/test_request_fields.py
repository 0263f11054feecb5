"""The fields approval policies added to requests, and governance requests, survive a real SQLite file."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from eth_account import Account

from custody.domain.errors import InvalidInput, WrongState
from custody.domain.requests import (
    Decision,
    PayloadKind,
    QuorumTerm,
    RequestState,
    SignatureResult,
    SigningRequest,
)
from custody.store.base import Store

from .conftest import Database
from .helpers import (
    BASE_TIME,
    TestKey,
    later,
    make_governance_request,
    make_key,
    make_message_request,
    make_transaction_request,
    moved,
    sign_message,
)


@pytest.fixture
def treasury(store: Store) -> TestKey:
    test_key = make_key("treasury")
    store.insert_key(test_key.key)
    return test_key


def _raw_row(database: Database, request_id: str) -> dict[str, Any]:
    [row] = database.rows("SELECT * FROM requests WHERE request_id = ?", (request_id,))
    return row


def _with_approval_terms(request: SigningRequest, value: int) -> SigningRequest:
    return replace(
        request,
        decision=Decision(
            action="approve",
            rule="treasury-transfers",
            reason="transfers from treasury need 2 of treasury and 1 of security",
            policy_version=4,
            quorum=(QuorumTerm(group="treasury", threshold=2), QuorumTerm(group="security", threshold=1)),
            timelock_seconds=3600,
        ),
        expires_at=later(24 * 60),
        policy_trace=json.dumps(
            {"rules": [{"rule": "treasury-transfers", "matched": True, "conditions": ["key treasury: yes"]}]}
        ),
        value=value,
    )


@pytest.mark.parametrize(
    "value",
    [0, 10**17, 2**64 + 1, 2**255 + 12345, 2**256 - 1],
    ids=["zero", "0.1 ether", "above 64 bits", "above 255 bits", "largest uint256"],
)
def test_new_request_fields_round_trip(
    store: Store, database: Database, treasury: TestKey, value: int
) -> None:
    request = _with_approval_terms(make_transaction_request(treasury), value)
    store.insert_request(request)

    stored = store.get_request(request.request_id)
    assert stored == request
    assert stored is not None
    assert stored.value == value
    assert stored.decision.quorum == request.decision.quorum
    assert stored.decision.timelock_seconds == 3600
    assert stored.expires_at == later(24 * 60)
    assert stored.not_before is None
    raw = _raw_row(database, request.request_id)
    # The value is decimal text: no database integer type holds a uint256.
    assert raw["value_wei"] == str(value)
    assert json.loads(raw["quorum"]) == [
        {"group": "treasury", "threshold": 2},
        {"group": "security", "threshold": 1},
    ]


def test_a_request_without_approvals_keeps_the_defaults(store: Store, treasury: TestKey) -> None:
    request = make_message_request(treasury)
    store.insert_request(request)

    stored = store.get_request(request.request_id)
    assert stored == request
    assert stored is not None
    assert stored.decision.quorum == ()
    assert stored.decision.timelock_seconds == 0
    assert stored.expires_at is None
    assert stored.policy_trace == ""
    assert stored.value == 0


@pytest.mark.parametrize(("value", "shown"), [(2**256, str(2**256)), (-1, "-1")])
def test_value_outside_uint256_is_refused(store: Store, treasury: TestKey, value: int, shown: str) -> None:
    request = replace(make_transaction_request(treasury), value=value)

    with pytest.raises(
        InvalidInput, match=f"value: must be a wei amount between 0 and 2\\*\\*256 - 1, got {shown}"
    ):
        store.insert_request(request)
    assert store.list_requests() == []


def test_policy_change_names_no_key(store: Store, database: Database) -> None:
    request = make_governance_request(PayloadKind.POLICY_CHANGE)
    store.insert_request(request)

    stored = store.get_request(request.request_id)
    assert stored == request
    assert stored is not None
    assert (stored.key_id, stored.key_label) == ("", "")
    raw = _raw_row(database, request.request_id)
    # NULL in the database, so that the foreign key to keys holds for every request that names a key.
    assert raw["key_id"] is None
    assert raw["key_label"] is None
    assert raw["kind"] == "policy_change"
    assert store.list_requests() == [request]


def test_key_unfreeze_names_its_key(store: Store, database: Database, treasury: TestKey) -> None:
    request = make_governance_request(PayloadKind.KEY_UNFREEZE, treasury, payload=b'{"key":"treasury"}')
    store.insert_request(request)

    assert store.get_request(request.request_id) == request
    assert _raw_row(database, request.request_id)["key_id"] == treasury.key.key_id
    assert store.list_requests(key_label="treasury") == [request]


def test_policy_change_that_names_a_key_is_refused(store: Store, treasury: TestKey) -> None:
    request = replace(
        make_governance_request(PayloadKind.POLICY_CHANGE),
        key_id=treasury.key.key_id,
        key_label=treasury.key.label,
    )

    with pytest.raises(
        InvalidInput, match="key_id: a policy change concerns no key; leave key_id and key_label"
    ):
        store.insert_request(request)
    assert store.list_requests() == []


@pytest.mark.parametrize("kind", [PayloadKind.MESSAGE, PayloadKind.KEY_UNFREEZE])
def test_other_requests_must_name_a_key(store: Store, treasury: TestKey, kind: PayloadKind) -> None:
    request = replace(make_governance_request(kind, treasury), key_id="", key_label="")

    with pytest.raises(
        InvalidInput, match=f"key_id: a {kind.value} request must name its key by id and label"
    ):
        store.insert_request(request)
    assert store.list_requests() == []


def test_approval_under_a_time_lock_stores_not_before(store: Store, treasury: TestKey) -> None:
    request = _with_approval_terms(make_transaction_request(treasury), 10**17)
    store.insert_request(request)
    unlock = later(60)

    approved = store.transition_request(
        request.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1), not_before=unlock
    )

    assert approved == moved(request, RequestState.APPROVED, later(1), not_before=unlock)
    assert approved.not_before == unlock
    assert store.get_request(request.request_id) == approved
    # Later transitions keep the time-lock on record.
    cancelled = store.transition_request(
        request.request_id, RequestState.APPROVED, RequestState.CANCELLED, later(2), error="superseded"
    )
    assert cancelled.not_before == unlock


@pytest.mark.parametrize("target", [RequestState.REJECTED, RequestState.CANCELLED, RequestState.EXPIRED])
def test_only_approval_takes_a_time_lock(store: Store, treasury: TestKey, target: RequestState) -> None:
    request = make_transaction_request(treasury)
    store.insert_request(request)

    with pytest.raises(
        InvalidInput,
        match=f"not_before: only a request becoming APPROVED takes a time-lock, not one becoming {target.value}",
    ):
        store.transition_request(
            request.request_id, RequestState.PENDING_APPROVAL, target, later(1), not_before=later(60)
        )
    assert store.get_request(request.request_id) == request


@pytest.mark.parametrize("kind", [PayloadKind.POLICY_CHANGE, PayloadKind.KEY_UNFREEZE])
def test_governance_request_is_final_once_approved(
    store: Store, treasury: TestKey, kind: PayloadKind
) -> None:
    request = make_governance_request(kind, None if kind is PayloadKind.POLICY_CHANGE else treasury)
    store.insert_request(request)

    approved = store.transition_request(
        request.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
    )
    assert approved.is_final

    for target in (RequestState.SIGNED, RequestState.CANCELLED, RequestState.EXPIRED, RequestState.FAILED):
        # Opaque bytes, not a signature: the store refuses the transition whatever the result holds.
        result = SignatureResult(signature=bytes(65)) if target is RequestState.SIGNED else None
        with pytest.raises(
            WrongState,
            match=f"request {request.request_id} is a {kind.value} request that took effect when it was approved",
        ):
            store.transition_request(
                request.request_id, RequestState.APPROVED, target, later(2), result=result
            )
    assert store.get_request(request.request_id) == approved


@pytest.mark.parametrize("target", [RequestState.REJECTED, RequestState.EXPIRED, RequestState.CANCELLED])
def test_governance_request_can_end_while_pending(store: Store, target: RequestState) -> None:
    request = make_governance_request(PayloadKind.POLICY_CHANGE)
    store.insert_request(request)

    ended = store.transition_request(request.request_id, RequestState.PENDING_APPROVAL, target, later(1))
    assert ended == moved(request, target, later(1))


@pytest.mark.parametrize("target", [RequestState.SIGNED, RequestState.FAILED, RequestState.CANCELLED])
def test_leaving_approved_clears_the_claim(
    store: Store, database: Database, treasury: TestKey, target: RequestState
) -> None:
    request = make_message_request(treasury)
    store.insert_request(request)
    assert store.claim_signing(request.request_id, "worker-1", BASE_TIME, BASE_TIME + timedelta(minutes=5))
    raw = _raw_row(database, request.request_id)
    assert (raw["claim_holder"], raw["claim_until"]) == ("worker-1", "2024-05-01T12:05:00.123456Z")

    result = sign_message(treasury) if target is RequestState.SIGNED else None
    moved = store.transition_request(
        request.request_id, RequestState.APPROVED, target, later(1), result=result
    )

    if moved.result is not None:
        assert Account._recover_hash(moved.digest, signature=moved.result.signature) == treasury.key.address

    raw = _raw_row(database, request.request_id)
    assert (raw["claim_holder"], raw["claim_until"]) == (None, None)

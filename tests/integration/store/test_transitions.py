"""Request transitions are conditional updates that follow the state machine and nothing else."""

from __future__ import annotations

import pytest
from eth_account import Account

from custody.domain.errors import Aborted, InvalidInput, NotFound, WrongState
from custody.domain.requests import ALLOWED_TRANSITIONS, INITIAL_STATES, RequestState, SigningRequest
from custody.store.base import Store

from .helpers import TestKey, later, make_key, make_message_request, moved, sign_message

ALLOWED_FROM_INITIAL = [
    (source, target)
    for source, targets in ALLOWED_TRANSITIONS.items()
    if source in INITIAL_STATES
    for target in sorted(targets, key=lambda state: state.value)
]
FORBIDDEN_FROM_INITIAL = [
    (source, target)
    for source in sorted(INITIAL_STATES, key=lambda state: state.value)
    for target in RequestState
    if target not in ALLOWED_TRANSITIONS.get(source, frozenset())
]


@pytest.fixture
def ops(store: Store) -> TestKey:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    return test_key


def _insert(store: Store, test_key: TestKey, state: RequestState) -> SigningRequest:
    request = make_message_request(test_key, state=state)
    store.insert_request(request)
    return request


@pytest.mark.parametrize(("source", "target"), ALLOWED_FROM_INITIAL, ids=str)
def test_allowed_transition_succeeds(
    store: Store, ops: TestKey, source: RequestState, target: RequestState
) -> None:
    request = _insert(store, ops, source)
    result = sign_message(ops) if target is RequestState.SIGNED else None
    error = "the HSM refused the operation" if target is RequestState.FAILED else None

    stored = store.transition_request(
        request.request_id, source, target, later(2), result=result, error=error
    )

    assert stored == moved(request, target, later(2), result=result, error=error)
    assert store.get_request(request.request_id) == stored
    if result is not None:
        assert Account._recover_hash(request.digest, signature=result.signature) == ops.key.address


def test_two_step_path_to_signed(store: Store, ops: TestKey) -> None:
    request = _insert(store, ops, RequestState.PENDING_APPROVAL)
    store.transition_request(
        request.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
    )
    result = sign_message(ops)
    signed = store.transition_request(
        request.request_id, RequestState.APPROVED, RequestState.SIGNED, later(2), result=result
    )

    assert signed.state is RequestState.SIGNED
    assert signed.updated_at == later(2)
    assert signed.created_at == request.created_at
    assert signed.result == result


@pytest.mark.parametrize(("source", "target"), FORBIDDEN_FROM_INITIAL, ids=str)
def test_forbidden_transition_raises_wrong_state_and_leaves_the_row(
    store: Store, ops: TestKey, source: RequestState, target: RequestState
) -> None:
    request = _insert(store, ops, source)
    result = sign_message(ops) if target is RequestState.SIGNED else None

    with pytest.raises(WrongState, match=f"a request in state {source.value} cannot become {target.value}"):
        store.transition_request(request.request_id, source, target, later(2), result=result)
    assert store.get_request(request.request_id) == request


def test_final_states_cannot_move(store: Store, ops: TestKey) -> None:
    request = _insert(store, ops, RequestState.APPROVED)
    store.transition_request(
        request.request_id, RequestState.APPROVED, RequestState.SIGNED, later(1), result=sign_message(ops)
    )
    signed = store.get_request(request.request_id)

    for target in RequestState:
        with pytest.raises(WrongState):
            store.transition_request(request.request_id, RequestState.SIGNED, target, later(2))
    assert store.get_request(request.request_id) == signed


def test_stale_expected_state_is_aborted(store: Store, ops: TestKey) -> None:
    request = _insert(store, ops, RequestState.PENDING_APPROVAL)
    cancelled = store.transition_request(
        request.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, later(1)
    )

    with pytest.raises(
        Aborted,
        match=f"the request {request.request_id} is no longer in state PENDING_APPROVAL; it is now CANCELLED",
    ):
        store.transition_request(
            request.request_id, RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(2)
        )
    assert store.get_request(request.request_id) == cancelled


def test_losing_signer_does_not_overwrite_the_signature(store: Store, ops: TestKey) -> None:
    request = _insert(store, ops, RequestState.APPROVED)
    first = sign_message(ops)
    other_key = make_key("other")
    second = sign_message(other_key)
    store.transition_request(
        request.request_id, RequestState.APPROVED, RequestState.SIGNED, later(1), result=first
    )

    with pytest.raises(Aborted, match="it is now SIGNED"):
        store.transition_request(
            request.request_id, RequestState.APPROVED, RequestState.SIGNED, later(2), result=second
        )
    stored = store.get_request(request.request_id)
    assert stored is not None and stored.result == first
    assert Account._recover_hash(stored.digest, signature=stored.result.signature) == ops.key.address


def test_unknown_request_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="there is no request with id req_missing"):
        store.transition_request(
            "req_missing", RequestState.PENDING_APPROVAL, RequestState.APPROVED, later(1)
        )


def test_signed_needs_a_result(store: Store, ops: TestKey) -> None:
    request = _insert(store, ops, RequestState.APPROVED)

    with pytest.raises(
        InvalidInput, match="result: a request can only become SIGNED together with its signature"
    ):
        store.transition_request(request.request_id, RequestState.APPROVED, RequestState.SIGNED, later(1))
    assert store.get_request(request.request_id) == request


def test_only_signed_carries_a_result(store: Store, ops: TestKey) -> None:
    request = _insert(store, ops, RequestState.APPROVED)

    with pytest.raises(InvalidInput, match="result: a request becoming FAILED cannot carry a signature"):
        store.transition_request(
            request.request_id, RequestState.APPROVED, RequestState.FAILED, later(1), result=sign_message(ops)
        )
    assert store.get_request(request.request_id) == request


def test_naive_transition_time_is_refused(store: Store, ops: TestKey) -> None:
    request = _insert(store, ops, RequestState.PENDING_APPROVAL)

    with pytest.raises(InvalidInput, match="at: a time without a time zone"):
        store.transition_request(
            request.request_id,
            RequestState.PENDING_APPROVAL,
            RequestState.APPROVED,
            later(1).replace(tzinfo=None),
        )
    assert store.get_request(request.request_id) == request

"""Keys and requests survive a trip through a real SQLite file, field for field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak

from custody.domain.errors import (
    Aborted,
    AlreadyExists,
    InvalidInput,
    NotFound,
    WrongState,
)
from custody.domain.keys import KeyState
from custody.domain.requests import INITIAL_STATES, RequestState
from custody.store import codec
from custody.store.base import Store

from .conftest import Database
from .helpers import (
    BASE_TIME,
    later,
    make_key,
    make_message_request,
    make_transaction_request,
    moved,
    sign_message,
    sign_transaction,
)


def test_key_round_trip(store: Store, database: Database) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)

    assert store.get_key("ops") == test_key.key
    # A second store on the same file reads what the first one committed.
    other = database.open()
    try:
        assert other.get_key("ops") == test_key.key
    finally:
        other.close()


def test_unknown_key_is_none(store: Store) -> None:
    assert store.get_key("nobody") is None


def test_list_keys_by_label(store: Store) -> None:
    keys = [make_key(label).key for label in ("treasury", "ops", "grants")]
    for key in keys:
        store.insert_key(key)

    assert [key.label for key in store.list_keys()] == ["grants", "ops", "treasury"]
    assert set(store.list_keys()) == set(keys)


def test_duplicate_label_is_refused(store: Store) -> None:
    first = make_key("ops").key
    store.insert_key(first)
    clash = replace(make_key("other").key, label="ops")

    with pytest.raises(AlreadyExists, match="a key labelled ops already exists"):
        store.insert_key(clash)
    assert store.list_keys() == [first]


def test_duplicate_key_id_is_refused(store: Store) -> None:
    first = make_key("ops").key
    store.insert_key(first)

    with pytest.raises(AlreadyExists, match=f"a key with id {first.key_id} already exists"):
        store.insert_key(replace(first, label="ops2"))
    assert store.list_keys() == [first]


def test_key_state_changes_conditionally(store: Store) -> None:
    store.insert_key(make_key("ops").key)

    frozen = store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(1))
    assert frozen.state is KeyState.FROZEN
    assert store.get_key("ops") == frozen

    with pytest.raises(Aborted, match="no longer in state ACTIVE; it is now FROZEN"):
        store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, later(2))
    with pytest.raises(NotFound, match="no key labelled ghost"):
        store.set_key_state("ghost", KeyState.ACTIVE, KeyState.FROZEN, later(2))

    assert store.set_key_state("ops", KeyState.FROZEN, KeyState.ACTIVE, later(3)).state is KeyState.ACTIVE


def test_request_without_result_round_trip(store: Store) -> None:
    test_key = make_key("treasury")
    store.insert_key(test_key.key)
    request = make_transaction_request(test_key, state=RequestState.PENDING_APPROVAL)
    store.insert_request(request)

    stored = store.get_request(request.request_id)
    assert stored == request
    assert stored is not None
    assert stored.result is None
    assert stored.error is None
    assert stored.decision.rule is None


def test_signed_transaction_round_trip(store: Store) -> None:
    test_key = make_key("treasury")
    store.insert_key(test_key.key)
    request = make_transaction_request(test_key, state=RequestState.APPROVED)
    store.insert_request(request)
    result = sign_transaction(test_key)

    returned = store.transition_request(
        request.request_id, RequestState.APPROVED, RequestState.SIGNED, later(5), result=result
    )
    stored = store.get_request(request.request_id)

    assert stored == returned == moved(request, RequestState.SIGNED, later(5), result=result)
    assert stored is not None and stored.result is not None
    # The stored bytes still make a valid transaction signed by the key, and the digest and hash agree.
    assert stored.result.signed_tx is not None
    assert Account.recover_transaction(stored.result.signed_tx) == test_key.key.address
    assert (
        Account._recover_hash(
            stored.digest, signature=stored.result.signature[:64] + bytes([stored.result.signature[64] + 27])
        )
        == test_key.key.address
    )
    assert stored.result.tx_hash == keccak(stored.result.signed_tx)


def test_signed_message_round_trip(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = make_message_request(test_key, text="gm", summary={"text": "gm", "note": "ünïcode ✓"})
    store.insert_request(request)
    result = sign_message(test_key, "gm")

    store.transition_request(
        request.request_id, RequestState.APPROVED, RequestState.SIGNED, later(1), result=result
    )
    stored = store.get_request(request.request_id)

    assert stored is not None and stored.result is not None
    assert stored.result.signed_tx is None
    assert stored.result.tx_hash is None
    assert stored.summary == {"text": "gm", "note": "ünïcode ✓"}
    assert Account.recover_message(encode_defunct(text="gm"), signature=stored.result.signature) == (
        test_key.key.address
    )
    assert Account._recover_hash(stored.digest, signature=stored.result.signature) == test_key.key.address


def test_times_come_back_as_aware_utc_with_microseconds(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    # The same instant written in UTC+2: it must come back as UTC, not as a shifted wall-clock time.
    created = datetime(2024, 5, 1, 14, 0, 0, 654321, tzinfo=timezone(timedelta(hours=2)))
    request = make_message_request(test_key, created_at=created)
    store.insert_request(request)

    stored = store.get_request(request.request_id)
    assert stored is not None
    assert stored.created_at == created
    assert stored.created_at.tzinfo is UTC
    assert stored.created_at.hour == 12
    assert stored.created_at.microsecond == 654321


def test_naive_times_are_refused(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    naive = make_message_request(test_key, created_at=datetime(2024, 5, 1, 12, 0))

    with pytest.raises(InvalidInput, match="created_at: a time without a time zone"):
        store.insert_request(naive)
    with pytest.raises(InvalidInput, match="at: a time without a time zone"):
        store.set_key_state("ops", KeyState.ACTIVE, KeyState.FROZEN, datetime(2024, 5, 1, 12, 0))
    assert store.list_requests() == []
    key = store.get_key("ops")
    assert key is not None and key.state is KeyState.ACTIVE


def test_duplicate_request_id_is_refused(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = make_message_request(test_key)
    store.insert_request(request)

    with pytest.raises(AlreadyExists, match=f"a request with id {request.request_id} already exists"):
        store.insert_request(replace(request, payload=b"something else"))
    assert store.get_request(request.request_id) == request


@pytest.mark.parametrize("state", [state for state in RequestState if state not in INITIAL_STATES])
def test_request_must_start_in_an_initial_state(store: Store, state: RequestState) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)

    with pytest.raises(WrongState, match=f"cannot be created in state {state.value}"):
        store.insert_request(make_message_request(test_key, state=state))
    assert store.list_requests() == []


@pytest.mark.parametrize("state", [RequestState.PENDING_APPROVAL, RequestState.APPROVED, RequestState.DENIED])
def test_initial_states_are_accepted(store: Store, state: RequestState) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = make_message_request(test_key, state=state)
    store.insert_request(request)
    assert store.get_request(request.request_id) == request


def test_new_request_cannot_carry_a_signature(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = replace(make_message_request(test_key), result=sign_message(test_key))

    with pytest.raises(InvalidInput, match="result: a new request cannot already carry a signature"):
        store.insert_request(request)
    assert store.list_requests() == []


def test_request_for_unknown_key_is_refused(store: Store) -> None:
    test_key = make_key("ops")  # never inserted

    with pytest.raises(NotFound, match=f"no key with id {test_key.key.key_id}"):
        store.insert_request(make_message_request(test_key))
    assert store.list_requests() == []


def test_request_with_mismatched_label_is_refused(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = replace(make_message_request(test_key), key_label="treasury")

    with pytest.raises(InvalidInput, match=r"key_label: the key with id \w+ is labelled ops, not treasury"):
        store.insert_request(request)


def test_request_with_mismatched_label_is_refused_after_reading_the_key(store: Store) -> None:
    """In the submission's transaction the key was just read; the label check still holds against it."""
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = replace(make_message_request(test_key), key_label="treasury")

    with store.transaction() as tx:
        assert tx.get_key("ops") == test_key.key
        with pytest.raises(
            InvalidInput, match=r"key_label: the key with id \w+ is labelled ops, not treasury"
        ):
            tx.insert_request(request)
    assert store.list_requests() == []


def test_stored_times_in_another_form_are_refused() -> None:
    # Only the fixed-width UTC form the store writes is read back; anything else is a database edited by hand.
    assert codec.decode_time("2024-05-01T12:00:00.000001Z") == datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
    for text in ("2024-05-01 12:00:00.000001Z", "2024-05-01T12:00:00.000001+00:00", "2024-05-01T12:00:00Z"):
        with pytest.raises(ValueError, match="does not match format"):
            codec.decode_time(text)


def test_chain_id_beyond_bigint_is_refused(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    request = replace(make_transaction_request(test_key), chain_id=2**64)

    with pytest.raises(InvalidInput, match="chain_id: must be between 0 and"):
        store.insert_request(request)


def test_unknown_request_is_none(store: Store) -> None:
    assert store.get_request("req_0000000000000000000000000000000") is None


@pytest.fixture
def populated(store: Store) -> Store:
    """Requests over two keys, two requesters and three states, each created a minute after the last."""
    ops, treasury = make_key("ops"), make_key("treasury")
    store.insert_key(ops.key)
    store.insert_key(treasury.key)
    layout = [
        (ops, "backend", RequestState.APPROVED),
        (treasury, "backend", RequestState.PENDING_APPROVAL),
        (ops, "carol", RequestState.DENIED),
        (treasury, "carol", RequestState.PENDING_APPROVAL),
        (ops, "backend", RequestState.PENDING_APPROVAL),
        (treasury, "backend", RequestState.APPROVED),
    ]
    for index, (test_key, requester, state) in enumerate(layout):
        store.insert_request(
            make_message_request(
                test_key,
                suffix=index,
                requester=requester,
                state=state,
                created_at=later(index),
                text=f"m{index}",
            )
        )
    return store


def _texts(requests: object) -> list[str]:
    return [request.payload.decode() for request in requests]  # type: ignore[attr-defined]


def test_list_all_newest_first(populated: Store) -> None:
    assert _texts(populated.list_requests()) == ["m5", "m4", "m3", "m2", "m1", "m0"]


def test_list_by_state(populated: Store) -> None:
    assert _texts(populated.list_requests(state=RequestState.PENDING_APPROVAL)) == ["m4", "m3", "m1"]
    assert _texts(populated.list_requests(state=RequestState.DENIED)) == ["m2"]
    assert populated.list_requests(state=RequestState.SIGNED) == []


def test_list_by_key(populated: Store) -> None:
    assert _texts(populated.list_requests(key_label="ops")) == ["m4", "m2", "m0"]
    assert _texts(populated.list_requests(key_label="treasury")) == ["m5", "m3", "m1"]
    assert populated.list_requests(key_label="unknown") == []


def test_list_by_requester(populated: Store) -> None:
    assert _texts(populated.list_requests(requester="carol")) == ["m3", "m2"]


def test_list_filters_combine(populated: Store) -> None:
    found = populated.list_requests(
        state=RequestState.PENDING_APPROVAL, key_label="treasury", requester="backend"
    )
    assert _texts(found) == ["m1"]


def test_list_limit_is_clamped(populated: Store) -> None:
    assert _texts(populated.list_requests(limit=2)) == ["m5", "m4"]
    assert _texts(populated.list_requests(limit=0)) == ["m5"]
    assert _texts(populated.list_requests(limit=-3)) == ["m5"]
    assert len(populated.list_requests(limit=10**9)) == 6


def test_list_limit_caps_at_one_thousand(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    for index in range(1005):
        store.insert_request(make_message_request(test_key, suffix=index, created_at=BASE_TIME))
    assert len(store.list_requests(limit=5000)) == 1000


def test_equal_times_order_by_request_id_descending(store: Store) -> None:
    test_key = make_key("ops")
    store.insert_key(test_key.key)
    for suffix in (3, 1, 2):
        store.insert_request(make_message_request(test_key, suffix=suffix, created_at=BASE_TIME))
    assert [request.request_id[-1] for request in store.list_requests()] == ["3", "2", "1"]

"""Nonce protection in the SQLite store: one holder per (key, chain, scope, nonce), handed on to an explicit
replacement, released when the holder ends unsigned, and backed by the table's primary key."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account

from custody.domain.errors import Aborted, AlreadyExists, InvalidInput, NotFound
from custody.domain.requests import RequestState, SigningRequest
from custody.store.base import NonceUse, Store

from .conftest import Database
from .helpers import TRANSACTION, TestKey, later, make_key, make_transaction_request, sign_transaction

CHAIN = TRANSACTION["chainId"]
NONCE = TRANSACTION["nonce"]


def _use(
    request: SigningRequest, nonce: int = NONCE, *, scope: str = "account", minutes: float = 0
) -> NonceUse:
    return NonceUse(
        key_id=request.key_id,
        chain_id=CHAIN,
        scope=scope,
        nonce=nonce,
        request_id=request.request_id,
        payload_hash=request.payload_hash,
        created_at=later(minutes),
    )


def _requests(store: Store, test_key: TestKey, count: int, *, first: int = 10) -> list[SigningRequest]:
    made = []
    for suffix in range(first, first + count):
        request = make_transaction_request(test_key, suffix=suffix)
        # Each request carries a payload of its own, as different transactions for one nonce would.
        payload = request.payload + str(suffix).encode()
        request = dataclasses.replace(request, payload=payload, payload_hash=hashlib.sha256(payload).digest())
        store.insert_request(request)
        made.append(request)
    return made


@pytest.fixture
def treasury(store: Store) -> TestKey:
    test_key = make_key("treasury")
    store.insert_key(test_key.key)
    return test_key


def test_reserve_and_read_the_holder(store: Store, treasury: TestKey) -> None:
    (request,) = _requests(store, treasury, 1)
    assert store.nonce_holder(request.key_id, CHAIN, "account", NONCE) is None
    store.reserve_nonce(_use(request))
    assert store.nonce_holder(request.key_id, CHAIN, "account", NONCE) == _use(request)
    # Another nonce, chain, scope or key is a different row.
    assert store.nonce_holder(request.key_id, CHAIN, "account", NONCE + 1) is None
    assert store.nonce_holder(request.key_id, 1, "account", NONCE) is None
    assert store.nonce_holder(request.key_id, CHAIN, "safe:0x" + "22" * 20, NONCE) is None
    assert store.nonce_holder("another-key", CHAIN, "account", NONCE) is None


def test_a_second_holder_is_refused_naming_the_first(store: Store, treasury: TestKey) -> None:
    first, second = _requests(store, treasury, 2)
    store.reserve_nonce(_use(first))
    message = (
        f"nonce {NONCE} of key {treasury.key.key_id} on chain {CHAIN} is already held by request"
        f" {first.request_id}"
    )
    with pytest.raises(AlreadyExists) as refused:
        store.reserve_nonce(_use(second))
    assert str(refused.value) == message
    # The holder itself asking again is refused too: a nonce is reserved once.
    with pytest.raises(AlreadyExists, match="is already held by request"):
        store.reserve_nonce(_use(first, minutes=1))
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(first)
    # The other request can hold other nonces, and the same nonce in another scope.
    store.reserve_nonce(_use(second, NONCE + 1))
    store.reserve_nonce(_use(second, scope="safe:0x" + "22" * 20))


def test_nonces_up_to_256_bits_are_distinct_rows(store: Store, treasury: TestKey) -> None:
    requests = _requests(store, treasury, 4)
    nonces = [0, 2**64 - 1, 2**64, 2**256 - 1]
    for request, nonce in zip(requests, nonces, strict=True):
        store.reserve_nonce(_use(request, nonce))
    for request, nonce in zip(requests, nonces, strict=True):
        holder = store.nonce_holder(treasury.key.key_id, CHAIN, "account", nonce)
        assert holder is not None and holder.request_id == request.request_id and holder.nonce == nonce
    for bad in (-1, 2**256):
        with pytest.raises(InvalidInput, match="must be a nonce between 0 and 2\\*\\*256 - 1"):
            store.reserve_nonce(_use(requests[0], bad))
        with pytest.raises(InvalidInput, match="must be a nonce between"):
            store.nonce_holder(treasury.key.key_id, CHAIN, "account", bad)


def test_an_unknown_request_cannot_hold_a_nonce(store: Store, treasury: TestKey) -> None:
    (request,) = _requests(store, treasury, 1)
    ghost = dataclasses.replace(_use(request), request_id="req_ghost")
    with pytest.raises(NotFound, match="there is no request with id req_ghost to hold nonce 7"):
        store.reserve_nonce(ghost)
    with pytest.raises(NotFound, match="there is no request with id req_ghost to take over nonce 7"):
        store.move_nonce(ghost, request.request_id)


def test_move_hands_the_nonce_to_the_replacement(store: Store, treasury: TestKey) -> None:
    original, replacement, bystander = _requests(store, treasury, 3)
    store.reserve_nonce(_use(original))
    store.move_nonce(_use(replacement, minutes=5), original.request_id)
    holder = store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE)
    assert holder == _use(replacement, minutes=5)
    assert holder is not None and holder.payload_hash == replacement.payload_hash

    # Only the holder can hand the nonce on.
    with pytest.raises(Aborted) as refused:
        store.move_nonce(_use(bystander), original.request_id)
    assert str(refused.value) == (
        f"nonce {NONCE} of key {treasury.key.key_id} on chain {CHAIN} is not held by request"
        f" {original.request_id}; request {replacement.request_id} holds it"
    )
    with pytest.raises(Aborted, match=r"is not held by request req_\w+; nobody holds it"):
        store.move_nonce(_use(bystander, NONCE + 1), original.request_id)
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(replacement, minutes=5)


@pytest.mark.parametrize(
    ("path", "final"),
    [
        ([RequestState.REJECTED], RequestState.REJECTED),
        ([RequestState.EXPIRED], RequestState.EXPIRED),
        ([RequestState.CANCELLED], RequestState.CANCELLED),
        ([RequestState.FAILED], RequestState.FAILED),
        ([RequestState.APPROVED, RequestState.CANCELLED], RequestState.CANCELLED),
        ([RequestState.APPROVED, RequestState.EXPIRED], RequestState.EXPIRED),
        ([RequestState.APPROVED, RequestState.FAILED], RequestState.FAILED),
    ],
)
def test_a_holder_ending_unsigned_releases_its_nonce(
    store: Store, treasury: TestKey, path: list[RequestState], final: RequestState
) -> None:
    holder, other, next_taker = _requests(store, treasury, 3)
    store.reserve_nonce(_use(holder))
    store.reserve_nonce(_use(other, NONCE + 1))
    state = RequestState.PENDING_APPROVAL
    for step, target in enumerate(path):
        store.transition_request(holder.request_id, state, target, later(step + 1))
        state = target
        if target is not final:
            # Waiting or approved, the request still holds its nonce.
            assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(holder)
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) is None
    # Only the ended request's nonce was released, and its nonce is free for another request.
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE + 1) == _use(other, NONCE + 1)
    store.reserve_nonce(_use(next_taker))


def test_a_signed_holder_keeps_its_nonce(store: Store, treasury: TestKey) -> None:
    request = make_transaction_request(treasury, suffix=50, state=RequestState.APPROVED)
    store.insert_request(request)
    store.reserve_nonce(_use(request))
    signed = store.transition_request(
        request.request_id,
        RequestState.APPROVED,
        RequestState.SIGNED,
        later(1),
        result=sign_transaction(treasury),
    )
    assert signed.result is not None and signed.result.signed_tx is not None
    assert Account.recover_transaction(signed.result.signed_tx) == treasury.key.address
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(request)


def test_the_release_rolls_back_with_its_transaction(store: Store, treasury: TestKey) -> None:
    (request,) = _requests(store, treasury, 1)
    store.reserve_nonce(_use(request))

    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted), store.transaction() as tx:
        tx.transition_request(
            request.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, later(1)
        )
        assert tx.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) is None
        raise Interrupted
    stored = store.get_request(request.request_id)
    assert stored is not None and stored.state is RequestState.PENDING_APPROVAL
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(request)


def test_replacement_in_one_transaction(store: Store, treasury: TestKey) -> None:
    """The daemon's replacement flow: store the new request marked as replacing the old one, hand it the
    nonce, and cancel the old one, all at once. The cancellation does not release the nonce that moved."""
    (original,) = _requests(store, treasury, 1)
    store.reserve_nonce(_use(original))
    replacement = dataclasses.replace(
        make_transaction_request(treasury, suffix=60), replaces=original.request_id
    )
    with store.transaction() as tx:
        tx.insert_request(replacement)
        tx.move_nonce(_use(replacement, minutes=2), original.request_id)
        tx.transition_request(
            original.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, later(2)
        )
    assert store.get_request(replacement.request_id) == replacement
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(replacement, minutes=2)


def _signed(store: Store, treasury: TestKey, suffix: int) -> SigningRequest:
    request = make_transaction_request(treasury, suffix=suffix, state=RequestState.APPROVED)
    store.insert_request(request)
    store.reserve_nonce(_use(request))
    store.transition_request(
        request.request_id,
        RequestState.APPROVED,
        RequestState.SIGNED,
        later(1),
        result=sign_transaction(treasury),
    )
    return request


def _replacement(store: Store, treasury: TestKey, replaced: SigningRequest, suffix: int) -> SigningRequest:
    replacement = dataclasses.replace(
        make_transaction_request(treasury, suffix=suffix), replaces=replaced.request_id
    )
    payload = replacement.payload + b" "
    replacement = dataclasses.replace(
        replacement, payload=payload, payload_hash=hashlib.sha256(payload).digest()
    )
    store.insert_request(replacement)
    store.move_nonce(_use(replacement, minutes=2), replaced.request_id)
    return replacement


@pytest.mark.parametrize(
    "final", [RequestState.REJECTED, RequestState.EXPIRED, RequestState.CANCELLED, RequestState.FAILED]
)
def test_a_replacement_ending_unsigned_gives_the_nonce_back_to_the_signed_request(
    store: Store, treasury: TestKey, final: RequestState
) -> None:
    """A signature for the nonce exists, so the nonce is not free: a different payload for it would otherwise
    be signed without the replacement's approvals."""
    signed = _signed(store, treasury, 70)
    replacement = _replacement(store, treasury, signed, 71)
    store.transition_request(replacement.request_id, RequestState.PENDING_APPROVAL, final, later(3))
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(signed)
    (newcomer,) = _requests(store, treasury, 1, first=72)
    with pytest.raises(AlreadyExists, match=f"already held by request {signed.request_id}"):
        store.reserve_nonce(_use(newcomer))


def test_the_nonce_goes_back_past_cancelled_links_to_the_signed_request(
    store: Store, treasury: TestKey
) -> None:
    signed = _signed(store, treasury, 80)
    first = _replacement(store, treasury, signed, 81)
    second = _replacement(store, treasury, first, 82)
    store.transition_request(
        first.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, later(3)
    )
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(second, minutes=2)
    store.transition_request(
        second.request_id, RequestState.PENDING_APPROVAL, RequestState.REJECTED, later(4)
    )
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(signed)


def test_a_replacement_of_an_unsigned_request_ending_unsigned_frees_the_nonce(
    store: Store, treasury: TestKey
) -> None:
    (original,) = _requests(store, treasury, 1, first=90)
    store.reserve_nonce(_use(original))
    replacement = _replacement(store, treasury, original, 91)
    store.transition_request(
        original.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, later(2)
    )
    store.transition_request(
        replacement.request_id, RequestState.PENDING_APPROVAL, RequestState.CANCELLED, later(3)
    )
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) is None


def test_replaces_round_trips_and_must_name_a_request(store: Store, treasury: TestKey) -> None:
    (original,) = _requests(store, treasury, 1)
    assert original.replaces is None
    assert store.get_request(original.request_id) == original
    replacement = dataclasses.replace(
        make_transaction_request(treasury, suffix=70), replaces=original.request_id
    )
    store.insert_request(replacement)
    stored = store.get_request(replacement.request_id)
    assert stored is not None and stored.replaces == original.request_id
    listed = {request.request_id: request.replaces for request in store.list_requests()}
    assert listed == {original.request_id: None, replacement.request_id: original.request_id}
    orphan = dataclasses.replace(make_transaction_request(treasury, suffix=71), replaces="req_nowhere")
    with pytest.raises(
        NotFound, match=f"request {orphan.request_id} replaces request req_nowhere, which does"
    ):
        store.insert_request(orphan)
    assert store.get_request(orphan.request_id) is None


RACERS = 16
ROUNDS = 20


def test_racing_threads_get_one_holder_per_nonce(database: Database) -> None:
    setup = database.open()
    test_key = make_key("treasury")
    setup.insert_key(test_key.key)
    requests = _requests(setup, test_key, RACERS)
    # Separate store objects, so the threads meet at SQLite's own lock and the primary key, not only at the
    # in-process write lock.
    stores = [database.open() for _ in range(RACERS)]
    try:
        for round_number in range(ROUNDS):
            start = threading.Barrier(RACERS)

            def reserve(racer: int, nonce: int, start: threading.Barrier) -> str:
                start.wait(timeout=30)
                try:
                    stores[racer].reserve_nonce(_use(requests[racer], nonce))
                except AlreadyExists as lost:
                    assert f"nonce {nonce} of key {test_key.key.key_id}" in str(lost)
                    return "lost"
                return "won"

            with ThreadPoolExecutor(max_workers=RACERS) as pool:
                outcomes = list(pool.map(reserve, range(RACERS), [round_number] * RACERS, [start] * RACERS))
            assert outcomes.count("won") == 1, outcomes
            holder = setup.nonce_holder(test_key.key.key_id, CHAIN, "account", round_number)
            assert holder is not None
            assert holder.request_id == requests[outcomes.index("won")].request_id
    finally:
        for store in [setup, *stores]:
            store.close()


def test_the_primary_key_refuses_a_second_holder_written_past_the_store(
    store: Store, treasury: TestKey, database: Database
) -> None:
    first, second = _requests(store, treasury, 2)
    store.reserve_nonce(_use(first))
    with pytest.raises(database.integrity_error, match=r"UNIQUE constraint failed: nonces|nonces\w*_pkey"):
        database.execute(
            "INSERT INTO nonces (key_id, chain_id, scope, nonce, request_id, payload_hash, created_at)"
            " VALUES (?, ?, 'account', ?, ?, ?, ?)",
            (treasury.key.key_id, CHAIN, str(NONCE), second.request_id, second.payload_hash, "x"),
        )


def test_a_nonce_read_free_in_a_transaction_is_reserved_once(store: Store, treasury: TestKey) -> None:
    """The submission's flow: the holder is read (free) and the nonce reserved in one transaction. That read
    spares the reservation its own; once reserved, the nonce is held for the rest of the transaction too."""
    first, second = _requests(store, treasury, 2)
    with store.transaction() as tx:
        assert tx.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) is None
        tx.reserve_nonce(_use(first))
        with pytest.raises(AlreadyExists, match=f"is already held by request {first.request_id}"):
            tx.reserve_nonce(_use(second))
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(first)


def test_a_request_stored_in_the_transaction_holds_its_nonce(store: Store, treasury: TestKey) -> None:
    request = make_transaction_request(treasury, suffix=70)
    with store.transaction() as tx:
        tx.insert_request(request)
        tx.reserve_nonce(_use(request))
        ghost = dataclasses.replace(_use(request, NONCE + 1), request_id="req_ghost")
        with pytest.raises(NotFound, match="there is no request with id req_ghost to hold nonce 8"):
            tx.reserve_nonce(ghost)
    assert store.nonce_holder(treasury.key.key_id, CHAIN, "account", NONCE) == _use(request)

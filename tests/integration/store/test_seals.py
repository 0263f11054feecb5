"""The seals table on both backends: a seal is stored per subject, replaced by a later one, and read back for
exactly the subjects asked for, in a transaction or on the store."""

from __future__ import annotations

from custody.store.base import Store


def test_a_seal_is_stored_replaced_and_read_back_by_subject(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_seal("key:ops", b"\x01" * 32)
        tx.put_seal("policy:1", b"\x02" * 32)
        assert tx.seals(["key:ops"]) == {"key:ops": b"\x01" * 32}

    store.put_seal("key:ops", b"\x03" * 32)

    assert store.seals(["key:ops", "policy:1", "request:absent:decision"]) == {
        "key:ops": b"\x03" * 32,
        "policy:1": b"\x02" * 32,
    }
    assert store.seals([]) == {}


def test_a_seal_written_in_a_transaction_that_rolls_back_is_not_stored(store: Store) -> None:
    class Abandoned(Exception):
        pass

    try:
        with store.transaction() as tx:
            tx.put_seal("key:treasury", b"\x04" * 32)
            raise Abandoned
    except Abandoned:
        pass

    assert store.seals(["key:treasury"]) == {}

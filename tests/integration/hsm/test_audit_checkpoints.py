"""Audit checkpoints signed by the real token while other writers keep writing, on SQLite and PostgreSQL.

The store's write transaction is the write lock of every replica sharing the database, so the HSM must sign a
checkpoint outside it: a slow HSM may delay the checkpoint, never the writers. The HSM here is the real
SoftHSM2 adapter, wrapped only so that its Ed25519 signing waits until the test lets it go on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from custody.app.audit import AuditUseCases
from custody.app.custody import utc_now
from custody.audit.chain import CHECKPOINT_KIND, checkpoint_statement, verify_events
from custody.audit.events import AuditEvent
from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.store import open_store
from custody.store.base import Store
from tests.integration.store.conftest import BACKENDS
from tests.integration.store.postgres_databases import postgres_database
from tests.softhsm_tokens import MAIN_PIN, MAIN_TOKEN_LABEL, SoftHsmSetup

# Long enough for any real wait on this machine; a writer held up by the checkpoint would wait for ever.
WAIT_SECONDS = 30.0


class HeldSigningHsm:
    """The real HSM adapter, except that each Ed25519 signature waits for ``release`` once it has announced
    itself on ``signing``: a stand-in for an HSM that is slow to answer."""

    def __init__(self, hsm: Pkcs11Hsm) -> None:
        self._hsm = hsm
        self.signing = threading.Semaphore(0)
        self.release = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._hsm, name)

    def sign_ed25519(self, key_id: bytes, data: bytes) -> bytes:
        self.signing.release()
        if not self.release.wait(WAIT_SECONDS):
            raise TimeoutError("the test never released the held signature")
        return self._hsm.sign_ed25519(key_id, data)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def hsm(softhsm: SoftHsmSetup) -> Iterator[HeldSigningHsm]:
    adapter = Pkcs11Hsm(softhsm.module_path, MAIN_TOKEN_LABEL, MAIN_PIN)
    yield HeldSigningHsm(adapter)
    adapter.close()


class Stores:
    """Stores on the test's database, as replicas open them; all closed at the end of the test."""

    def __init__(self, url: str, base_dir: Path) -> None:
        self._url = url
        self._base_dir = base_dir
        self.opened: list[Store] = []

    def open(self) -> Store:
        store = open_store(self._url, self._base_dir)
        self.opened.append(store)
        return store


@pytest.fixture
def stores(database_url: str, tmp_path: Path) -> Iterator[Stores]:
    made = Stores(database_url, tmp_path)
    yield made
    for store in made.opened:
        store.close()


def audit_on(store: Store, hsm: HeldSigningHsm) -> AuditUseCases:
    audit = AuditUseCases(store, hsm, utc_now)  # type: ignore[arg-type]
    audit.open()
    return audit


def write_event(audit: AuditUseCases, store: Store, index: int) -> AuditEvent:
    with store.transaction() as tx:
        return audit.record(tx, "backend", "request.submitted", f"req_{index:032x}", nonce=index)


def checkpoint_in_thread(audit: AuditUseCases) -> tuple[threading.Thread, list[AuditEvent | None]]:
    result: list[AuditEvent | None] = []
    thread = threading.Thread(target=lambda: result.append(audit.checkpoint()), name="checkpoint")
    thread.start()
    return thread, result


def assert_verifies_with_checkpoints(store: Store, audit: AuditUseCases, checkpoints: int) -> None:
    events = list(store.iter_audit_events())
    verification = verify_events(iter(events), public_key=audit.public_key)
    assert verification.ok, verification.problem
    assert verification.checkpoints_checked == checkpoints
    # Each checkpoint's signature, checked here with cryptography against the key the HSM reports.
    for event in events:
        if event.kind == CHECKPOINT_KIND:
            covered = events[event.sequence - 2]
            Ed25519PublicKey.from_public_bytes(audit.public_key).verify(
                bytes.fromhex(event.details["signature"]),
                checkpoint_statement(covered.sequence, covered.hash),
            )


def test_a_writer_commits_while_the_hsm_signs_a_checkpoint(hsm: HeldSigningHsm, stores: Stores) -> None:
    store = stores.open()
    audit = audit_on(store, hsm)
    for index in range(3):
        write_event(audit, store, index)

    checkpointing, outcome = checkpoint_in_thread(audit)
    try:
        assert hsm.signing.acquire(timeout=WAIT_SECONDS), "the checkpoint never reached the HSM"
        # Another writer, on a store of its own as on another replica: it must not wait for the HSM.
        replica = stores.open()
        written: list[AuditEvent] = []
        writer = threading.Thread(target=lambda: written.append(write_event(audit, replica, 3)))
        writer.start()
        writer.join(WAIT_SECONDS)
        assert not writer.is_alive(), "the write waited for the HSM's checkpoint signature"
        assert not hsm.release.is_set()
        assert written and store.audit_head() == written[0] and written[0].sequence == 4
    finally:
        hsm.release.set()
        checkpointing.join(WAIT_SECONDS)
    # The head moved while the HSM signed, so that signature covers an event no longer last: not stored.
    assert outcome == [None]
    assert store.last_audit_event_of_kind(CHECKPOINT_KIND) is None

    # The next attempt signs the new head, and the checkpoint lands right after it.
    checkpoint = audit.checkpoint()
    assert checkpoint is not None and checkpoint.sequence == 5
    assert checkpoint.details["covers_sequence"] == 4
    assert checkpoint.details["covers_hash"] == written[0].hash.hex()
    assert store.audit_head() == checkpoint
    assert_verifies_with_checkpoints(store, audit, checkpoints=1)
    assert audit.verify_head().ok


def test_a_held_checkpoint_lands_when_nobody_wrote_meanwhile(hsm: HeldSigningHsm, stores: Stores) -> None:
    store = stores.open()
    audit = audit_on(store, hsm)
    head = write_event(audit, store, 0)
    checkpointing, outcome = checkpoint_in_thread(audit)
    assert hsm.signing.acquire(timeout=WAIT_SECONDS)
    # Reading needs no lock either, and nothing is written until the signature is back.
    assert store.audit_head() == head
    hsm.release.set()
    checkpointing.join(WAIT_SECONDS)
    assert outcome[0] is not None and outcome[0].sequence == 2 and store.audit_head() == outcome[0]
    assert outcome[0].details["covers_sequence"] == head.sequence
    assert_verifies_with_checkpoints(store, audit, checkpoints=1)


def test_two_replicas_signing_the_same_head_store_one_checkpoint(hsm: HeldSigningHsm, stores: Stores) -> None:
    store = stores.open()
    first = audit_on(store, hsm)
    write_event(first, store, 0)
    second = audit_on(stores.open(), hsm)
    threads = [checkpoint_in_thread(first), checkpoint_in_thread(second)]
    # Both have read the same head and are waiting for their signatures at once.
    assert hsm.signing.acquire(timeout=WAIT_SECONDS) and hsm.signing.acquire(timeout=WAIT_SECONDS)
    hsm.release.set()
    for thread, _ in threads:
        thread.join(WAIT_SECONDS)
    outcomes = [result[0] for _, result in threads]
    stored = [outcome for outcome in outcomes if outcome is not None]
    assert len(stored) == 1 and stored[0].sequence == 2
    assert [event.kind for event in store.iter_audit_events()] == ["request.submitted", CHECKPOINT_KIND]
    assert_verifies_with_checkpoints(store, first, checkpoints=1)


def test_a_due_checkpoint_tries_again_when_a_write_moved_the_head(
    hsm: HeldSigningHsm, stores: Stores
) -> None:
    """The worker's checkpoint_if_due does not give up after one moved head: under steady writes that would
    leave the log unsigned for as long as the writes go on."""
    store = stores.open()
    audit = AuditUseCases(store, hsm, utc_now, checkpoint_every=2)  # type: ignore[arg-type]
    audit.open()
    for index in range(2):
        write_event(audit, store, index)
    due = threading.Thread(target=audit.checkpoint_if_due, name="checkpoint-if-due")
    due.start()
    try:
        assert hsm.signing.acquire(timeout=WAIT_SECONDS), "the due checkpoint never reached the HSM"
        # A write lands while the first signature is held; the second attempt signs the new head.
        moved = write_event(audit, stores.open(), 2)
    finally:
        hsm.release.set()
        due.join(WAIT_SECONDS)
    assert not due.is_alive()
    checkpoint = store.last_audit_event_of_kind(CHECKPOINT_KIND)
    assert checkpoint is not None and checkpoint.details["covers_sequence"] == moved.sequence
    assert_verifies_with_checkpoints(store, audit, checkpoints=1)

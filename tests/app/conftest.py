"""The application in process, for tests of what the use cases do.

An ``App`` is custody as the daemon builds it (custody/bootstrap.py), minus the transport: the real use cases
over a real SQLite file (custody.store) and a real SoftHSM2 token (custody.hsm.pkcs11.Pkcs11Hsm on the
session's app token), the development policy with approver keys made here, the real audit log, and a clock
the test moves forward, which is how requests expire and time-locks pass without waiting. The background
worker's round (expiry, due signing, checkpoints) runs when the test calls ``run_worker``.

Callers are the development environment's principals, with the roles `custody dev init` gives them. Every
signature a test sees is checked independently: eth-account recovers the signer from the signed bytes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.messages import encode_defunct

from custody.app.anchor import retire_token_state, token_state
from custody.app.custody import BackgroundWorker, Custody
from custody.audit.events import AuditEvent
from custody.domain.approvals import ApprovalStatement
from custody.domain.keys import Key
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState, SigningRequest, Verdict
from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.policy_file import DEV_APPROVERS, dev_policy_toml
from custody.store import open_store
from tests.softhsm_tokens import APP_PIN, APP_TOKEN_LABEL, SoftHsmSetup

# CUSTODY_TEST_SIGN_IN_WRITE_TRANSACTION=1 builds every application with requests the policy signs at once
# signed inside the transaction that records them ([hsm] sign_in_write_transaction), as tests/e2e does.
SIGN_IN_WRITE_TRANSACTION = os.environ.get("CUSTODY_TEST_SIGN_IN_WRITE_TRANSACTION") == "1"
SEPOLIA = 11155111
ONE_ETHER = 10**18
RECIPIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# The development policy's request lifetime for treasury requests.
DAY = timedelta(hours=24)

# The principals of `custody dev init`'s server.toml.
BACKEND = Principal("backend", frozenset({Role.REQUESTER}), frozenset({"ops", "treasury"}))
CAROL = Principal("carol", frozenset({Role.REQUESTER, Role.APPROVER}), frozenset({"treasury"}))
ALICE = Principal("alice", frozenset({Role.APPROVER}))
BOB = Principal("bob", frozenset({Role.APPROVER}))
DAVE = Principal("dave", frozenset({Role.APPROVER, Role.SECURITY}))
ADMIN = Principal("admin", frozenset({Role.ADMIN, Role.AUDITOR}))
PRINCIPALS = {principal.name: principal for principal in (BACKEND, CAROL, ALICE, BOB, DAVE, ADMIN)}


class Clock:
    """The application's clock: the real time when the test starts, moved forward only by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def transaction(nonce: int, value: int = ONE_ETHER // 10, **fields: object) -> dict[str, object]:
    """An EIP-1559 transaction on Sepolia that the development policy allows for both keys."""
    return {
        "type": 2,
        "chainId": SEPOLIA,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": value,
        "gas": 21000,
        "maxFeePerGas": 30 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        **fields,
    }


def assert_signed_by(request: SigningRequest, address: str) -> None:
    """The request is SIGNED, and eth-account recovers ``address`` from what it signed."""
    assert request.state is RequestState.SIGNED, (request.state, request.error)
    assert request.result is not None
    if request.kind is PayloadKind.TRANSACTION:
        assert request.result.signed_tx is not None
        assert Account.recover_transaction(request.result.signed_tx) == address
    elif request.kind is PayloadKind.MESSAGE:
        signable = encode_defunct(primitive=request.payload)
        assert Account.recover_message(signable, signature=request.result.signature) == address
    else:
        assert Account._recover_hash(request.digest, signature=request.result.signature) == address


def assert_unsigned(request: SigningRequest) -> None:
    assert request.result is None, request


@dataclass
class App:
    custody: Custody
    clock: Clock
    approver_keys: dict[str, Ed25519PrivateKey]
    database: Path
    keys: dict[str, Key] = field(default_factory=dict)
    _nonces: Iterator[int] = field(default_factory=count)

    # -- requests ---------------------------------------------------------------------------------------------

    def nonce(self) -> int:
        """A nonce no earlier request of this test used: every test has a database of its own."""
        return next(self._nonces)

    def submit(
        self,
        key_label: str,
        payload: dict[str, object] | bytes,
        *,
        kind: PayloadKind = PayloadKind.TRANSACTION,
        caller: Principal = BACKEND,
        replaces: str | None = None,
    ) -> SigningRequest:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.custody.signing.submit(caller, key_label, kind, raw, replaces=replaces)

    def submit_tx(self, key_label: str, *, caller: Principal = BACKEND, **fields: Any) -> SigningRequest:
        """Submit a transaction with a fresh nonce; ``fields`` override the transaction's."""
        return self.submit(key_label, transaction(self.nonce(), **fields), caller=caller)

    def pending(self, *, caller: Principal = BACKEND) -> SigningRequest:
        """A treasury transaction waiting for the treasury quorum."""
        request = self.submit_tx("treasury", caller=caller)
        assert request.state is RequestState.PENDING_APPROVAL, request
        return request

    def get(self, request_id: str) -> SigningRequest:
        return self.custody.signing.get(ADMIN, request_id)

    # -- verdicts ---------------------------------------------------------------------------------------------

    def statement(
        self,
        request: SigningRequest,
        approver: str,
        verdict: Verdict = Verdict.APPROVE,
        *,
        expires_in: int = 600,
        **overrides: Any,
    ) -> bytes:
        fields: dict[str, Any] = {
            "request_id": request.request_id,
            "digest": request.digest,
            "payload_hash": request.payload_hash,
            "chain_id": request.chain_id,
            "key_id": request.key_id,
            "policy_version": request.decision.policy_version,
            "decision": verdict,
            "approver": approver,
            "expires_at": int(self.clock.now.timestamp()) + expires_in,
        }
        fields.update(overrides)
        return ApprovalStatement(**fields).to_bytes()

    def approve(
        self,
        request: SigningRequest,
        approver: str,
        *,
        caller: str | None = None,
        signer: str | None = None,
        **overrides: Any,
    ) -> SigningRequest:
        """``approver`` is named in the statement; ``caller`` (default: the approver) makes the call and
        ``signer`` (default: the approver) signs the statement, so tests can make the three disagree."""
        statement = self.statement(request, approver, **overrides)
        signature = self.approver_keys[signer or approver].sign(statement)
        return self.custody.approvals.approve(
            PRINCIPALS[caller or approver], request.request_id, statement, signature
        )

    def reject(self, request: SigningRequest, approver: str, reason: str) -> SigningRequest:
        statement = self.statement(request, approver, Verdict.REJECT)
        signature = self.approver_keys[approver].sign(statement)
        return self.custody.approvals.reject(
            PRINCIPALS[approver], request.request_id, statement, signature, reason
        )

    # -- governance -------------------------------------------------------------------------------------------

    def next_policy(self, edit: Callable[[str], str] = lambda document: document) -> str:
        """The active policy document as the next version, changed by ``edit``."""
        document = self.custody.policy.get(ADMIN).document
        version = self.custody.policy.get(ADMIN).policy.version
        marker = f"version = {version}\n"
        assert marker in document
        return edit(document.replace(marker, f"version = {version + 1}\n", 1))

    # -- the worker, the audit log and the database ---------------------------------------------------------

    def run_worker(self) -> None:
        """One round of the daemon's background worker: expiry, due signing, checkpoints."""
        BackgroundWorker(self.custody.signing, self.custody.audit, interval_seconds=1).run_once()

    def events(self, after_sequence: int = 0, **filters: Any) -> list[AuditEvent]:
        """Every audit event after ``after_sequence`` the filters match, read as an auditor would."""
        found: list[AuditEvent] = []
        while True:
            after = found[-1].sequence if found else after_sequence
            page = self.custody.audit.list_events(ADMIN, after_sequence=after, limit=10_000, **filters)
            if not page:
                return found
            found.extend(page)

    def written_since(self, sequence: int) -> list[tuple[str, str, str | None]]:
        """(kind, actor, request id) of each event after ``sequence``, checkpoints left out."""
        return [
            (event.kind, event.actor, event.request_id)
            for event in self.events(after_sequence=sequence)
            if event.kind != "audit.checkpoint"
        ]

    def head(self) -> int:
        events = self.events()
        return events[-1].sequence if events else 0

    def sql(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the database file behind the application's back, as someone with access to
        the database could."""
        connection = sqlite3.connect(self.database, isolation_level=None)
        try:
            return connection.execute(statement, tuple(parameters)).fetchall()
        finally:
            connection.close()


def approver_public_key(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass(frozen=True)
class Approvers:
    """The approvers' Ed25519 keys and the development policy that names them, made once per session: the
    policy's parser checks every public key point, which costs a noticeable moment per document."""

    keys: dict[str, Ed25519PrivateKey]
    dev_policy: str


@dataclass
class AppFactory:
    """Builds applications on the session's app token; every one gets a database of its own."""

    softhsm: SoftHsmSetup
    approvers: Approvers
    directory: Path
    built: list[Custody] = field(default_factory=list)
    _databases: Iterator[int] = field(default_factory=count)

    def __call__(
        self,
        *,
        policy: Callable[[str], str] = lambda document: document,
        keys: Sequence[str] = ("ops", "treasury"),
        checkpoint_every: int = 1000,
        database: Path | None = None,
        clock: Clock | None = None,
        sign_in_write_transaction: bool | None = None,
    ) -> App:
        """A new application; ``policy`` edits the development policy before it is seeded. Given the
        ``database`` and ``clock`` of an earlier application, it is that application restarted: the stored
        policy is kept and no keys are created."""
        document = policy(self.approvers.dev_policy)
        restarted = database is not None
        database = database or self.directory / f"custody-{next(self._databases)}.db"
        clock = clock or Clock()
        hsm = Pkcs11Hsm(self.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
        if not restarted:
            # Every test's database shares the session's token, which still holds the sealed state of the last
            # test's database; the daemon refuses a token that holds state the database does not name, so it is
            # retired first, as an operator who starts over on purpose retires it.
            retire_token_state(hsm, token_state(hsm).seal_key_ids)
        custody = Custody(
            store=open_store(f"sqlite:///{database}", self.directory),
            hsm=hsm,
            clock=clock,
            checkpoint_every=checkpoint_every,
            sign_in_write_transaction=(
                SIGN_IN_WRITE_TRANSACTION if sign_in_write_transaction is None else sign_in_write_transaction
            ),
        )
        self.built.append(custody)
        custody.audit.open()
        custody.policy.seed(document, "policy.toml")
        app = App(custody, clock, self.approvers.keys, database)
        if restarted:
            custody.keys.verify_keys_in_hsm()
            app.keys = {key.label: key for key in custody.keys.list_keys(ADMIN)}
        else:
            app.keys = {label: custody.keys.create_key(ADMIN, label) for label in keys}
        return app

    def retire_token_state(self) -> None:
        """Retire the seal keys and anchors the token holds, as an operator who starts over on purpose does
        (docs/operations.md). Only while no application is open: closing this session logs every one out."""
        hsm = Pkcs11Hsm(self.softhsm.module_path, APP_TOKEN_LABEL, APP_PIN)
        try:
            retire_token_state(hsm, token_state(hsm).seal_key_ids)
        finally:
            hsm.close()

    def restart(self, app: App) -> App:
        """Stop ``app`` as the daemon stops (a shutdown checkpoint, the HSM and the store released) and start
        a new application on its database and token, with its clock."""
        self.stop(app)
        restarted = self(database=app.database, clock=app.clock)
        restarted._nonces = app._nonces
        return restarted

    def stop(self, app: App) -> None:
        if app.custody in self.built:
            self.built.remove(app.custody)
            app.custody.close()

    def close_all(self) -> None:
        for custody in reversed(self.built):
            custody.close()
        self.built.clear()


@pytest.fixture(scope="session")
def approvers() -> Approvers:
    keys = {name: Ed25519PrivateKey.generate() for name in DEV_APPROVERS}
    return Approvers(keys, dev_policy_toml({name: approver_public_key(key) for name, key in keys.items()}))


@pytest.fixture
def make_app(softhsm: SoftHsmSetup, approvers: Approvers, tmp_path: Path) -> Iterator[AppFactory]:
    factory = AppFactory(softhsm, approvers, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture
def app(make_app: AppFactory) -> App:
    """The development environment in process: the dev policy, keys ops and treasury."""
    return make_app()

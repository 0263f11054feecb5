"""kill -9 at random moments, 20 times, while the daemon signs and counts approvals; afterwards every request is
consistent, no nonce has two different signatures, every signed request has exactly one signing audit event,
and the audit log verifies.

Every kill lands under load: the moment is drawn only once the load threads have had a call answered by that
run's daemon, so no kill is spent on a daemon that was still starting or idle (a restart alone proves
nothing here). Most of each round is the daemon's start, which is why the rounds are few and all of them count.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict

import grpc
import pytest
from eth_account import Account

from custody.api._gen import custody_pb2 as pb
from custody.api._gen import custody_pb2_grpc as pb_grpc

from .approvals_support import Approvers, treasury_tx
from .conftest import (
    Daemon,
    Databases,
    DevEnv,
    Nonces,
    channel_for,
    make_dev_env,
    start_daemon,
    stop_daemon,
)

KILLS = 20
UNSIGNED_FINAL_STATES = {"DENIED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"}
# Seeded, so a failing run can be repeated with the same kill moments.
MOMENTS = random.Random(20261126)


class Pending:
    """Treasury requests waiting for approvals, shared by the load threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[pb.SigningRequest] = []

    def add(self, request: pb.SigningRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def take(self) -> pb.SigningRequest | None:
        with self._lock:
            return self._requests.pop(0) if self._requests else None


def load(
    env: DevEnv,
    daemon: Daemon,
    stop: threading.Event,
    answered: threading.Event,
    nonces: Nonces,
    pending: Pending,
    failures: list[BaseException],
) -> None:
    """Submit auto-signed ops transactions and new treasury requests, and approve waiting ones, until stopped
    or the daemon dies under the calls; ``answered`` is set once the daemon answered a call. Anything but an
    RPC error is kept in ``failures``: a load thread that died quietly would leave the daemon idle and the test
    proving nothing."""
    try:
        _load(env, daemon, stop, answered, nonces, pending)
    except BaseException as exc:
        failures.append(exc)


def _load(
    env: DevEnv,
    daemon: Daemon,
    stop: threading.Event,
    answered: threading.Event,
    nonces: Nonces,
    pending: Pending,
) -> None:
    approvers = Approvers(env, daemon)
    with channel_for(env, daemon, "backend") as channel:
        signing = pb_grpc.SigningServiceStub(channel)
        while not stop.is_set():
            try:
                nonce = next(nonces)
                signing.SubmitRequest(
                    pb.SubmitRequestRequest(
                        key_label="ops",
                        kind=pb.PAYLOAD_KIND_TRANSACTION,
                        payload=json.dumps(treasury_tx(nonce)).encode(),
                    ),
                    timeout=5,
                )
                answered.set()
                if nonce % 3 == 0:
                    pending.add(
                        signing.SubmitRequest(
                            pb.SubmitRequestRequest(
                                key_label="treasury",
                                kind=pb.PAYLOAD_KIND_TRANSACTION,
                                payload=json.dumps(treasury_tx(nonce)).encode(),
                            ),
                            timeout=5,
                        ).request
                    )
                request = pending.take()
                if request is not None:
                    for approver in ("alice", "bob"):
                        approvers.approve(request, approver)
            except grpc.RpcError:
                # The daemon was killed under the call, or a verdict arrived twice after a restart: both are
                # expected here; consistency is checked afterwards, from the database.
                if stop.is_set():
                    return
                time.sleep(0.01)


@pytest.mark.parametrize(
    "sign_in_write_transaction", [False, True], ids=["two-transactions", "sign-in-write-transaction"]
)
def test_kill_minus_nine_leaves_everything_consistent(
    tmp_path_factory: pytest.TempPathFactory,
    backend: str,
    databases: Databases,
    nonces: Nonces,
    sign_in_write_transaction: bool,
) -> None:
    env = make_dev_env(
        tmp_path_factory.mktemp("crashes") / "env",
        backend,
        databases,
        sign_in_write_transaction=sign_in_write_transaction,
    )
    logs = tmp_path_factory.mktemp("crash-logs")
    pending = Pending()
    failures: list[BaseException] = []
    keys: dict[str, str] = {}
    for kill in range(KILLS):
        daemon = start_daemon(env, logs / f"run-{kill}.log")
        if not keys:
            with channel_for(env, daemon, "admin") as channel:
                stub = pb_grpc.KeyServiceStub(channel)
                for label in ("ops", "treasury"):
                    keys[label] = stub.CreateKey(pb.CreateKeyRequest(label=label)).key.address
        stop = threading.Event()
        answered = threading.Event()
        workers = [
            threading.Thread(target=load, args=(env, daemon, stop, answered, nonces, pending, failures))
            for _ in range(3)
        ]
        for worker in workers:
            worker.start()
        assert answered.wait(timeout=30), f"run {kill}: the daemon answered no call"
        time.sleep(MOMENTS.uniform(0.0, 0.5))
        daemon.process.kill()
        daemon.process.wait()
        daemon.notifications.close()
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        assert not failures, failures

    final = start_daemon(env, logs / "final.log")
    try:
        with channel_for(env, final, "admin") as channel:
            verified = pb_grpc.AuditServiceStub(channel).VerifyChain(pb.VerifyChainRequest(), timeout=60)
        assert verified.ok, verified.problem
    finally:
        assert stop_daemon(final) == 0
    # The database is read only once no daemon runs: a running daemon's worker signs approved requests whose
    # signing claim lapsed in a kill, and a read of the requests followed by a read of the audit events would
    # see such a signature in the second read but not in the first.
    assert_consistent(env, keys)


def assert_consistent(env: DevEnv, addresses: dict[str, str]) -> None:
    rows = env.sql("SELECT request_id, key_label, state, payload, signature, signed_tx FROM requests")
    assert len(rows) > KILLS, "the load really ran between the kills"
    signed_for_nonce: dict[tuple[str, int, int], set[bytes]] = defaultdict(set)
    signed_ids = set()
    for request_id, key_label, state, payload, signature, signed_tx in rows:
        if state == "SIGNED":
            assert signature and signed_tx, request_id
            assert Account.recover_transaction(bytes(signed_tx)) == addresses[key_label]
            tx = json.loads(bytes(payload))
            signed_for_nonce[(key_label, int(tx["chainId"], 16), int(tx["nonce"], 16))].add(bytes(signed_tx))
            signed_ids.add(request_id)
        else:
            assert not signature and not signed_tx, (request_id, state)
    assert signed_ids, "some requests were signed between the kills"
    assert all(len(signatures) == 1 for signatures in signed_for_nonce.values())
    signing_events = Counter(
        request_id
        for (request_id,) in env.sql("SELECT request_id FROM audit_events WHERE kind = 'request.signed'")
    )
    assert set(signing_events) == signed_ids
    assert set(signing_events.values()) == {1}
    # Every signed request still holds its nonce, and no request that ended unsigned holds one.
    holders = {request_id for (request_id,) in env.sql("SELECT request_id FROM nonces")}
    states = {request_id: state for request_id, _, state, *_ in rows}
    assert signed_ids <= holders
    assert not {holder for holder in holders if states[holder] in UNSIGNED_FINAL_STATES}

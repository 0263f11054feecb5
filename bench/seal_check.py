"""The cost of checking seals before a signature, next to the time of a whole auto-signed request, in one run.

    .venv/bin/python bench/seal_check.py [--requests 300] [--approved 100] [--repeats 5]
        [--out bench/results/seal_check.json]

The application is the daemon's (custody.app.custody.Custody) on a fresh SoftHSM2 token and a SQLite file,
with the development policy, its treasury rule given a one-hour time-lock so that approved treasury requests
stay APPROVED and can be checked again and again. Timed:

(a) an auto-signed request: ``signing.submit`` of an ops transaction, parse to signature to stored result,
    per request (every signature is recovered with eth-account afterwards, outside the timing);
(b) the check the signing path makes before the HSM signs (``Sealer.problem`` over ``sealed_records``) on an
    APPROVED request: every seal (decision, approval, key, policy) found in the table and in the verified-seal
    cache, plus the freshness check (custody/app/freshness.py: the audit head compared with the database's,
    the key, policy and request looked up in memory);
(c) the same with the freshness check switched off: the seals alone;
(d) the same as (b) with the request unknown to memory, so its events are read from the audit log by id: what
    the first check of a request costs after a restart;
(e) the same as (b) with the verified-seal cache emptied, so each seal is recomputed in the HSM (HMAC): what a
    row costs the first time it is read;
(f) the seal of the audit log's head that every write transaction appending events adds before it commits
    (custody/audit/head.py): one HMAC in the HSM over the last event's place and hash, per transaction;
(g) as (a) with that head seal switched off, in batches alternating with (a)'s after a warm-up batch: the ratio
    of (a) to it is what the head seal costs a whole auto-signed request.

Each figure is the fastest of --repeats passes over all approved requests, in microseconds per request, and its
ratio to (a). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from eth_account import Account
from in_process import dev_approvers, fresh_hsm
from payloads import transaction

from custody.app.custody import Custody
from custody.app.integrity import sealed_records
from custody.domain import seals
from custody.domain.approvals import ApprovalStatement
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState, SigningRequest, Verdict
from custody.store.sqlite import SqliteStore

TOKEN_LABEL = "custody-bench-seals"
ADMIN = Principal("admin", frozenset({Role.ADMIN, Role.AUDITOR}))
BACKEND = Principal("backend", frozenset({Role.REQUESTER}), frozenset({"ops", "treasury"}))
TIMELOCK = "timelock_seconds = 3600\n"


# Auto-signed requests per batch; (a) and (g) alternate batch by batch.
BATCH = 50


def fastest(repeats: int, run: Callable[[], None]) -> float:
    """The shortest of ``repeats`` runs, in seconds: other load on the machine only ever adds time."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="auto-signed requests timed")
    parser.add_argument("--approved", type=int, default=100, help="approved requests whose seals are checked")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/seal_check.json"))
    arguments = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="custody-bench-seals-"))
    hsm = fresh_hsm(work, TOKEN_LABEL)
    approver_keys, policy = dev_approvers()
    assert "timelock_seconds = 0\n" in policy
    policy = policy.replace("timelock_seconds = 0\n", TIMELOCK, 1)
    store = SqliteStore(work / "custody.db")
    custody = Custody(store=store, hsm=hsm)
    custody.audit.open()
    custody.policy.seed(policy, "the development policy with a treasury time-lock")
    ops = custody.keys.create_key(ADMIN, "ops")
    treasury = custody.keys.create_key(ADMIN, "treasury")

    # (a) Auto-signed requests, end to end in the application, and (g) the same with the audit head's seal
    # switched off, in alternating batches after a warm-up, so that both see the same machine and database.
    signed: list[SigningRequest] = []
    nonces = iter(range(10**9))
    head_seal = custody.sealer.seal_audit_head

    def submit_batch(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            payload = transaction(next(nonces))
            signed.append(custody.signing.submit(BACKEND, "ops", PayloadKind.TRANSACTION, payload))
        return time.perf_counter() - start

    submit_batch(BATCH)
    with_seal = without_seal = 0.0
    batches = max(1, arguments.requests // BATCH)
    for _ in range(batches):
        with_seal += submit_batch(BATCH)
        custody.sealer.seal_audit_head = lambda tx, event: None  # type: ignore[method-assign]
        without_seal += submit_batch(BATCH)
        custody.sealer.seal_audit_head = head_seal  # type: ignore[method-assign]
    auto_signed_seconds = with_seal / (batches * BATCH)
    without_head_seal_seconds = without_seal / (batches * BATCH)
    for request in signed:
        assert request.state is RequestState.SIGNED and request.result is not None
        assert request.result.signed_tx is not None
        assert Account.recover_transaction(request.result.signed_tx) == ops.address

    # Approved treasury requests, waiting out their time-lock.
    approved: list[SigningRequest] = []
    expires = int(time.time()) + 3600
    for nonce in range(arguments.approved):
        request = custody.signing.submit(BACKEND, "treasury", PayloadKind.TRANSACTION, transaction(nonce))
        for name in ("alice", "bob"):
            statement = ApprovalStatement.for_request(request, name, Verdict.APPROVE, expires).to_bytes()
            request = custody.approvals.approve(
                Principal(name, frozenset({Role.APPROVER})),
                request.request_id,
                statement,
                approver_keys[name].sign(statement),
            )
        assert request.state is RequestState.APPROVED and request.result is None
        approved.append(request)
    active = custody.policy.active()
    document = custody.policy.document_of(active.policy)
    records = [sealed_records(request, treasury, active.policy, document) for request in approved]
    sealer, current = custody.sealer, custody.current_state

    def check_all() -> None:
        for record in records:
            assert sealer.problem(store, record) is None

    def check_all_unknown() -> None:
        for record in records:
            current._requests.pop(record.subjects.request_id, None)
            assert sealer.problem(store, record) is None

    def check_all_cold() -> None:
        for record in records:
            sealer._verified.clear()
            assert sealer.problem(store, record) is None

    count = len(records)
    check_all()  # Warm: every seal verified once.
    sealed_and_current = fastest(arguments.repeats, check_all) / count
    sealer.current = None
    seals_only = fastest(arguments.repeats, check_all) / count
    sealer.current = current
    request_read = fastest(arguments.repeats, check_all_unknown) / count
    cold = fastest(arguments.repeats, check_all_cold) / count
    heads = list(custody.audit.list_events(ADMIN, limit=count))

    def seal_heads() -> None:
        for event in heads:
            sealer.seal(seals.sealed_audit_head(event.sequence, event.hash))

    head_seal = fastest(arguments.repeats, seal_heads) / len(heads)
    custody.close()

    def figure(seconds: float) -> dict[str, float]:
        return {
            "microseconds": round(seconds * 1e6, 1),
            "ratio_to_auto_signed_request": round(seconds / auto_signed_seconds, 4),
        }

    report = {
        "benchmark": "seal_check",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "auto_signed_requests": arguments.requests,
        "approved_requests_checked": count,
        "auto_signed_request_microseconds": round(auto_signed_seconds * 1e6, 1),
        "auto_signed_request_without_head_seal_microseconds": round(without_head_seal_seconds * 1e6, 1),
        "auto_signed_with_head_seal_to_without": round(auto_signed_seconds / without_head_seal_seconds, 3),
        "seal_check": figure(sealed_and_current),
        "seals_without_freshness": figure(seals_only),
        "seal_check_request_read_from_audit_log": figure(request_read),
        "seal_check_seals_recomputed_in_hsm": figure(cold),
        "audit_head_seal_per_write_transaction": figure(head_seal),
    }
    print(f"auto-signed request:                         {auto_signed_seconds * 1e6:9.1f} us")
    print(
        f"the same without the audit head's seal:      {without_head_seal_seconds * 1e6:9.1f} us"
        f"  (with it: {auto_signed_seconds / without_head_seal_seconds:.3f} times)"
    )
    for name in (
        "seal_check",
        "seals_without_freshness",
        "seal_check_request_read_from_audit_log",
        "seal_check_seals_recomputed_in_hsm",
        "audit_head_seal_per_write_transaction",
    ):
        values = report[name]
        assert isinstance(values, dict)
        print(
            f"{name:<44} {values['microseconds']:9.1f} us"
            f"  ({values['ratio_to_auto_signed_request']:.2%} of an auto-signed request)"
        )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

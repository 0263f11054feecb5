"""How long an auto-signed request holds PostgreSQL's write lock, and in how many round trips, in one run.

    .venv/bin/python bench/write_lock.py [--requests 200] [--rounds 3] [--out bench/results/write_lock.json]

Every write transaction of every custody replica takes one advisory lock (custody/store/postgres.py), so the
time one request holds it bounds how many requests all replicas together sign per second. This builds the
application in this process from real parts (a SoftHSM2 token, a PostgreSQL database made for the run and
dropped at its end, the development policy) and submits EIP-1559 transactions the policy signs at once, one
after another, in four variants alternated round after round:

- writes held back and sent with the next statement that needs an answer, or not (each its own round trip:
  how the store ran before);
- signing after the claim commits (two write transactions), or inside the recording transaction
  (`[hsm] sign_in_write_transaction`).

For each: the milliseconds the write lock is held per request (from asking for it to the COMMIT's answer),
write transactions and round trips to PostgreSQL per request (on every connection: the freshness check's
reads, made while the lock is held, count too), and the requests per second of one caller. Every signature is
recovered with eth-account. Medians over the rounds are printed and written as JSON; the held-back variant's
ratios are against the variant without it in the same rounds. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from eth_account import Account
from in_process import dev_approvers, fresh_hsm
from payloads import transaction

from custody.app.custody import Custody
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState
from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.store import postgres

TOKEN_LABEL = "custody-bench"
POSTGRES_ADMIN_URL = os.environ.get("CUSTODY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
ADMIN = Principal("admin", frozenset({Role.ADMIN}))
BACKEND = Principal("backend", frozenset({Role.REQUESTER}), frozenset({"ops"}))


@dataclass
class Tally:
    """What the instrumented store and connections counted since the last reset."""

    lock_seconds: float = 0.0
    transactions: int = 0
    round_trips: int = 0

    def reset(self) -> None:
        self.lock_seconds, self.transactions, self.round_trips = 0.0, 0, 0


TALLY = Tally()


class CountingConnection(postgres._Connection):
    """Counts round trips: a statement sent on its own, or a pipeline of statements sent together."""

    in_pipeline = False

    def execute(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if not self.in_pipeline:
            TALLY.round_trips += 1
        return super().execute(*args, **kwargs)

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Any]:  # type: ignore[override]
        TALLY.round_trips += 1
        self.in_pipeline = True
        try:
            with super().pipeline() as pipeline:
                yield pipeline
        finally:
            self.in_pipeline = False


class TimedStore(postgres.PostgresStore):
    """The PostgreSQL store, timing each write transaction from asking for the lock to the COMMIT's answer."""

    @contextlib.contextmanager
    def _locked_connection(self, action: str) -> Iterator[postgres._Connection]:
        started = time.perf_counter()
        try:
            with super()._locked_connection(action) as connection:
                yield connection
        finally:
            TALLY.lock_seconds += time.perf_counter() - started
            TALLY.transactions += 1


@contextlib.contextmanager
def database() -> Iterator[str]:
    name = f"custody_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{POSTGRES_ADMIN_URL}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES_ADMIN_URL}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_ADMIN_URL}/postgres", autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def build(url: str, hsm: Pkcs11Hsm, policy: str) -> tuple[Custody, str]:
    custody = Custody(store=TimedStore(url), hsm=hsm, clock=lambda: datetime.now(UTC))
    custody.audit.open()
    custody.policy.seed(policy, "the development policy")
    return custody, custody.keys.create_key(ADMIN, "ops").address


def measure(custody: Custody, address: str, nonces: Iterator[int], requests: int) -> dict[str, float]:
    TALLY.reset()
    started = time.perf_counter()
    for _ in range(requests):
        signed = custody.signing.submit(BACKEND, "ops", PayloadKind.TRANSACTION, transaction(next(nonces)))
        assert signed.state is RequestState.SIGNED and signed.result is not None
        assert signed.result.signed_tx is not None
        assert Account.recover_transaction(signed.result.signed_tx) == address
    elapsed = time.perf_counter() - started
    return {
        "lock_ms_per_request": TALLY.lock_seconds / requests * 1000,
        "write_transactions_per_request": TALLY.transactions / requests,
        "round_trips_per_request": TALLY.round_trips / requests,
        "requests_per_second": requests / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/write_lock.json"))
    arguments = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="custody-bench-lock-"))
    hsm = fresh_hsm(work, TOKEN_LABEL)
    _, policy = dev_approvers()
    postgres._Connection = CountingConnection  # type: ignore[misc]
    pipelines_supported = postgres._PIPELINES
    variants = [(held_back, one) for one in (False, True) for held_back in (False, True)]
    rows: dict[tuple[bool, bool], list[dict[str, float]]] = {variant: [] for variant in variants}
    # One application and database for every variant: the token holds the seal key of one database only. The
    # variants are switched between batches, both switches being read per request.
    with database() as url:
        custody, address = build(url, hsm, policy)
        nonces = iter(range(10**9))
        try:
            for number in range(arguments.rounds):
                order = variants if number % 2 == 0 else list(reversed(variants))
                for held_back, one in order:
                    postgres._PIPELINES = held_back and pipelines_supported
                    custody.signing._sign_in_write_transaction = one
                    rows[(held_back, one)].append(measure(custody, address, nonces, arguments.requests))
        finally:
            postgres._PIPELINES = pipelines_supported
            custody.close()

    figures: dict[str, Any] = {"requests": arguments.requests, "rounds": arguments.rounds, "variants": {}}
    for held_back, one in variants:
        name = f"{'held back' if held_back else 'each write sent alone'}, " + (
            "sign in the write transaction" if one else "two write transactions"
        )
        measured = rows[(held_back, one)]
        entry = {key: statistics.median(row[key] for row in measured) for key in measured[0]}
        if held_back:
            alone = rows[(False, one)]
            entry["lock_ratio_to_each_alone"] = statistics.median(
                a["lock_ms_per_request"] / b["lock_ms_per_request"]
                for a, b in zip(measured, alone, strict=True)
            )
            entry["rate_ratio_to_each_alone"] = statistics.median(
                a["requests_per_second"] / b["requests_per_second"]
                for a, b in zip(measured, alone, strict=True)
            )
        figures["variants"][name] = entry
    base = rows[(False, False)]
    best = rows[(True, True)]
    figures["lock_ratio_best_to_before"] = statistics.median(
        a["lock_ms_per_request"] / b["lock_ms_per_request"] for a, b in zip(best, base, strict=True)
    )
    figures["rate_ratio_best_to_before"] = statistics.median(
        a["requests_per_second"] / b["requests_per_second"] for a, b in zip(best, base, strict=True)
    )
    for name, entry in figures["variants"].items():
        print(
            f"{name:<58} lock {entry['lock_ms_per_request']:6.2f} ms/request,"
            f" {entry['write_transactions_per_request']:.1f} transactions,"
            f" {entry['round_trips_per_request']:5.1f} round trips, {entry['requests_per_second']:6.1f}/s"
            + (
                f"  (lock x{entry['lock_ratio_to_each_alone']:.2f}, rate x{entry['rate_ratio_to_each_alone']:.2f})"
                if "lock_ratio_to_each_alone" in entry
                else ""
            )
        )
    print(
        f"both levers against neither: lock x{figures['lock_ratio_best_to_before']:.2f},"
        f" rate x{figures['rate_ratio_best_to_before']:.2f}"
    )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {arguments.out}")


if __name__ == "__main__":
    main()

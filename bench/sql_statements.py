"""How many SQL statements and write transactions one request costs, counted on the real application.

    .venv/bin/python bench/sql_statements.py [--rounds 20] [--out bench/results/sql_statements.json]

Builds the application in this process from real parts (a SoftHSM2 token, a SQLite file, the development
policy), then counts, with SQLite's trace callback, the statements each of two paths runs:

- an EIP-1559 transaction of key `ops` that the policy signs at once (SubmitRequest: parse, decide, record,
  claim, sign, record the signature);
- the approval that completes a 2-of-3 quorum on a `treasury` transaction (Approve: verify the statement,
  count it, move the request to APPROVED, claim, re-verify, sign, record the signature).

Counts are per request, averaged over the rounds (a checkpoint of the audit log may fall into one round). The
figures are statement counts, not times, so they are the same on any machine; they show what a change to the
request path costs in database work. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eth_account import Account
from in_process import dev_approvers, fresh_hsm
from payloads import transaction

from custody.app.custody import Custody
from custody.domain.approvals import ApprovalStatement
from custody.domain.principals import Principal, Role
from custody.domain.requests import PayloadKind, RequestState, Verdict
from custody.store.sqlite import SqliteStore

TOKEN_LABEL = "custody-bench"

ADMIN = Principal("admin", frozenset({Role.ADMIN}))
BACKEND = Principal("backend", frozenset({Role.REQUESTER}), frozenset({"ops", "treasury"}))


def approver(name: str) -> Principal:
    return Principal(name, frozenset({Role.APPROVER}))


class StatementLog:
    """Collects the first word of every statement SQLite runs (SELECT, INSERT, UPDATE, BEGIN, COMMIT, ...)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.texts: list[str] = []
        self.enabled = False

    def record(self, statement: str) -> None:
        if self.enabled:
            self.counts[statement.lstrip().split(None, 1)[0].upper()] += 1
            self.texts.append(" ".join(statement.split()))


def counting_connection(statements: StatementLog) -> type[sqlite3.Connection]:
    class CountingConnection(sqlite3.Connection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.set_trace_callback(statements.record)

    return CountingConnection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--sign-in-write-transaction",
        action="store_true",
        help="sign requests the policy signs at once in the transaction that records them ([hsm] option)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/sql_statements.json"))
    parser.add_argument(
        "--show", action="store_true", help="print each statement of the last round's two paths, in order"
    )
    arguments = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="custody-bench-sql-"))
    hsm = fresh_hsm(work, TOKEN_LABEL)
    approver_keys, policy = dev_approvers()
    statements = StatementLog()
    store = SqliteStore(work / "custody.db")
    store._use_connection_factory(counting_connection(statements))
    custody = Custody(
        store=store,
        hsm=hsm,
        clock=lambda: datetime.now(UTC),
        sign_in_write_transaction=arguments.sign_in_write_transaction,
    )
    custody.audit.open()
    custody.policy.seed(policy, "the development policy")
    ops = custody.keys.create_key(ADMIN, "ops")
    custody.keys.create_key(ADMIN, "treasury")

    auto_signed: collections.Counter[str] = collections.Counter()
    completing: collections.Counter[str] = collections.Counter()
    for round_number in range(arguments.rounds):
        statements.counts.clear()
        statements.texts.clear()
        statements.enabled = True
        signed = custody.signing.submit(BACKEND, "ops", PayloadKind.TRANSACTION, transaction(round_number))
        statements.enabled = False
        assert signed.state is RequestState.SIGNED and signed.result is not None
        assert signed.result.signed_tx is not None
        assert Account.recover_transaction(signed.result.signed_tx) == ops.address
        auto_signed.update(statements.counts)
        auto_signed_texts = list(statements.texts)

        pending = custody.signing.submit(
            BACKEND, "treasury", PayloadKind.TRANSACTION, transaction(round_number)
        )
        assert pending.state is RequestState.PENDING_APPROVAL
        expires = int(time.time() + timedelta(hours=1).total_seconds())
        for name in ("alice", "bob"):
            statement = ApprovalStatement.for_request(pending, name, Verdict.APPROVE, expires).to_bytes()
            signature = approver_keys[name].sign(statement)
            statements.counts.clear()
            statements.texts.clear()
            statements.enabled = name == "bob"
            result = custody.approvals.approve(approver(name), pending.request_id, statement, signature)
            statements.enabled = False
        assert result.state is RequestState.SIGNED
        completing.update(statements.counts)
        completing_texts = list(statements.texts)
    custody.close()

    def per_request(counter: collections.Counter[str]) -> dict[str, float]:
        return {kind: round(count / arguments.rounds, 2) for kind, count in sorted(counter.items())}

    figures = {
        "rounds": arguments.rounds,
        "auto_signed_submit": per_request(auto_signed),
        "completing_approval": per_request(completing),
    }
    for path, counts in (
        ("auto-signed submit", figures["auto_signed_submit"]),
        ("completing approval", figures["completing_approval"]),
    ):
        assert isinstance(counts, dict)
        total = sum(value for kind, value in counts.items() if kind not in {"BEGIN", "COMMIT", "ROLLBACK"})
        print(
            f"{path}: {total:g} statements per request, " + ", ".join(f"{k} {v:g}" for k, v in counts.items())
        )
    if arguments.show:
        for path, texts in (
            ("auto-signed submit", auto_signed_texts),
            ("completing approval", completing_texts),
        ):
            print(f"\n{path}, statement by statement:")
            for number, text in enumerate(texts, 1):
                print(f"  {number:>2}. {text[:160]}")
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {arguments.out}")


if __name__ == "__main__":
    main()

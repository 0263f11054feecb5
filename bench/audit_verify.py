"""Audit verification rate: custody's chain verifier against plain SHA-256 over the same bytes, in one run.

    .venv/bin/python bench/audit_verify.py [--events 100000] [--repeats 3] [--out bench/results/audit_verify.json]

The log is built the way the daemon builds it: events chained with chain_event and, after every 1,000 of them,
a checkpoint event carrying a real Ed25519 signature (cryptography) over the statement for the event before it.
It is written as JSON lines to a temporary file, then three passes are timed:
(a) verify_events over the events in memory: recompute every hash, check every link and checkpoint;
(b) verify_json_lines over the file: read, strictly parse and then verify, which is `custody audit verify
    --file`'s work;
(c) the baseline: SHA-256 over the canonical encodings, computed beforehand, the floor any verifier pays.
Each pass runs --repeats times and the fastest counts. Each prints events per second and its ratio to (c); the
ratios are the figures to compare across machines.
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custody.audit.chain import (
    ChainVerification,
    checkpoint_draft,
    checkpoint_statement,
    event_to_json_line,
    verify_events,
    verify_json_lines,
)
from custody.audit.events import GENESIS_HASH, AuditDraft, AuditEvent, canonical_encoding, chain_event

T = TypeVar("T")
CHECKPOINT_EVERY = 1000
START = datetime(2025, 3, 1, tzinfo=UTC)
KINDS = ("request.submitted", "approval.counted", "request.approved", "request.signed")


def ordinary_draft(index: int) -> AuditDraft:
    """An event the size of a real one: a request id, the key, chain, nonce and a digest in the details."""
    return AuditDraft(
        time=START + timedelta(milliseconds=index),
        actor=f"backend-{index % 7}",
        kind=KINDS[index % len(KINDS)],
        request_id=f"req_{index:032x}",
        details={
            "key_id": f"key_{index % 13:032x}",
            "chain_id": 1,
            "nonce": index,
            "digest": hashlib.sha256(index.to_bytes(8, "big")).hexdigest(),
        },
    )


def build_log(count: int, private_key: Ed25519PrivateKey) -> Iterator[AuditEvent]:
    public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    previous: AuditEvent | None = None
    since_checkpoint = 0
    for sequence in range(1, count + 1):
        if previous is not None and since_checkpoint == CHECKPOINT_EVERY:
            signature = private_key.sign(checkpoint_statement(previous.sequence, previous.hash))
            draft = checkpoint_draft(previous, public_key, signature, previous.time)
            since_checkpoint = 0
        else:
            draft = ordinary_draft(sequence)
            since_checkpoint += 1
        previous = chain_event(draft, sequence, previous.hash if previous is not None else GENESIS_HASH)
        yield previous


def rate(count: int, seconds: float) -> float:
    return count / seconds


def fastest(repeats: int, run: Callable[[], T]) -> tuple[T, float]:
    """The result and the shortest time of ``repeats`` runs: other load on the machine only ever adds time."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        outcome = run()
        timings.append(time.perf_counter() - start)
    return outcome, min(timings)


def hash_all(encodings: list[bytes]) -> None:
    for encoding in encodings:
        hashlib.sha256(encoding).digest()


def verify_file(path: Path, public_key: bytes) -> ChainVerification:
    with path.open(encoding="utf-8") as lines:
        return verify_json_lines(lines, public_key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--repeats", type=int, default=3, help="each pass is timed this often; the best counts"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/audit_verify.json"))
    args = parser.parse_args()

    private_key = Ed25519PrivateKey.generate()
    public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    events = list(build_log(args.events, private_key))
    encodings = [canonical_encoding(event.sequence, event, event.previous_hash) for event in events]

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "audit.jsonl"
        with path.open("w", encoding="ascii") as export:
            for event in events:
                export.write(event_to_json_line(event) + "\n")
        file_bytes = path.stat().st_size

        in_memory, in_memory_seconds = fastest(
            args.repeats, lambda: verify_events(iter(events), public_key=public_key)
        )
        from_file, from_file_seconds = fastest(args.repeats, lambda: verify_file(path, public_key))

    _, sha_seconds = fastest(
        args.repeats, lambda: [hashlib.sha256(encoding).digest() for encoding in encodings]
    )

    for name, outcome in (("in memory", in_memory), ("from file", from_file)):
        if not outcome.ok or outcome.events_checked != args.events:
            raise SystemExit(f"the {name} verification did not pass: {outcome.problem}")

    sha_rate = rate(args.events, sha_seconds)
    results = {
        "benchmark": "audit_verify",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "events": args.events,
        "repeats": args.repeats,
        "checkpoints": in_memory.checkpoints_checked,
        "export_bytes": file_bytes,
        "verify_events": {
            "seconds": in_memory_seconds,
            "events_per_second": rate(args.events, in_memory_seconds),
            "ratio_to_sha256": rate(args.events, in_memory_seconds) / sha_rate,
        },
        "verify_json_lines": {
            "seconds": from_file_seconds,
            "events_per_second": rate(args.events, from_file_seconds),
            "ratio_to_sha256": rate(args.events, from_file_seconds) / sha_rate,
        },
        "sha256_baseline": {"seconds": sha_seconds, "events_per_second": sha_rate},
    }
    print(f"{args.events} events, {in_memory.checkpoints_checked} checkpoints, export {file_bytes} bytes")
    for name in ("verify_events", "verify_json_lines"):
        measured = results[name]
        assert isinstance(measured, dict)
        print(
            f"{name:18} {measured['events_per_second']:12,.0f} events/s"
            f"  ({measured['ratio_to_sha256']:.3f} of plain SHA-256)"
        )
    print(f"{'sha256 baseline':18} {sha_rate:12,.0f} events/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

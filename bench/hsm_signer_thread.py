"""Does a dedicated HSM signer thread, fed in batches, cost less CPU per signature than callers signing
themselves? Measured in one run, alternating the two.

    .venv/bin/python bench/hsm_signer_thread.py [--seconds 2] [--rounds 3] [--work-us 1000]

Both use custody's own adapter (Pkcs11Hsm, which serializes every call into the library with one lock) on a
fresh SoftHSM2 token, from 1, 8 and 32 caller threads that each also do --work-us microseconds of pure Python
per signature, standing in for the rest of a request held by the GIL:

- callers: each thread calls sign_digest itself (what the daemon does today);
- signer thread: each thread puts its digest on a queue and waits; one thread takes everything queued and
  signs it back to back, then wakes the callers (fewer lock hand-offs, two more thread switches per call).

Reported: signatures per second and the process's CPU per signature (user + system), and the ratio signer
thread / callers of each. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custody.hsm.pkcs11 import Pkcs11Hsm
from custody.hsm.softhsm import create_softhsm_token

TOKEN_LABEL = "custody-bench-signer"
PIN = "bench-user-pin-1234"
SO_PIN = "bench-so-pin-5678"
THREAD_COUNTS = (1, 8, 32)


def python_work(microseconds: int) -> None:
    """Pure-Python work holding the GIL for about ``microseconds`` (calibrated at start)."""
    total = 0
    for value in range(microseconds * _LOOPS_PER_MICROSECOND):
        total += value
    del total


_LOOPS_PER_MICROSECOND = 1


def calibrate() -> None:
    global _LOOPS_PER_MICROSECOND  # noqa: PLW0603
    started = time.thread_time()
    loops = 2_000_000
    total = 0
    for value in range(loops):
        total += value
    elapsed_us = (time.thread_time() - started) * 1e6
    _LOOPS_PER_MICROSECOND = max(1, int(loops / elapsed_us))


class SignerThread:
    """One thread that signs everything queued, back to back."""

    def __init__(self, sign: Callable[[bytes], bytes]) -> None:
        self._sign = sign
        self._queue: queue.SimpleQueue[tuple[bytes, list[bytes], threading.Event] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sign(self, digest: bytes) -> bytes:
        answer: list[bytes] = []
        done = threading.Event()
        self._queue.put((digest, answer, done))
        done.wait()
        return answer[0]

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is None:
                    return
                digest, answer, done = item
                answer.append(self._sign(digest))
                done.set()


def measure(sign: Callable[[bytes], bytes], threads: int, seconds: float, work_us: int) -> dict[str, float]:
    digests = [secrets.token_bytes(32) for _ in range(256)]
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def caller(index: int) -> None:
        count = 0
        while time.perf_counter() < deadline:
            python_work(work_us)
            sign(digests[count % 256])
            count += 1
        counts[index] = count

    cpu_before = time.process_time()
    start = time.perf_counter()
    workers = [threading.Thread(target=caller, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    total = sum(counts)
    return {"rate_per_second": total / wall, "cpu_us_per_signature": 1e6 * cpu / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-us", type=int, default=1000, help="pure-Python work per signature")
    parser.add_argument("--out", type=Path, default=Path("bench/results/hsm_signer_thread.json"))
    args = parser.parse_args()
    calibrate()

    with tempfile.TemporaryDirectory(prefix="custody-bench-signer-") as scratch:
        token = create_softhsm_token(Path(scratch) / "tokens", TOKEN_LABEL, PIN, SO_PIN)
        os.environ["SOFTHSM2_CONF"] = str(token.config_path)
        hsm = Pkcs11Hsm(token.module_path, TOKEN_LABEL, PIN)
        key_id = hsm.generate_secp256k1_key("bench").key_id
        signer = SignerThread(lambda digest: hsm.sign_digest(key_id, digest))
        ways: dict[str, Callable[[bytes], bytes]] = {
            "callers": lambda digest: hsm.sign_digest(key_id, digest),
            "signer_thread": signer.sign,
        }
        rows: dict[tuple[str, int], list[dict[str, float]]] = {}
        for number in range(args.rounds):
            order = list(ways.items()) if number % 2 == 0 else list(reversed(ways.items()))
            for threads in THREAD_COUNTS:
                for name, sign in order:
                    rows.setdefault((name, threads), []).append(
                        measure(sign, threads, args.seconds, args.work_us)
                    )
        signer.stop()
        hsm.close()

    results: list[dict[str, Any]] = []
    print(
        f"{'threads':>7} {'way':<14} {'signed/s':>9} {'CPU us/sig':>10} {'rate ratio':>10} {'CPU ratio':>9}"
    )
    for threads in THREAD_COUNTS:
        base = rows[("callers", threads)]
        for name in ways:
            mine = rows[(name, threads)]
            rate_ratio = statistics.median(
                m["rate_per_second"] / b["rate_per_second"] for m, b in zip(mine, base, strict=True)
            )
            cpu_ratio = statistics.median(
                m["cpu_us_per_signature"] / b["cpu_us_per_signature"] for m, b in zip(mine, base, strict=True)
            )
            row = {
                "threads": threads,
                "way": name,
                "rate_per_second": statistics.median(m["rate_per_second"] for m in mine),
                "cpu_us_per_signature": statistics.median(m["cpu_us_per_signature"] for m in mine),
                "rate_ratio_to_callers": rate_ratio,
                "cpu_ratio_to_callers": cpu_ratio,
            }
            results.append(row)
            print(
                f"{threads:>7} {name:<14} {row['rate_per_second']:>9,.0f} {row['cpu_us_per_signature']:>10,.0f}"
                f" {rate_ratio:>10.3f} {cpu_ratio:>9.3f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "hsm_signer_thread",
                "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                "work_us_per_signature": args.work_us,
                "seconds_per_figure": args.seconds,
                "rounds": args.rounds,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

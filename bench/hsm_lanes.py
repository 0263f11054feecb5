"""Signing throughput against the number of HSM lanes, with each HSM call standing for a network HSM's.

    .venv/bin/python bench/hsm_lanes.py [--seconds 3] [--delay-ms 5] [--threads 32]
                                        [--out bench/results/hsm_lanes.json]

A lane is a worker process with its own PKCS#11 initialization and login (custody.hsm.lanes.LaneHsm). A
network HSM answers in milliseconds, so one process, which must wait for each answer before the next call,
signs at most about 1000 / delay times a second; lanes wait in parallel. Measured here: ``--threads`` caller
threads calling LaneHsm.sign_digest as fast as they can for ``--seconds`` at 1, 2, 4 and 8 lanes, each sign
call delayed by ``--delay-ms`` inside the worker (custody.testing.hsm_faults.LaneSignFaults), and as the reference the
same at 1 lane without the delay. A fresh SoftHSM2 token in a temporary directory; every run measures all
figures on this machine, so the ratios to 1 lane are what to compare across runs. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

from custody.hsm.lanes import LaneHsm
from custody.hsm.softhsm import create_softhsm_token
from custody.testing.hsm_faults import LaneSignFaults

LANE_COUNTS = (1, 2, 4, 8)
TOKEN_LABEL = "custody-bench-lanes"


def measure(
    module_path: str,
    config_path: Path,
    pin: str,
    lanes: int,
    delay_seconds: float,
    threads: int,
    seconds: float,
) -> dict[str, float | int]:
    """Signatures per second through ``lanes`` lanes from ``threads`` threads, after the lanes have started."""
    hsm = LaneHsm(
        module_path,
        TOKEN_LABEL,
        pin,
        lanes,
        environment={"SOFTHSM2_CONF": str(config_path)},
        session_wrapper_for_lane=LaneSignFaults(delay_seconds=delay_seconds) if delay_seconds else None,
    )
    try:
        key = hsm.generate_secp256k1_key(f"bench-{lanes}-{secrets.token_hex(4)}")
        digests = [secrets.token_bytes(32) for _ in range(256)]
        # One call per lane first, so every worker has found and checked the key before the clock starts.
        for index in range(lanes):
            hsm.sign_digest(key.key_id, digests[index])
        counts = [0] * threads
        failures = [0] * threads
        start = threading.Barrier(threads + 1)
        stop = threading.Event()

        def caller(index: int) -> None:
            start.wait()
            while not stop.is_set():
                try:
                    hsm.sign_digest(key.key_id, digests[(index + counts[index]) % len(digests)])
                except Exception:
                    failures[index] += 1
                else:
                    counts[index] += 1

        workers = [threading.Thread(target=caller, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
    finally:
        hsm.close()
    return {
        "lanes": lanes,
        "delay_ms": delay_seconds * 1000,
        "signatures": sum(counts),
        "failures": sum(failures),
        "seconds": elapsed,
        "signatures_per_second": sum(counts) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="added delay per HSM sign call")
    parser.add_argument("--threads", type=int, default=32, help="caller threads")
    parser.add_argument("--out", type=Path, default=Path("bench/results/hsm_lanes.json"))
    args = parser.parse_args()
    delay = args.delay_ms / 1000

    with tempfile.TemporaryDirectory(prefix="custody-bench-lanes-") as scratch:
        pin = secrets.token_hex(8)
        token = create_softhsm_token(Path(scratch), TOKEN_LABEL, pin, secrets.token_hex(8))
        # The in-process session of each LaneHsm loads the library here, so the variable is set first.
        os.environ["SOFTHSM2_CONF"] = str(token.config_path)
        print(f"reference: 1 lane without delay for {args.seconds:.0f} s ...", file=sys.stderr)
        reference = measure(token.module_path, token.config_path, pin, 1, 0.0, args.threads, args.seconds)
        results = []
        for lanes in LANE_COUNTS:
            print(
                f"{lanes} lane(s) with {args.delay_ms:g} ms per call for {args.seconds:.0f} s ...",
                file=sys.stderr,
            )
            results.append(
                measure(token.module_path, token.config_path, pin, lanes, delay, args.threads, args.seconds)
            )

    one_lane = results[0]["signatures_per_second"]
    print()
    print(f"reference, 1 lane, no delay: {reference['signatures_per_second']:,.0f} signatures/s")
    print(f"with {args.delay_ms:g} ms per HSM call, {args.threads} caller threads:")
    print(f"{'lanes':>5} {'signatures/s':>13} {'x 1 lane':>9} {'failures':>9}")
    for row in results:
        row["ratio_to_one_lane"] = row["signatures_per_second"] / one_lane
        print(
            f"{row['lanes']:>5} {row['signatures_per_second']:>13,.1f} {row['ratio_to_one_lane']:>9.2f}"
            f" {row['failures']:>9}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "hsm_lanes",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "seconds_per_figure": args.seconds,
                "caller_threads": args.threads,
                "delay_ms_per_call": args.delay_ms,
                "reference_one_lane_no_delay": reference,
                "lanes": results,
                "run_id": secrets.token_hex(4),
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.out}")


# Lanes are spawned processes, which import this file again as a module: everything runs under this guard.
if __name__ == "__main__":
    main()

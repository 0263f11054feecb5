"""JSON depth check on hostile payloads at the size limit, against json.loads of a plain payload, in one run.

    .venv/bin/python bench/json_depth_check.py [--repeats 5] [--out bench/results/json_depth_check.json]

Every payload is exactly MAX_PAYLOAD_BYTES long. The hostile ones are those that made a regular expression
skipping strings quadratic (a quote followed by escaped quotes, in a string that never closes), long runs of
backslashes, brackets inside strings and brackets outside them. Each is read by load_json_object, the
daemon's whole path from bytes to a JSON object: the size check, UTF-8 decoding, the depth check, then the
decoder (or a refusal). The baseline is json.loads alone on a plain payload of the same size, one object
holding one long string, the cheapest reading of that many bytes. Each is timed --repeats times and the
fastest counts; the figure to compare across machines is the ratio of the slowest hostile payload to the
baseline. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from custody.chains.evm.values import MAX_PAYLOAD_BYTES, load_json_object
from custody.domain.errors import InvalidInput


def at_size_limit(prefix: str, unit: str, suffix: str = "") -> bytes:
    """``prefix``, ``unit`` as many times as fits and ``suffix``, padded with spaces to the size limit."""
    repeats = (MAX_PAYLOAD_BYTES - len(prefix) - len(suffix)) // len(unit)
    text = prefix + unit * repeats + suffix
    return (text + " " * (MAX_PAYLOAD_BYTES - len(text))).encode("ascii")


HOSTILE_PAYLOADS = {
    "quote then escaped quotes, never closed": at_size_limit('"', '\\"'),
    "escaped quotes in a member, never closed": at_size_limit('{"memo":"', '\\"'),
    "escaped quotes in a closed string": at_size_limit('{"memo":"', '\\"', '"}'),
    "quotes only": at_size_limit("", '"'),
    "backslashes, never closed": at_size_limit('"', "\\"),
    "escaped backslashes in a closed string": at_size_limit('{"memo":"', "\\\\", '"}'),
    "brackets in a closed string": at_size_limit('{"memo":"', "[{", '"}'),
    "empty arrays": at_size_limit('{"list":[', "[],", "[]]}"),
    "nesting half the payload deep": (
        "[" * (MAX_PAYLOAD_BYTES // 2) + "]" * (MAX_PAYLOAD_BYTES // 2)
    ).encode(),
}
PLAIN_PAYLOAD = at_size_limit('{"memo":"', "a", '"}')


def fastest(repeats: int, run: Callable[[], object]) -> float:
    """The shortest time of ``repeats`` runs: other load on the machine only ever adds time."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return min(timings)


def read_as_the_daemon_does(payload: bytes) -> str:
    try:
        load_json_object(payload, "transaction")
    except InvalidInput as refusal:
        return f"refused ({refusal})"
    return "accepted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="each payload is timed this often; the best counts"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/json_depth_check.json"))
    args = parser.parse_args()

    for name, payload in (*HOSTILE_PAYLOADS.items(), ("plain", PLAIN_PAYLOAD)):
        if len(payload) != MAX_PAYLOAD_BYTES:
            raise SystemExit(f"the {name!r} payload is {len(payload)} bytes, not {MAX_PAYLOAD_BYTES}")

    baseline = fastest(args.repeats, lambda: json.loads(PLAIN_PAYLOAD))
    hostile = {}
    for name, payload in HOSTILE_PAYLOADS.items():
        outcome = read_as_the_daemon_does(payload)
        seconds = fastest(args.repeats, lambda payload=payload: read_as_the_daemon_does(payload))
        hostile[name] = {"seconds": seconds, "ratio_to_baseline": seconds / baseline, "outcome": outcome}
    slowest_name = max(hostile, key=lambda name: hostile[name]["seconds"])
    slowest = hostile[slowest_name]

    results = {
        "benchmark": "json_depth_check",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "payload_bytes": MAX_PAYLOAD_BYTES,
        "repeats": args.repeats,
        "baseline_json_loads_plain": {"seconds": baseline},
        "hostile": hostile,
        "slowest": {"payload": slowest_name, **slowest},
    }
    print(f"payloads of {MAX_PAYLOAD_BYTES} bytes, fastest of {args.repeats} runs each")
    print(f"{'json.loads, plain payload (baseline)':48} {baseline * 1000:9.3f} ms")
    for name, measured in hostile.items():
        print(
            f"{name:48} {measured['seconds'] * 1000:9.3f} ms  {measured['ratio_to_baseline']:7.1f} x baseline"
            f"  {str(measured['outcome'])[:60]}"
        )
    print(f"slowest hostile payload: {slowest_name}, {slowest['ratio_to_baseline']:.1f} x the baseline")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

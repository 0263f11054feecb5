"""Command-line start-up: the CPU time and wall time of short `custody` commands, against bare interpreters.

    .venv/bin/python bench/cli_startup.py [--runs 20] [--code DIR] [--out bench/results/cli_startup.json]

Measured: `custody --help`, `custody dev --help`, `custody keys list` and `custody requests list` against a
running development daemon (made with `custody dev init` in a scratch directory), each run --runs times as a
fresh process, as an approver's sitting or a script runs them. CPU time is the child's user + system time
(resource.getrusage(RUSAGE_CHILDREN) before and after each run), so other work on a shared machine does not
count; wall time is also printed. Baselines from the same run: `python -c pass` (the interpreter alone) and
`python -c "import grpc"` (the least a command that calls the daemon loads); the ratios to them are the figures
to compare across machines. --code names another checkout whose command line (and daemon) to measure, e.g.
a worktree of an older revision, for a before-and-after comparison. The target is under 0.3 s of CPU for
`custody --help` and `custody keys list`. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from signing_rate import CUSTODY, REPOSITORY, code_env, start_custody


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one run of ``command``, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def measure(name: str, command: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    print(f"{name} x {runs} ...", file=sys.stderr)
    run_once(command, env)  # Warms the file cache and the bytecode cache, which every later run finds.
    samples = [run_once(command, env) for _ in range(runs)]
    cpu = sorted(sample[0] for sample in samples)
    wall = sorted(sample[1] for sample in samples)
    return {
        "name": name,
        "command": command,
        "runs": runs,
        "cpu_median_s": statistics.median(cpu),
        "cpu_min_s": cpu[0],
        "cpu_max_s": cpu[-1],
        "wall_median_s": statistics.median(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command")
    parser.add_argument(
        "--code", type=Path, default=REPOSITORY, help="the checkout whose command line to measure"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/cli_startup.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="custody-bench-") as scratch:
        # The daemon, with a key "ops" made by the admin, so that `keys list` lists something.
        server = start_custody("daemon", args.code, Path(scratch), None)
        try:
            env = {**code_env(args.code), "CUSTODY_PROFILE": str(server.env_dir / "profiles" / "admin.toml")}
            client = [CUSTODY, "--server", server.address]
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "python -c 'import grpc'": [sys.executable, "-c", "import grpc"],
                "custody --help": [CUSTODY, "--help"],
                "custody dev --help": [CUSTODY, "dev", "--help"],
                "custody keys list": [*client, "keys", "list"],
                "custody requests list": [*client, "requests", "list"],
            }
            results = [measure(name, command, env, args.runs) for name, command in commands.items()]
        finally:
            server.stop()

    bare, grpc_import = results[0]["cpu_median_s"], results[1]["cpu_median_s"]
    print()
    print(f"{'command':<26} {'CPU ms':>7} {'min':>5} {'max':>5} {'wall ms':>8} {'/python':>8} {'/grpc':>6}")
    for row in results:
        row["ratio_to_python"] = row["cpu_median_s"] / bare
        row["ratio_to_import_grpc"] = row["cpu_median_s"] / grpc_import
        print(
            f"{row['name']:<26} {1000 * row['cpu_median_s']:>7.0f} {1000 * row['cpu_min_s']:>5.0f}"
            f" {1000 * row['cpu_max_s']:>5.0f} {1000 * row['wall_median_s']:>8.0f}"
            f" {row['ratio_to_python']:>8.1f} {row['ratio_to_import_grpc']:>6.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "cli_startup",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "runs": args.runs,
                "code": str(args.code),
                "commands": results,
                "run_id": secrets.token_hex(4),
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
